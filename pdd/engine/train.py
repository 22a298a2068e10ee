"""One training run of the authors' recipe, resumable and deterministic on the CPU.

The loop trains the students on (cached) frozen-teacher features and logs every loss term and the
learning rate per step with dvclive. Every `train.eval_every` epochs and at the end it writes a
weights snapshot (safetensors) for `pdd evaluate` to score and select from, and after every epoch it
replaces the one resumable checkpoint. A resumed run replays exactly what an uninterrupted one would
have done: the shuffling of epoch e depends only on (seed, e), and weights, optimizer, schedule and RNG
states come back from the checkpoint. Training needs no test data.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from pdd import devices
from pdd.config import Params, RunSpec
from pdd.engine import distributed, runs
from pdd.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from pdd.engine.results import describe_device
from pdd.engine.rundir import RunDir
from pdd.engine.schedule import build_optimizer, build_scheduler
from pdd.errors import PDDError
from pdd.io import atomic_write_json, atomic_write_text
from pdd.models.state import load_trainable_state, save_snapshot, trainable_state

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs: int
    global_step: int
    wall_time_s: float
    snapshots: tuple[int, ...] = ()


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
    device: str = "auto",
) -> TrainResult:
    """Train `spec` into `run_dir` (under torchrun: one shard of it per process).

    `resume` continues from the resumable checkpoint (starts afresh when there is none, and returns at
    once when the run is already complete); `restart_if_changed` lets a resume discard a run trained under
    another identity (train fingerprint, teacher weights, split) instead of refusing. `device` is `auto` (a
    GPU of its own when there are several, `pdd.devices`), `cpu`, `cuda` or `cuda:N`.
    """
    directory = RunDir(Path(run_dir))
    with contextlib.ExitStack() as stack:
        world_size, local_rank = distributed.launch()
        assignment = stack.enter_context(devices.claim_device(device, local_rank=local_rank, world_size=world_size))
        context = distributed.init_distributed(assignment.device)
        stack.callback(distributed.shutdown, context)
        error = None
        if context.is_main:  # rank 0 holds the lock; every rank stops if it is taken
            try:
                stack.enter_context(runs.run_lock(directory))
                runs.refuse_old_layout(directory)
            except PDDError as exc:
                error = str(exc)
        error = context.broadcast_object(error)
        if error:
            raise PDDError(error)
        trainer = _Trainer(runs.RunContext(params, spec, directory), context, assignment, str(params_file),
                           list(overrides), progress)
        return trainer.run(resume, restart_if_changed)


class _Trainer:
    def __init__(self, run: runs.RunContext, context: distributed.DistributedContext,
                 assignment: devices.Assignment, params_file: str, overrides: list[str], progress: bool) -> None:
        self.run_context, self.context, self.assignment = run, context, assignment
        self.spec, self.dir = run.spec, run.dir
        self.params_file, self.overrides = params_file, overrides
        self.progress = progress and context.is_main
        self.train_cfg = run.recipe  # the variant's own recipe where it has one

        runs.seed_everything(self.spec.seed, self.train_cfg.deterministic)
        self.numerics = devices.set_tf32(self.train_cfg.tf32)
        self.model = run.build_model().to(context.device)
        self.identity = run.identity(self.model)
        self.loss = distributed.wrap_loss(self.model, context)
        self.optimizer = build_optimizer(self.model.student_parameters(), self.train_cfg.lr, tuple(self.train_cfg.betas),
                                         self.train_cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, self.train_cfg.schedule, self.train_cfg.epochs,
                                         self.train_cfg.t_max, self.train_cfg.eta_min)
        self.cache = run.teacher_cache(self.model)
        self.train_set = run.open_split("train")
        self.sampler = DistributedSampler(self.train_set, num_replicas=context.world_size, rank=context.rank,
                                          shuffle=True, seed=self.spec.seed, drop_last=False)
        self.loader = run.loader(self.train_set, context.device, self.train_cfg.batch_size, sampler=self.sampler,
                                 generator=torch.Generator().manual_seed(self.spec.seed))
        self.epoch = 0
        self.global_step = 0
        self.wall_time_s = 0.0
        self.resume_notes: list[str] = []

    # ---- state --------------------------------------------------------------------------------

    def _changed(self, recorded: dict, what: str, resume: bool, restart_if_changed: bool) -> bool:
        """Whether a run found in the directory must be started again; refuses when it may not be."""
        if not resume:
            raise PDDError(f"{self.dir.root} already holds a run ({what}); pass --resume to continue it, "
                           "or choose another --out")
        differences = self.identity.differences(runs.RunIdentity.from_dict(recorded))
        if differences and not restart_if_changed:
            raise PDDError(
                f"{self.dir.root} was trained under another identity ({', '.join(differences)} differ: params "
                "that change training, the teachers' weights or the split); resume it with the same params, pass "
                "--restart-if-changed to train it again from scratch, or choose another --out"
            )
        if differences:
            log.warning("%s was trained under another identity (%s differ); starting it again from scratch",
                        self.dir.root, ", ".join(differences))
        return bool(differences)

    def _restore(self, resume: bool, restart_if_changed: bool) -> bool:
        """Set up the state to continue from; True when the run is already complete."""
        if self.context.is_main:
            for path in self.dir.remove_temporaries():
                log.warning("removed %s, left by an interrupted write", path)
        completed = self.dir.completed_training()
        checkpoint = load_checkpoint(self.dir.resume_checkpoint) if self.dir.resume_checkpoint.is_file() else None
        found = completed or checkpoint
        if found is None:
            if self.context.is_main:
                self.dir.clear()  # nothing resumable: whatever an earlier run left must not be inherited
            return False
        what = f"complete, {completed['epochs']} epochs" if completed else f"epoch {checkpoint['epoch']}"
        if self._changed(found["identity"], what, resume, restart_if_changed):
            self.context.barrier()
            if self.context.is_main:
                self.dir.clear()
            return False
        if completed:
            if self.context.is_main:  # a crash between the marker and the clean-up leaves the checkpoint
                self.dir.resume_checkpoint.unlink(missing_ok=True)
            self.epoch, self.global_step = completed["epochs"], completed["global_step"]
            self.wall_time_s = completed["wall_time_s"]
            log.info("%s is already complete (%d epochs)", self.dir.root, self.epoch)
            return True
        load_trainable_state(self.model, checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        unrestored = restore_rng_state(checkpoint["rng"], self.context.device)
        self.epoch, self.global_step = checkpoint["epoch"], checkpoint["global_step"]
        self.wall_time_s = checkpoint["wall_time_s"]
        log.info("resuming %s after epoch %d", self.dir.root, self.epoch)
        self.resume_notes = self._earlier_resume_notes()
        for note in unrestored:
            log.warning("resuming on %s: %s", self.context.device, note)
            self.resume_notes.append(f"resumed after epoch {self.epoch} on {self.context.device}: {note}")
        return False

    def _earlier_resume_notes(self) -> list[str]:
        """What earlier resumes of this run could not restore (run.json keeps every note)."""
        with contextlib.suppress(PDDError, OSError, ValueError, TypeError):
            return list(runs.RunRecord.read(self.dir).resume_notes)
        return []

    def _snapshot_due(self) -> bool:
        return self.epoch % self.train_cfg.eval_every == 0 or self.epoch == self.train_cfg.epochs

    def _save(self) -> None:
        """After an epoch: the snapshot when due, then the resumable checkpoint (not after the last epoch)."""
        if self._snapshot_due():
            metadata = {"run": self.spec.id, "arch": self.run_context.arch, "epoch": str(self.epoch),
                        "train_fingerprint": self.identity.train_fingerprint}
            save_snapshot(self.dir.snapshot(self.epoch), trainable_state(self.model), metadata)
        if self.epoch < self.train_cfg.epochs:
            save_checkpoint(self.dir.resume_checkpoint, {
                "identity": asdict(self.identity),
                "model": trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": capture_rng_state(self.context.device),
                "global_step": self.global_step,
                "wall_time_s": self.wall_time_s,
            }, self.epoch)

    def _complete(self) -> TrainResult:
        """The marker first, then the resumable checkpoint goes: a completed run keeps only its snapshots."""
        result = TrainResult(self.dir.root, self.epoch, self.global_step, self.wall_time_s,
                             tuple(self.dir.snapshot_epochs()))
        atomic_write_json(self.dir.trained_marker, {"identity": asdict(self.identity), **asdict(result),
                                                    "run_dir": str(self.dir.root)})
        self.dir.resume_checkpoint.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # only when empty
            self.dir.checkpoints.rmdir()
        return result

    # ---- loop ---------------------------------------------------------------------------------

    def run(self, resume: bool, restart_if_changed: bool = False) -> TrainResult:
        if self._restore(resume, restart_if_changed):
            return TrainResult(self.dir.root, self.epoch, self.global_step, self.wall_time_s,
                               tuple(self.dir.snapshot_epochs()))
        if self.context.is_main:
            self.dir.trained_marker.unlink(missing_ok=True)
            self.run_context.new_record(self.params_file, self.overrides, self.identity,
                                        describe_device(self.context.device, self.context.world_size),
                                        teacher_cache=self.cache is not None, gpu=self.assignment.record(),
                                        numerics={**self.numerics, "bf16_autocast": self.train_cfg.bf16_autocast},
                                        resume_notes=self.resume_notes).write(self.dir)
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
                    self._log_epoch(live, means)
                self.wall_time_s += time.perf_counter() - started
                if self.context.is_main:
                    self._save()
                self.context.barrier()
        finally:
            bar.close()
            if live is not None:
                live.end()
        result = self._complete() if self.context.is_main else TrainResult(
            self.dir.root, self.epoch, self.global_step, self.wall_time_s)
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
                    f"{self.dir.resume_checkpoint}. Lower train.lr or check the data, then resume with --resume"
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

    # ---- dvclive ------------------------------------------------------------------------------

    def _open_live(self):
        from dvclive import Live

        directory = self.dir.dvclive
        if self.global_step:
            _truncate_dvclive(directory, self.global_step)
        live = Live(str(directory), resume=self.global_step > 0, report=None, save_dvc_exp=False, dvcyaml=None)
        live.step = self.global_step
        return live

    def _log_epoch(self, live, means: dict[str, float]) -> None:
        """Per-epoch loss means, logged at the epoch's last step (dvclive's step is the global step), so that
        resuming from this epoch's checkpoint keeps them."""
        live.step = self.global_step - 1
        for name, value in means.items():
            live.log_metric(f"train/epoch/{name}", value)
        live.step = self.global_step


def _truncate_dvclive(directory: Path, global_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from, so a resumed log has no duplicate steps."""
    for path in (directory / "plots" / "metrics").rglob("*.tsv"):
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < global_step]
        atomic_write_text(path, "".join("\t".join(row) + "\n" for row in kept))
