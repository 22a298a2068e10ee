import copy
import json
import re

import pytest

from pdd.engine.metrics import METRIC_NAMES
from pdd.engine.results import (
    git_state,
    package_versions,
    read_metrics,
    validate_metrics,
    write_epoch_evaluation,
    write_metrics,
)
from pdd.errors import PDDError


def _metric_set(value=0.5):
    return {name: (value if name.startswith("image") else None) for name in METRIC_NAMES}


def _document():
    evaluation = {"epoch": 2, "pooled": _metric_set(), "per_class": {}}
    return {
        "schema_version": 1,
        "run": {"dataset": "synthetic", "variant": "full", "arch": "full", "fidelity": "code", "seed": 0,
                "profile": "demo", "image_size": 64, "epochs": 2, "demo": True},
        "metrics": {"ts": {"last": evaluation, "best_of_test": copy.deepcopy(evaluation)}},
        "provenance": {"git_commit": "abc", "git_dirty": False, "params_sha256": "0" * 64, "split_sha256": "1" * 64,
                       "teacher_weights": {"vmamba": "random-init", "wrn50": "random-init"},
                       "packages": {"torch": "2"}, "device": "cpu", "wall_time_s": 1.5, "created": "2026-01-01"},
    }


def test_valid_document_round_trips(tmp_path):
    write_metrics(tmp_path / "metrics.json", _document())
    assert read_metrics(tmp_path / "metrics.json") == _document()


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: d["metrics"]["ts"]["last"]["pooled"].update(image_AUROC=1.2), "image_AUROC"),
        (lambda d: d["metrics"]["ts"]["last"]["pooled"].update(image_AUROC=float("nan")), "image_AUROC"),
        (lambda d: d["metrics"]["ts"]["last"]["pooled"].pop("pixel_AUPRO"), "pixel_AUPRO"),
        (lambda d: d["metrics"]["ts"]["last"]["pooled"].update(image_auroc=0.5), "image_auroc"),
        (lambda d: d["metrics"].update(xx=d["metrics"]["ts"]), "xx"),
        (lambda d: d["run"].update(fidelity="exact"), "fidelity"),
        (lambda d: d["provenance"].pop("split_sha256"), "split_sha256"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(metrics={}), "metrics"),
    ],
)
def test_invalid_documents_are_refused_and_not_written(tmp_path, corrupt, message):
    document = _document()
    corrupt(document)
    with pytest.raises(PDDError, match=message):
        write_metrics(tmp_path / "metrics.json", document)
    assert not (tmp_path / "metrics.json").exists()


def test_reading_a_hand_edited_file_validates(tmp_path):
    document = _document()
    document["run"]["seed"] = "zero"
    (tmp_path / "metrics.json").write_text(json.dumps(document))
    with pytest.raises(PDDError, match="run.seed"):
        read_metrics(tmp_path / "metrics.json")
    with pytest.raises(PDDError, match="cannot read"):
        read_metrics(tmp_path / "absent.json")


def test_epoch_evaluation_schema(tmp_path):
    good = {"epoch": 3, "metrics": {"ss": {"pooled": _metric_set(0.7), "per_class": {"a": _metric_set()}}}}
    write_epoch_evaluation(tmp_path / "epoch_003.json", good)
    with pytest.raises(PDDError):
        write_epoch_evaluation(tmp_path / "bad.json", {"epoch": 3, "metrics": {"ts": {"pooled": {}}}})


def test_provenance_helpers(repo_root):
    commit, dirty = git_state(repo_root)
    if commit != "unknown":
        assert re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(dirty, bool)
    versions = package_versions(("torch", "surely-not-a-package-xyz"))
    assert re.match(r"\d+\.\d+", versions["torch"])
    assert versions["surely-not-a-package-xyz"] == "not installed"
    assert validate_metrics(_document()) == _document()


def test_metrics_of_earlier_versions_without_operating_points_stay_readable(tmp_path):
    document = _document()
    for evaluation in document["metrics"]["ts"].values():
        del evaluation["pooled"]["image_sens_at_spec95"], evaluation["pooled"]["image_spec_at_sens95"]
    (tmp_path / "metrics.json").write_text(json.dumps(document))
    assert read_metrics(tmp_path / "metrics.json") == document
