"""A trained model outside its run: `pdd export` bundles, `pdd predict` on images, DICOM and NIfTI, and the
`Predictor` API, checked against the scores `pdd evaluate` wrote for the same images."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="module")
def predictor(bundle):
    """The bundle's `Predictor` (default window: the training images' brain window), built once for the API tests."""
    from pdd import Predictor

    return Predictor.from_bundle(bundle, device="cpu")


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


def test_the_predictor_api_scores_paths_arrays_and_images(baseline_run, engine_workspace, predictor):
    from PIL import Image

    prepared = engine_workspace.root / "prepared" / "headct"
    _, evaluated, _ = _selected_scores(baseline_run["run_dir"])
    first = sorted(evaluated)[0]
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
    assert read_bundle(bundle).manifest.run.id == "headct/full/code/seed0"

    altered = tmp_path / "altered"
    shutil.copytree(bundle, altered)
    weights = bytearray((altered / "model.safetensors").read_bytes())
    weights[-1] ^= 0x01  # one bit of one weight
    (altered / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(WeightsError, match="model.safetensors has sha256 .* the bundle was altered"):
        read_bundle(altered)
    refused, _ = engine_workspace.run("predict", "--model", str(altered), str(tmp_path), "--out", str(tmp_path / "o"))
    assert refused.returncode == 2 and "altered or damaged" in refused.stderr and "Traceback" not in refused.stderr


def test_a_bundle_of_format_v1_still_reads_and_a_damaged_or_newer_manifest_is_refused(bundle, tmp_path):
    from pdd.errors import PDDError
    from pdd.inference.bundle import read_bundle
    from pdd.inference.readers import Window

    current = read_bundle(bundle)
    assert current.manifest.format_version == 2 and current.training_window == ("brain", Window(40, 80))

    def altered(name: str, change) -> Path:
        copy = Path(shutil.copytree(bundle, tmp_path / name))
        manifest = json.loads((copy / "manifest.json").read_text())
        change(manifest)
        (copy / "manifest.json").write_text(json.dumps(manifest))
        return copy

    def as_v1(manifest: dict) -> None:  # what pdd wrote before its manifest had a schema: the window by name
        manifest["format_version"] = 1
        manifest["input"]["ct_window"] = manifest["input"].pop("window")["name"]

    assert read_bundle(altered("v1", as_v1)).manifest == current.manifest
    refused = {
        "threshold": (lambda m: m["calibration"].update(threshold="high"), r"calibration\.threshold"),
        "selection": (lambda m: m.pop("selection"), r"selection: Field required"),
        "window": (lambda m: m["input"]["window"].update(width=0), r"input\.window\.width"),
        "newer": (lambda m: m.update(format_version=3), r"format v3, written by a newer pdd"),
    }
    for name, (change, message) in refused.items():
        with pytest.raises(PDDError, match=message):
            read_bundle(altered(name, change))


def _ct_dicom(path: Path, frames: int = 1, photometric: str = "MONOCHROME2", pixels: np.ndarray | None = None,
              window: tuple[float, float] = (400, 2000), rescale: tuple[float, float] = (1, -1024)) -> Path:
    """A CT file; its own window (C 400, W 2000 by default) is not the brain window HeadCT models default to."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    if pixels is None:
        pixels = np.random.default_rng(0).integers(900, 1200, size=(frames, 32, 32)).astype(np.int16)
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    (ds.RescaleSlope, ds.RescaleIntercept), (ds.WindowCenter, ds.WindowWidth) = rescale, window
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# pydicom's own test files (from scanners and toolkits, not written here): a JPEG-LS MR, a JPEG 2000 CT, an RT dose
# grid and a text report
PYDICOM_FILES = ("MR_small_jpeg_ls_lossless.dcm", "693_J2KI.dcm", "rtdose.dcm", "reportsi.dcm")


@pytest.fixture(scope="module")
def mixed_inputs(bundle, tmp_path_factory) -> dict:
    """One `pdd predict` (default window: HeadCT's brain) over DICOM, NIfTI stored RAS and LAS, pydicom's files and
    inputs it cannot score; several tests read its outputs."""
    import nibabel as nib
    import pydicom

    root = tmp_path_factory.mktemp("mixed")
    inputs, empty = root / "inputs", root / "empty"
    inputs.mkdir()
    empty.mkdir()
    _ct_dicom(inputs / "ct.dcm", frames=2)
    volume = np.random.default_rng(1).normal(40, 30, size=(32, 28, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), inputs / "ras.nii.gz")
    las_affine = np.diag([-1.0, 1.0, 2.0, 1.0])
    las_affine[0, 3] = volume.shape[0] - 1  # voxel i of LAS is voxel 31 - i of RAS, at the same place
    nib.save(nib.Nifti1Image(volume[::-1].copy(), las_affine), inputs / "las.nii.gz")
    (inputs / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 20)
    (inputs / "notes.png").write_text("not an image")
    shipped = [Path(pydicom.__file__).parent / "data" / "test_files" / name for name in PYDICOM_FILES]
    out = root / "out"
    args = ["predict", "--model", str(bundle), str(inputs), str(empty), *map(str, shipped), "--out", str(out),
            "--axis", "2", "--save-maps", "--no-progress"]
    # in a fresh interpreter, as a user runs it, reporting which modules of pdd.engine it loaded
    script = ("import sys\nfrom pdd.cli import main\n"
              f"code = main({args!r})\n"
              "engine = sorted(name for name in sys.modules if name.split('.')[:2] == ['pdd', 'engine'])\n"
              "print('engine modules:', engine)\nsys.exit(code)\n")
    predicted = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                               cwd=Path(__file__).resolve().parents[2])
    return {"inputs": inputs, "empty": empty, "shipped": shipped, "out": out, "process": predicted}


