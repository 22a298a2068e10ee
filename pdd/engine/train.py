"""One training run of the authors' recipe, resumable and deterministic on the CPU.

The loop trains the students on (cached) frozen-teacher features, logs every loss term and the
learning rate per step with dvclive, evaluates on the test split every `train.eval_every` epochs
(the authors' protocol) and checkpoints after every epoch. A resumed run replays exactly what an
uninterrupted one would have done: the shuffling of epoch e depends only on (seed, e), and model,
optimizer, schedule and RNG states come back from the checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from pdd.config import Params, RunSpec
from pdd.engine import distributed, runs
from pdd.engine.checkpoint import capture_rng_state, restore_rng_state
from pdd.engine.evaluate import EVAL_DIR, MAPS_DIR, epoch_evaluation_path, score_test_set
from pdd.engine.results import describe_device, write_epoch_evaluation
from pdd.engine.schedule import build_optimizer, build_scheduler
from pdd.errors import PDDError
from pdd.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

# Fault injection for the resume tests: the process dies (no cleanup) right after this epoch's checkpoint.
CRASH_AFTER_EPOCH_ENV = "PDD_CRASH_AFTER_EPOCH"
CRASH_EXIT_CODE = 75
DVCLIVE_DIR = "dvclive"
# Written last, when every epoch is done: the workflow's completion marker for a training job. Checkpoints
# and logs are not declared as job outputs, so a failed job keeps them and its rerun resumes.
TRAINED_MARKER = "trained.json"


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs: int
    global_step: int
    wall_time_s: float


def train_run(
    params: Params,
    spec: RunSpec,
    run_dir: str | Path,
    *,
    params_file: str | Path = "params.yaml",
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    restart_if_changed: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train `spec` into `run_dir` (under torchrun: one shard of it per process).

    `resume` continues from the last good checkpoint (or starts afresh when there is none);
    `restart_if_changed` lets a resume discard a run trained under other settings instead of refusing.
    """
    run_dir = Path(run_dir)
    with contextlib.ExitStack() as stack:
        context = distributed.init_distributed()
        stack.callback(distributed.shutdown, context)
        error = None
        if context.is_main:  # rank 0 holds the lock; every rank stops if it is taken
            try:
                stack.enter_context(runs.run_lock(run_dir))
            except PDDError as exc:
                error = str(exc)
        error = context.broadcast_object(error)
        if error:
            raise PDDError(error)
        trainer = _Trainer(params, spec, run_dir, context, str(params_file), list(overrides), progress)
        return trainer.run(resume, restart_if_changed)


