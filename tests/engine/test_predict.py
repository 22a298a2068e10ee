"""A trained model outside its run: `pdd export` bundles, `pdd predict` on images, DICOM and NIfTI, and the
`Predictor` API, checked against the scores `pdd evaluate` wrote for the same images."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pdd.engine.metrics import f1_max_threshold
from pdd.engine.results import read_epoch_evaluation, read_metrics
from pdd.errors import WeightsError

pytestmark = pytest.mark.slow


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def bundle(baseline_run, engine_workspace, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "model"
    exported, _ = engine_workspace.run("export", "--run", str(baseline_run["run_dir"]), "--out", str(out))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "random-init teachers" in exported.stderr
    return out


def _selected_scores(run_dir: Path, selection: str = "best_of_test") -> tuple[int, dict[str, float], list[int]]:
    epoch = read_metrics(run_dir / "metrics.json")["metrics"]["ts"][selection]["epoch"]
    images = read_epoch_evaluation(run_dir / "eval" / f"epoch_{epoch:03d}.json")["images"]
    return epoch, dict(zip(images["paths"], images["scores"]["ts"])), images["labels"]


def test_predict_reproduces_the_evaluation_scores_via_the_bundle_and_the_run(baseline_run, engine_workspace,
                                                                              bundle, tmp_path):
    run_dir = baseline_run["run_dir"]
    epoch, evaluated, labels = _selected_scores(run_dir)
    prepared = engine_workspace.root / "prepared" / "headct"
    for model in (bundle, run_dir):
        out = tmp_path / model.name
        predicted, _ = engine_workspace.run("predict", "--model", str(model), str(prepared / "test"), "--out",
                                            str(out), "--batch-size", "3", "--no-progress")
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        rows = _rows(out / "predictions.csv")
        scores = {Path(row["input"]).relative_to(prepared).as_posix(): float(row["score"]) for row in rows}
        assert scores.keys() == evaluated.keys()
        assert max(abs(scores[path] - evaluated[path]) for path in evaluated) <= 1e-6
        assert all((out / row["overlay"]).is_file() for row in rows)
        assert _rows(out / "errors.csv") == []

    manifest = json.loads((bundle / "manifest.json").read_text())
    threshold, _ = f1_max_threshold(labels, list(evaluated.values()))
    assert manifest["selection"]["epoch"] == epoch and manifest["calibration"]["threshold"] == threshold
    assert manifest["calibration"]["normal_scores"]["count"] == labels.count(0)
    for row in rows:  # labels and normalised scores follow the threshold
        assert row["label"] == ("anomalous" if float(row["score"]) >= threshold else "normal")
        assert (float(row["normalised_score"]) >= 0.5) == (float(row["score"]) >= threshold)
    card = (bundle / "model.md").read_text()
    assert "random-init teachers" in card and "best_of_test selects the epoch on the test set" in card


def test_the_predictor_api_scores_paths_arrays_and_images(baseline_run, engine_workspace, bundle):
    from PIL import Image

    from pdd import Predictor

    prepared = engine_workspace.root / "prepared" / "headct"
    _, evaluated, _ = _selected_scores(baseline_run["run_dir"])
    first = sorted(evaluated)[0]
    predictor = Predictor.from_bundle(bundle, device="cpu")
    image = Image.open(prepared / first)
    by_path, by_image, by_array = predictor.predict([prepared / first, image, np.asarray(image)])
    assert abs(by_path.score - evaluated[first]) <= 1e-6
    assert by_image.score == by_path.score == by_array.score
    assert by_path.map.shape == (64, 64) and by_path.label in (0, 1) and 0 <= by_path.normalised <= 1


def test_the_bundle_is_pickle_free_and_an_altered_one_is_refused(engine_workspace, bundle, tmp_path, monkeypatch):
    from pdd.inference.bundle import read_bundle

    suffixes = {path.suffix for path in bundle.rglob("*") if path.is_file()}
    assert suffixes <= {".json", ".safetensors", ".md", ".yaml"}

    def no_pickle(*args, **kwargs):
        raise AssertionError("a bundle must load without torch.load (pickle)")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert read_bundle(bundle).manifest["run"]["id"] == "headct/full/code/seed0"

    altered = tmp_path / "altered"
    shutil.copytree(bundle, altered)
    weights = bytearray((altered / "model.safetensors").read_bytes())
    weights[-1] ^= 0x01  # one bit of one weight
    (altered / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(WeightsError, match="model.safetensors has sha256 .* the bundle was altered"):
        read_bundle(altered)
    refused, _ = engine_workspace.run("predict", "--model", str(altered), str(tmp_path), "--out", str(tmp_path / "o"))
    assert refused.returncode == 2 and "altered or damaged" in refused.stderr and "Traceback" not in refused.stderr


def _ct_dicom(path: Path, frames: int = 1) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1, -1024, 40, 80
    if frames > 1:
        ds.NumberOfFrames = frames
    pixels = np.random.default_rng(0).integers(900, 1200, size=(frames, 32, 32)).astype(np.int16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_predict_scores_dicom_and_nifti_and_lists_every_input_it_cannot_score(engine_workspace, bundle, tmp_path):
    import nibabel as nib

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _ct_dicom(inputs / "ct.dcm", frames=2)
    volume = np.random.default_rng(1).normal(40, 30, size=(32, 32, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), inputs / "head.nii.gz")
    corrupt = inputs / "broken.dcm"
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 20)
    (inputs / "notes.png").write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()

    out = tmp_path / "out"
    predicted, _ = engine_workspace.run("predict", "--model", str(bundle), str(inputs), str(empty), "--out", str(out),
                                        "--axis", "2", "--save-maps", "--no-progress")
    assert predicted.returncode == 1, predicted.stderr[-3000:]  # some inputs failed, the rest were scored
    assert "shown in the brain window (C 40, W 80) the training images used" in predicted.stderr  # HeadCT's
    rows = _rows(out / "predictions.csv")
    assert [(Path(row["input"]).name, row["slice"]) for row in rows] == [
        ("ct.dcm", "0"), ("ct.dcm", "1"), ("head.nii.gz", "0"), ("head.nii.gz", "1"), ("head.nii.gz", "2")]
    errors = {Path(row["input"]).name: row["reason"] for row in _rows(out / "errors.csv")}
    assert set(errors) == {"broken.dcm", "notes.png", "empty"}
    assert all(errors.values())
    maps = sorted((out / "maps").glob("*.npz"))
    assert len(maps) == 5 and np.load(maps[0])["map"].shape == (64, 64)
    html = (out / "index.html").read_text()
    assert html.count("<figure") == 5 and "broken.dcm" in html and "random-init teachers" in html

    nothing, _ = engine_workspace.run("predict", "--model", str(bundle), str(empty), "--out", str(tmp_path / "none"))
    assert nothing.returncode == 2 and "nothing could be scored" in nothing.stderr


def test_the_gallery_shows_its_overlays_in_a_browser(engine_workspace, bundle, tmp_path):
    """Headless Chromium (Debian's `chromium`) opens index.html from disk and every overlay decodes."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium); docs/inference.md has the manual check")
    prepared = engine_workspace.root / "prepared" / "headct" / "test"
    out = tmp_path / "out"
    predicted, _ = engine_workspace.run("predict", "--model", str(bundle), str(prepared), "--out", str(out),
                                        "--no-progress")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=5000", "--dump-dom", (out / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    n_images = len(_rows(out / "predictions.csv"))
    assert f'data-loaded="{n_images}"' in dom.stdout, dom.stderr[-2000:]