def test_predict_scores_dicom_and_nifti_and_lists_every_input_it_cannot_score(mixed_inputs, engine_workspace, bundle,
                                                                              tmp_path):
    predicted, out = mixed_inputs["process"], mixed_inputs["out"]
    assert predicted.returncode == 1, predicted.stderr[-3000:]  # some inputs failed, the rest were scored
    assert "shown in the brain window (C 40, W 80) the training images used" in predicted.stderr  # HeadCT's
    rows = _rows(out / "predictions.csv")
    assert [(Path(row["input"]).name, row["slice"]) for row in rows] == [
        ("ct.dcm", "0"), ("ct.dcm", "1"), ("las.nii.gz", "0"), ("las.nii.gz", "1"), ("ras.nii.gz", "0"),
        ("ras.nii.gz", "1"), ("MR_small_jpeg_ls_lossless.dcm", ""), ("693_J2KI.dcm", "")]
    errors = {Path(row["input"]).name: row["reason"] for row in _rows(out / "errors.csv")}
    assert set(errors) == {"broken.dcm", "notes.png", "empty", "rtdose.dcm", "reportsi.dcm"}
    assert all(errors.values())
    assert "RT Dose Storage" in errors["rtdose.dcm"] and "not an image of the patient" in errors["rtdose.dcm"]
    assert "Basic Text SR Storage" in errors["reportsi.dcm"] and "no pixel data" in errors["reportsi.dcm"]
    maps = sorted((out / "maps").glob("*.npz"))
    assert len(maps) == 8 and np.load(maps[0])["map"].shape == (64, 64)
    html = (out / "index.html").read_text()
    assert html.count("<figure") == 8 and "broken.dcm" in html and "random-init teachers" in html

    nothing, _ = engine_workspace.run("predict", "--model", str(bundle), str(mixed_inputs["empty"]), "--out",
                                      str(tmp_path / "none"))
    assert nothing.returncode == 2 and "nothing could be scored" in nothing.stderr


def test_predicting_from_a_bundle_imports_no_training_code_and_logs_at_info(mixed_inputs):
    predicted = mixed_inputs["process"]
    assert "engine modules: []" in predicted.stdout, predicted.stdout + predicted.stderr[-3000:]
    assert ("INFO pdd.inference.predictor: DICOM and NIfTI inputs are shown in the brain window (C 40, W 80) the "
            "training images used") in predicted.stderr


def test_a_volume_stored_las_scores_as_the_same_volume_stored_ras(mixed_inputs):
    scores = {(Path(row["input"]).name, row["slice"]): row["score"] for row in _rows(mixed_inputs["out"] /
                                                                                      "predictions.csv")}
    assert [scores["las.nii.gz", k] for k in "01"] == [scores["ras.nii.gz", k] for k in "01"]
    assert scores["ras.nii.gz", "0"] != scores["ras.nii.gz", "1"]


def test_the_python_api_reads_files_as_pdd_predict_does(mixed_inputs, predictor):
    """One reading path: `Predictor.predict` applies the window `pdd predict` applies (here the training images'
    brain window, not the C 400 / W 2000 of ct.dcm's own tags), so the scores agree."""
    cli = {(Path(row["input"]).name, row["slice"]): float(row["score"])
           for row in _rows(mixed_inputs["out"] / "predictions.csv")}
    api = {(p.source.name, "" if p.slice_index is None else str(p.slice_index)): p.score
           for p in predictor.predict([mixed_inputs["inputs"] / name for name in ("ct.dcm", "ras.nii.gz")])}
    assert len(api) == 4 and api.keys() <= cli.keys()
    assert max(abs(api[key] - cli[key]) for key in api) <= 1e-6, (api, cli)


def test_a_real_headct_slice_stored_as_dicom_scores_as_its_png(shared_headct, predictor, tmp_path):
    """A HeadCT PNG written as DICOM (MONOCHROME2, and MONOCHROME1 inverted) with the window under which the
    standard's VOI formula gives the PNG's pixels back (C 128, W 256: ((v - 127.5) / 255 + 0.5) * 255 = v), read
    with the file's own window (`--window file`; `Predictor.read` is `pdd predict`'s reading path)."""
    from pdd.data.images import read_image
    from pdd.inference.predictor import Predictor

    png = shared_headct / "head_ct" / "000.png"
    pixels = np.asarray(read_image(png)).astype(np.uint16)
    assert pixels.ndim == 2
    files = [png, _ct_dicom(tmp_path / "mono2.dcm", pixels=pixels, window=(128, 256), rescale=(1, 0)),
             _ct_dicom(tmp_path / "mono1.dcm", photometric="MONOCHROME1", pixels=255 - pixels, window=(128, 256),
                       rescale=(1, 0))]
    own_window = Predictor(predictor.bundle, predictor.model, predictor.device, window="file")
    scores = [p.score for p in own_window.predict(files)]
    assert max(scores) - min(scores) <= 1e-6, scores


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