class _Trainer:
    def __init__(self, params: Params, spec: RunSpec, run_dir: Path, context: distributed.DistributedContext,
                 params_file: str, overrides: list[str], progress: bool) -> None:
        self.params, self.spec, self.run_dir, self.context = params, spec, run_dir, context
        self.params_file, self.overrides = params_file, overrides
        self.progress = progress and context.is_main
        self.train_cfg = params.train
        self.signature = runs.training_signature(params, spec)
        self.checkpoints = runs.checkpoints(run_dir, params)

        runs.seed_everything(spec.seed, self.train_cfg.deterministic)
        self.model = runs.build_model(params, spec).to(context.device)
        self.loss = distributed.wrap_loss(self.model, context)
        self.optimizer = build_optimizer(self.model.student_parameters(), self.train_cfg.lr, tuple(self.train_cfg.betas),
                                         self.train_cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, self.train_cfg.schedule, self.train_cfg.epochs,
                                         self.train_cfg.t_max, self.train_cfg.eta_min)
        self.cache = runs.teacher_cache(params, self.model)
        self.scorings = [s for s in params.eval.scorings if self.model.supports_scoring(s)]
        self.train_set = runs.open_split(params, spec.dataset, "train")
        self.sampler = DistributedSampler(self.train_set, num_replicas=context.world_size, rank=context.rank,
                                          shuffle=True, seed=spec.seed, drop_last=False)
        self.loader = DataLoader(
            self.train_set, batch_size=self.train_cfg.batch_size, sampler=self.sampler,
            num_workers=self.train_cfg.num_workers, worker_init_fn=runs.seeded_worker,
            generator=torch.Generator().manual_seed(spec.seed), pin_memory=context.device.type == "cuda",
        )
        self.test_loader = None
        if context.is_main:
            self.test_loader = runs.evaluation_loader(params, runs.open_split(params, spec.dataset, "test"))
        self.epoch = 0
        self.global_step = 0
        self.wall_time_s = 0.0

    # ---- state --------------------------------------------------------------------------------

    def _restore(self, resume: bool, restart_if_changed: bool) -> None:
        if self.context.is_main:
            for path in self.checkpoints.remove_temporaries():
                log.warning("removed %s, left by an interrupted checkpoint write", path)
            (self.run_dir / TRAINED_MARKER).unlink(missing_ok=True)
        checkpoint = self.checkpoints.load_latest()
        if checkpoint is not None and not resume:
            raise PDDError(
                f"{self.run_dir} already holds a run (epoch {checkpoint['epoch']}); pass --resume to continue it, "
                "or choose another --out"
            )
        if checkpoint is None:
            if self.context.is_main:
                _clear_outputs(self.run_dir)
            return
        if checkpoint["signature"] != self.signature and restart_if_changed:
            log.warning("%s was trained with other settings; starting it again from scratch", self.run_dir)
            self.context.barrier()
            if self.context.is_main:
                self.checkpoints.discard()
                shutil.rmtree(self.run_dir / DVCLIVE_DIR, ignore_errors=True)
                _clear_outputs(self.run_dir)
            return
        if checkpoint["signature"] != self.signature:
            raise PDDError(
                f"{self.run_dir} was trained with other settings (dataset, variant, fidelity, seed, model, train "
                "or eval params differ); resume it with the same params, pass --restart-if-changed to train it "
                "again from scratch, or choose another --out"
            )
        runs.load_trainable_state(self.model, checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_state(checkpoint["rng"])
        self.epoch, self.global_step = checkpoint["epoch"], checkpoint["global_step"]
        self.wall_time_s = checkpoint["wall_time_s"]
        log.info("resuming %s after epoch %d", self.run_dir, self.epoch)

    def _save(self) -> None:
        self.checkpoints.save(
            {
                "signature": self.signature,
                "model": runs.trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": capture_rng_state(),
                "global_step": self.global_step,
                "wall_time_s": self.wall_time_s,
            },
            self.epoch,
            final=self.epoch == self.train_cfg.epochs,
        )

    # ---- loop ---------------------------------------------------------------------------------

    def run(self, resume: bool, restart_if_changed: bool = False) -> TrainResult:
        self._restore(resume, restart_if_changed)
        if self.context.is_main:
            runs.new_record(self.params, self.params_file, self.spec, self.overrides, self.model,
                            describe_device(self.context.device, self.context.world_size)).write(self.run_dir)
        live = self._open_live() if self.context.is_main else None
        steps_per_epoch = len(self.loader)
        bar = tqdm(total=self.train_cfg.epochs * steps_per_epoch, initial=self.epoch * steps_per_epoch,
                   desc=self.spec.id, disable=not self.progress, dynamic_ncols=True)
        try:
            while self.epoch < self.train_cfg.epochs:
                started = time.perf_counter()
                means = self._train_epoch(live, bar)
                self.epoch += 1
                self.scheduler.step()
                self.context.check_replicas(self.model.student_parameters(), self.epoch)
                if self.context.is_main:
                    metrics = None
                    if self.epoch % self.train_cfg.eval_every == 0 or self.epoch == self.train_cfg.epochs:
                        metrics = self._evaluate()
                    self._log_epoch(live, means, metrics)
                self.wall_time_s += time.perf_counter() - started
                if self.context.is_main:
                    self._save()
                self.context.barrier()
                if os.environ.get(CRASH_AFTER_EPOCH_ENV) == str(self.epoch):
                    os._exit(CRASH_EXIT_CODE)
        finally:
            bar.close()
            if live is not None:
                live.end()
        result = TrainResult(self.run_dir, self.epoch, self.global_step, self.wall_time_s)
        if self.context.is_main:
            atomic_write_json(self.run_dir / TRAINED_MARKER, {"signature": self.signature, **asdict(result),
                                                              "run_dir": str(self.run_dir)})
        if self.cache is not None:
            log.info("teacher-feature cache %s: %d hits, %d misses", self.cache.directory, self.cache.hits,
                     self.cache.misses)
        return result

    def _train_epoch(self, live, bar: tqdm) -> dict[str, float]:
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        sums: dict[str, float] = {}
        steps = 0
        autocast = torch.autocast(self.context.device.type, dtype=torch.bfloat16, enabled=self.train_cfg.bf16_autocast)
        for step, batch in enumerate(self.loader):
            features = runs.teacher_features(self.model, self.cache, batch, self.context.device)
            with autocast:
                terms = self.loss(features)
            total = terms["total"]
            if not self.context.all_true(bool(torch.isfinite(total).all())):
                raise PDDError(
                    f"the loss became non-finite ({total.item()}) at epoch {self.epoch + 1}, step {step + 1} "
                    f"(global step {self.global_step}); the last good checkpoint is kept in "
                    f"{self.checkpoints.directory}. Lower train.lr or check the data, then resume with --resume"
                )
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()

            names = sorted(terms)
            values = self.context.mean(torch.stack([terms[name].detach().float() for name in names])).tolist()
            logged = dict(zip(names, values))
            for name, value in logged.items():
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
            if live is not None:
                for name, value in logged.items():
                    live.log_metric(f"train/{name}", value)
                live.log_metric("train/lr", self.optimizer.param_groups[0]["lr"])
                live.next_step()
            self.global_step += 1
            bar.set_postfix(epoch=self.epoch + 1, **{name: f"{value:.4g}" for name, value in logged.items()})
            bar.update()
        return {name: value_sum / steps for name, value_sum in sums.items()}

    def _evaluate(self) -> dict[str, dict]:
        scored = score_test_set(self.model, self.test_loader, self.scorings, self.cache, self.context.device,
                                progress=self.progress)
        metrics = scored.metrics(self.params.eval.aupro_fpr_limit)
        write_epoch_evaluation(epoch_evaluation_path(self.run_dir, self.epoch), {"epoch": self.epoch, "metrics": metrics})
        summary = ", ".join(f"{s} image AUROC {m['pooled']['image_AUROC']}" for s, m in metrics.items())
        tqdm.write(f"epoch {self.epoch}: {summary}")
        return metrics

    # ---- dvclive ------------------------------------------------------------------------------

    def _open_live(self):
        from dvclive import Live

        directory = self.run_dir / DVCLIVE_DIR
        if self.global_step:
            _truncate_dvclive(directory, self.global_step)
        live = Live(str(directory), resume=self.global_step > 0, report=None, save_dvc_exp=False, dvcyaml=None)
        live.step = self.global_step
        return live

    def _log_epoch(self, live, means: dict[str, float], metrics: dict[str, dict] | None) -> None:
        """Per-epoch loss means and test metrics, logged at the epoch's last step (dvclive's step is the
        global step), so that resuming from this epoch's checkpoint keeps them."""
        live.step = self.global_step - 1
        for name, value in means.items():
            live.log_metric(f"train/epoch/{name}", value)
        for scoring, result in (metrics or {}).items():
            for name, value in result["pooled"].items():
                if value is not None:
                    live.log_metric(f"eval/{scoring}/{name}", value)
        live.step = self.global_step


def _clear_outputs(run_dir: Path) -> None:
    """A fresh start must not inherit the evaluations or results of an earlier run in the same directory."""
    stale = [run_dir / TRAINED_MARKER, run_dir / "metrics.json", *run_dir.glob("scores_*.csv"), *(run_dir / MAPS_DIR).glob("*.npz"),
             *(run_dir / EVAL_DIR).glob("epoch_*.json")]
    for path in stale:
        path.unlink(missing_ok=True)


def _truncate_dvclive(directory: Path, global_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from, so a resumed log has no duplicate steps."""
    for path in (directory / "plots" / "metrics").rglob("*.tsv"):
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < global_step]
        atomic_write_text(path, "".join("\t".join(row) + "\n" for row in kept))
