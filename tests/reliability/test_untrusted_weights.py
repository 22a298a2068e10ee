"""Weights and checkpoints from strangers: pinned hashes are enforced, pickled code never runs, a file of
another architecture is named with its missing/unexpected keys, a damaged snapshot is refused. Related: tests/models/test_weights.py (download with a wrong sha256, foreign VMamba file)
and tests/engine/test_checkpoint.py (truncated last.pt, no readable checkpoint)."""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import pytest
import torch

from pdd.engine.checkpoint import load_checkpoint
from pdd.errors import PDDError, WeightsError

pytestmark = pytest.mark.reliability


class _Payload:
    """Unpickling this calls open(marker, "w"): the marker file appears iff the pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def payload_file(tmp_path) -> tuple[Path, Path]:
    """A checkpoint-looking file that runs code when unpickled unsafely; and its marker."""
    marker = tmp_path / "payload_ran"
    path = tmp_path / "stranger.pt"
    torch.save({"format": 2, "epoch": 1, "model": {"conv1.weight": _Payload(marker)}}, path)
    return path, marker


def test_the_payload_is_real(payload_file):
    """Positive control: an unsafe load does run it, so the tests below can fail."""
    path, marker = payload_file
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_every_loader_refuses_the_payload_without_running_it(payload_file, tmp_path):
    from pdd.engine.teacher_cache import TeacherFeatureCache
    from pdd.models import build_pdd
    from pdd.models.vmamba import vmamba_tiny
    from pdd.models.weights import load_checkpoint as load_weights

    path, marker = payload_file
    with pytest.raises(PDDError, match="unreadable"):
        load_checkpoint(path)
    with pytest.raises(WeightsError, match="not a plain-tensor checkpoint"):
        load_weights(path)
    with pytest.raises(WeightsError):
        vmamba_tiny(pretrained=True, weights=path)
    with pytest.raises(WeightsError):
        build_pdd("M1", "code", pretrained=True, wrn_weights=str(path))

    cache = TeacherFeatureCache(tmp_path / "cache", {"teacher": "test"}, image_size=32)
    sha = "ab" * 32
    entry = cache.directory / sha[:2] / f"{sha}.pt"
    entry.parent.mkdir(parents=True)
    shutil.copyfile(path, entry)
    features = cache.features(lambda images: {"f": images * 2}, torch.ones(1, 3, 4, 4), [sha])
    assert torch.equal(features["f"], torch.full((1, 3, 4, 4), 2.0))  # recomputed instead of unpickled
    assert not marker.exists()


def _calls(tree: ast.AST, module: str, function: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == function \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == module:
            yield node


def test_no_code_path_unpickles_unsafely(repo_root):
    """Every torch.load in pdd/ passes weights_only=True; no pickle, unsafe YAML or pickled numpy loads."""
    problems, torch_loads = [], 0
    for source in sorted((repo_root / "pdd").rglob("*.py")):
        tree = ast.parse(source.read_text(), str(source))
        where = source.relative_to(repo_root)
        for call in _calls(tree, "torch", "load"):
            torch_loads += 1
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in call.keywords)
            if not safe:
                problems.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
        for module, function in (("pickle", "load"), ("pickle", "loads"), ("yaml", "load"), ("yaml", "unsafe_load"),
                                 ("yaml", "full_load"), ("hub", "load")):
            problems += [f"{where}:{call.lineno}: {module}.{function}" for call in _calls(tree, module, function)]
        for call in _calls(tree, "np", "load"):
            if any(k.arg == "allow_pickle" for k in call.keywords):
                problems.append(f"{where}:{call.lineno}: np.load with allow_pickle")
    assert torch_loads >= 3 and problems == []


def test_weights_fetch_refuses_a_file_with_another_sha256(tmp_path, procs, repo_root):
    stranger = tmp_path / "vmamba.pth"
    stranger.write_bytes(b"weights from somewhere else")
    result = procs.run_pdd("weights", "fetch", "vmamba", "--params", str(repo_root / "params.yaml"),
                           "--set", f"teachers.vmamba.file={stranger}", "--set", "teachers.vmamba.url=null")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has sha256" in result.stderr and "teachers.vmamba.sha256" in result.stderr
    assert stranger.read_bytes() == b"weights from somewhere else"


def _copy_run(source: Path, target: Path) -> Path:
    """The run's record, marker and evaluations, and hard links to its snapshots (left unchanged)."""
    (target / "snapshots").mkdir(parents=True)
    for name in ("run.json", "trained.json"):
        shutil.copyfile(source / name, target / name)
    shutil.copytree(source / "eval", target / "eval")
    for snapshot in (source / "snapshots").iterdir():
        os.link(snapshot, target / "snapshots" / snapshot.name)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "payload"])
def test_evaluate_refuses_a_damaged_snapshot_without_running_it(damage, baseline_run, workspace, procs,
                                                                payload_file, tmp_path):
    run_dir = _copy_run(baseline_run, tmp_path / "run")
    final = run_dir / "snapshots" / "epoch_002.safetensors"
    content = final.read_bytes()
    final.unlink()  # not the hard link's target: the baseline keeps its file
    final.write_bytes(content[: len(content) // 3] if damage == "truncated" else payload_file[0].read_bytes())

    result = procs.run_pdd(*workspace.evaluate_args(run_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "epoch_002.safetensors" in result.stderr and "unreadable" in result.stderr
    assert not (run_dir / "metrics.json").exists()
    assert not payload_file[1].exists()


@pytest.mark.slow
def test_evaluate_names_the_keys_of_a_snapshot_from_another_architecture(baseline_run, workspace, procs, tmp_path):
    from pdd.models.state import load_snapshot, save_snapshot, trainable_state
    from pdd.models import build_pdd

    run_dir = _copy_run(baseline_run, tmp_path / "run")
    final = run_dir / "snapshots" / "epoch_002.safetensors"
    _, metadata = load_snapshot(final)
    final.unlink()
    foreign = trainable_state(build_pdd("M3", "code", pretrained=False))  # one student instead of two
    save_snapshot(final, foreign, {key: value for key, value in metadata.items() if key != "format"})

    result = procs.run_pdd(*workspace.evaluate_args(run_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not fit this model" in result.stderr
    assert "missing ['mpa." in result.stderr and "unexpected [" in result.stderr  # M3 lacks full's MPA priors
    assert not (run_dir / "metrics.json").exists()
