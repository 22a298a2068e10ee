"""Which jobs a params edit reruns, derived from `Params.fingerprint` for every leaf key of params.yaml.

The expected table is written out here from what each stage computes; the code's `pdd.config.fingerprints`
must agree with it key by key, and an edit must change exactly the fingerprints of the jobs that read it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pdd.config import FIDELITIES, RunSpec, load_params
from pdd.config.fingerprints import (
    EXPLAIN,
    FIGURES,
    LOCATION_KEYS,
    REPLICATION_REPORT,
    TEACHERS,
    Stage,
    dotted,
    leaf_keys,
    owners,
)

REPO = Path(__file__).resolve().parents[2]
PREPARE, TRAIN, EVALUATE, TABLES = Stage.PREPARE, Stage.TRAIN, Stage.EVALUATE, Stage.TABLES


def expected_owner(key: str, params) -> Stage | None:
    """The earliest stage that reads `key`, from what each stage does (None: a location or execution key)."""
    if key in LOCATION_KEYS or key.split(".")[0] in LOCATION_KEYS:
        return None
    part = key.split(".")
    rules = {
        "data.source": PREPARE, "data.split_seed": PREPARE, "data.image_size": TRAIN,
        "teachers.pretrained": TRAIN, "teachers.wrn50.tag": TRAIN,
        "teachers.init_seed": None if params.teachers.pretrained else TRAIN,  # pretrained: the weights decide
        "model.fidelity": TABLES,  # which runs a table reads; each run's id carries its fidelity
        "seeds": TABLES, "train.num_workers": None, "train.keep_snapshots": EVALUATE,
    }
    if key in rules:
        return rules[key]
    if part[0] == "data" and part[1] == "synthetic":
        return PREPARE if params.data.source == "synthetic" else None
    if part[:2] == ["data", "datasets"]:
        folder = dict.fromkeys(("kind", "root", "layout", "csv", "normal_test_fraction"), PREPARE)  # where, and how split
        return {"seed": PREPARE, "classes": TRAIN, "teacher_cache": TRAIN, **folder}[part[-1]]
    if part[0] == "teachers" and part[-1] in ("url", "sha256"):
        return PREPARE
    variant = next((name for name in params.variants if key.startswith(f"variants.{name}.")), None)
    section, *rest = key.removeprefix(f"variants.{variant}.").split(".") if variant else ("", "")
    if section in ("train", "teachers"):
        # a variant's own recipe or teacher: read where it is set (an unset one leaves the global key read; setting
        # it changes which keys the run reads, and so its fingerprint); its schedule's parameters only if used
        own = params.variants[variant].model_dump(mode="json")[section][rest[0]]
        if own is None:
            return None
        if section == "train":
            return None if rest[0] in params.recipe(variant).unread else TRAIN
        return {"tag": TRAIN, "file": None, "url": PREPARE, "sha256": PREPARE}[rest[-1]]
    if part[0] in ("model", "variants", "train"):
        return TRAIN
    if part[0] == "eval":
        return EVALUATE
    if part[0] in ("plan", "reporting"):
        return TABLES
    raise AssertionError(f"no expectation for {key}")


@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_every_leaf_key_belongs_to_the_expected_earliest_stage(profile):
    params = load_params(REPO / "params.yaml", profile=profile)
    keys = [dotted(key) for key in leaf_keys(params.model_dump(mode="json"))]
    assert len(keys) > 150  # every option of every variant and fidelity, not only what the file spells out
    owned = owners(params)
    mismatches = {key: (owned.get(key), expected_owner(key, params)) for key in keys
                  if owned.get(key) != expected_owner(key, params)}
    assert mismatches == {}


def _jobs(params):
    runs = [RunSpec(d, v, f, s) for d in params.data.datasets for v in params.variants for f in FIDELITIES
            for s in params.seeds]
    yield from ((f"data/{d}", PREPARE) for d in params.data.datasets)
    yield from ((f"weights/{t}", PREPARE) for t in TEACHERS)
    yield from ((run, stage) for run in runs for stage in (TRAIN, EVALUATE))
    yield from ((job, TABLES) for job in [*params.plan, REPLICATION_REPORT, FIGURES, EXPLAIN])


def changed_jobs(*edit: str, profile: str = "paper") -> set[tuple[str, str]]:
    """(stage, job) of every job whose fingerprint the `--set` edit changes."""
    before, after = (load_params(REPO / "params.yaml", overrides=overrides, profile=profile)
                     for overrides in ([], list(edit)))
    return {(stage.value, target.id if isinstance(target, RunSpec) else target) for target, stage in _jobs(before)
            if before.fingerprint(target, stage) != after.fingerprint(target, stage)}


def test_an_eval_edit_changes_only_evaluation_fingerprints():
    every_evaluation = {(stage.value, target.id) for target, stage in _jobs(load_params(REPO / "params.yaml"))
                        if stage is EVALUATE}
    for edit in ("eval.sigma=3.0", "eval.aupro_fpr_limit=0.2"):
        assert changed_jobs(edit) == every_evaluation, edit


def test_a_training_edit_changes_the_training_of_the_runs_that_read_it():
    assert {stage for stage, _ in changed_jobs("train.lr=0.001")} == {"train"}
    # options the tables' arms leave free (pdd.reporting.arms): Table 4 fixes lambda_div, Table 5 the τ
    lambda_kr = changed_jobs("variants.full-nodiv.overrides.lambda_kr=0.5")
    assert {job for _, job in lambda_kr} == {f"{d}/full-nodiv/{f}/seed0" for d in ("headct", "brainmri", "zhanglab",
                                                                                    "chexpert", "unimedical")
                                              for f in FIDELITIES}
    # Table 5 prints its arms' τ, so it reads their options too
    tau_levels = changed_jobs("variants.tau-0.65-0.40.overrides.low_dim_layers=2")
    assert {stage for stage, _ in tau_levels} == {"train", "tables"}
    assert {job for stage, job in tau_levels if stage == "tables"} == {"table5", REPLICATION_REPORT}


def test_a_reporting_edit_changes_only_its_report():
    assert changed_jobs("reporting.gap_tolerance=0.05") == {("tables", REPLICATION_REPORT)}
    for edit in ("reporting.uncertainty.resamples=2000", "reporting.uncertainty.delong_scale=identity",
                 "reporting.uncertainty.seed=3"):
        assert changed_jobs(edit) == {("tables", REPLICATION_REPORT)}, edit
    assert changed_jobs("reporting.explain_datasets=[headct]") == {("tables", EXPLAIN)}


def test_location_and_execution_edits_change_nothing(tmp_path):
    assert changed_jobs(f"paths.results={tmp_path}", "train.num_workers=7", f"teachers.wrn50.file={tmp_path}/w.pth") == set()


def test_teacher_keys_depend_on_whether_teachers_are_pretrained():
    assert changed_jobs("teachers.init_seed=3") == set()  # the paper profile loads weights: the seed is unused
    demo = changed_jobs("teachers.init_seed=3", profile="demo")
    assert {stage for stage, _ in demo} == {"train", "tables"} and ("tables", EXPLAIN) in demo


def test_the_fingerprint_names_the_keys_it_covers():
    params = load_params(REPO / "params.yaml")
    fingerprint = params.fingerprint(RunSpec("headct", "full", "code", 0), "evaluate")
    assert "eval.sigma" in fingerprint.keys and "train.lr" not in fingerprint.keys
    assert len(fingerprint.sha256) == 64


def test_a_variant_recipe_edit_retrains_that_variant_only():
    """RD4AD's own recipe (variants.rd4ad.train) is what its runs read: editing it retrains every rd4ad run and
    nothing else; a global recipe edit retrains the others, never rd4ad where it sets the key itself, and a
    schedule parameter its constant schedule does not read retrains nothing of it."""
    datasets = ("headct", "brainmri", "zhanglab", "chexpert", "unimedical")
    rd4ad = {("train", f"{d}/rd4ad/{f}/seed0") for d in datasets for f in FIDELITIES}
    assert changed_jobs("variants.rd4ad.train.lr=0.001") == rd4ad
    assert changed_jobs("variants.rd4ad.teachers.wrn50.tag=racm_in1k") == rd4ad
    for edit in ("train.lr=0.001", "train.epochs=50", "train.t_max=20"):
        changed = changed_jobs(edit)
        assert changed and {stage for stage, _ in changed} == {"train"} and not changed & rd4ad, edit
    assert changed_jobs("train.bf16_autocast=true") >= rd4ad  # not a recipe key: one setting for every run
    keys = load_params(REPO / "params.yaml").fingerprint(RunSpec("headct", "rd4ad", "code", 0), TRAIN).keys
    assert {"variants.rd4ad.train.lr", "variants.rd4ad.teachers.wrn50.tag", "train.bf16_autocast"} <= set(keys)
    assert not {"train.lr", "train.t_max", "train.eta_min", "teachers.wrn50.tag"} & set(keys)
