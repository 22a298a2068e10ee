"""Figures 3c, 4 and 5 from the fixture runs, Fig. 1 Grad-CAM on small teachers, and the CLI end to end."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from pdd.cli import main
from pdd.errors import DataError
from pdd.models.vmamba import VMamba
from pdd.reporting.figures import FIGURES, SavedMaps, localization_figure, render_figures, save_figure
from pdd.reporting.gradcam import gradcam_figure, teacher_cams
from pdd.reporting.tables import TABLES


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_figures_are_written_deterministically(fixture_results, tmp_path):
    first = render_figures(fixture_results, tmp_path / "a", "code", 0)
    second = render_figures(fixture_results, tmp_path / "b", "code", 0)
    assert sorted(p.name for p in first) == sorted(f"{stem}.{ext}" for stem in FIGURES for ext in ("pdf", "png"))
    for a, b in zip(first, second):
        assert a.stat().st_size > 5_000
        assert _digest(a) == _digest(b), f"{a.name} is not byte-reproducible"


def _png_pixels(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_localization_panels_differ_between_normal_and_anomalous(fixture_results, tmp_path):
    maps = [SavedMaps.load(fixture_results / "headct" / v / "code" / "seed0" / "maps" / "ts.npz") for v in ("rd4ad", "full")]
    fig = localization_figure(*maps, "headct", per_label=1)
    pdd_column = [ax for ax in fig.axes if ax.get_subplotspec().colspan.start == 3]
    extents = [ax.get_window_extent() for ax in pdd_column]  # display pixels at figure.dpi, origin bottom-left
    scale = 150 / fig.dpi  # savefig.dpi of RC_PARAMS
    height = fig.get_figheight() * 150
    png = _png_pixels(save_figure(fig, tmp_path / "fig4", demo=False)[1])
    normal, anomalous = (
        png[int(height - e.y1 * scale) + 2 : int(height - e.y0 * scale) - 2, int(e.x0 * scale) + 2 : int(e.x1 * scale) - 2]
        for e in extents
    )
    rows, cols = min(normal.shape[0], anomalous.shape[0]), min(normal.shape[1], anomalous.shape[1])
    assert rows > 50 and cols > 50
    assert np.abs(normal[:rows, :cols] - anomalous[:rows, :cols]).mean() > 0.01


def test_demo_runs_put_the_banner_on_figures(fixture_results, tmp_path):
    results = shutil.copytree(fixture_results / "zhanglab", tmp_path / "results" / "zhanglab")
    metrics = results / "full" / "code" / "seed0" / "metrics.json"
    document = json.loads(metrics.read_text())
    document["run"]["demo"] = True
    metrics.write_text(json.dumps(document))
    plain = render_figures(fixture_results, tmp_path / "plain", "code", 0, ["fig3c_loss_curves"])[1]
    demo = render_figures(results.parent, tmp_path / "demo", "code", 0, ["fig3c_loss_curves"])[1]
    top = slice(0, 25)  # the banner sits in the top rows of the image
    assert np.abs(_png_pixels(plain)[top] - _png_pixels(demo)[top]).max() > 0.5
    assert _png_pixels(demo)[top, :, 0].max() > 0.9  # red text


def test_missing_inputs_name_the_file(fixture_results, tmp_path):
    results = shutil.copytree(fixture_results / "headct", tmp_path / "results" / "headct")
    (results / "rd4ad" / "code" / "seed0" / "maps" / "ts.npz").unlink()
    with pytest.raises(DataError, match=r"headct/rd4ad/code/seed0/maps/ts\.npz"):
        render_figures(results.parent, tmp_path / "out", "code", 0, ["fig4_localization_headct"])
    with pytest.raises(DataError, match=r"train/epoch/L_kr\.tsv"):
        render_figures(results.parent, tmp_path / "out", "code", 0, ["fig3c_loss_curves"])


class _TinyCNN(nn.Module):
    """Stand-in for the wide-ResNet: four strided stages, frozen."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        widths = [3, 8, 16, 16, 16]
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.ReLU()) for a, b in zip(widths, widths[1:]))
        self.requires_grad_(False)

    def forward(self, x):
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


def test_gradcam_of_small_teachers_differs_between_normal_and_anomalous(tmp_path):
    torch.manual_seed(0)
    vmamba = VMamba(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)).requires_grad_(False).eval()
    cnn = _TinyCNN()
    teachers = {"CNN": (cnn, cnn), "VMamba": (vmamba, vmamba.forward_features)}
    normal = torch.zeros(1, 3, 64, 64)
    anomalous = normal.clone()
    anomalous[:, :, 8:24, 40:56] = 2.0
    cams = teacher_cams(torch.cat([normal, anomalous]), teachers, progress=False)
    assert set(cams) == {"CNN", "VMamba"}
    for name, stages in cams.items():
        assert stages.shape == (4, 2, 64, 64)
        assert np.isfinite(stages).all() and stages.min() >= 0 and stages.max() <= 1
        assert np.abs(stages[:, 0] - stages[:, 1]).max() > 0.1, f"{name}: CAMs ignore the input"
    images = np.clip(torch.cat([normal, anomalous]).permute(0, 2, 3, 1).numpy(), 0, 1)
    png = save_figure(gradcam_figure(images, cams, ["normal", "anomalous"], "test"), tmp_path / "fig1", demo=True)[1]
    assert png.stat().st_size > 5_000


def test_cli_renders_tables_and_figures(repo_root, fixture_results, tmp_path, capsys):
    out = tmp_path / "paper_tables"
    common = ["--params", str(repo_root / "params.yaml"), "--results", str(fixture_results), "--out", str(out)]
    assert main(["tables", *common, "--set", "seeds=[0, 1]"]) == 0
    assert main(["figures", *common, "--only", "fig3c_loss_curves"]) == 0
    written = {p.name for p in out.iterdir()}
    assert {f"{t}.tex" for t in TABLES} <= written
    assert {"fig3c_loss_curves.pdf", "fig3c_loss_curves.png"} <= written
    # seed 2 was never run: a clear error naming the file, exit code 2, and no traceback
    assert main(["tables", *common, "--set", "seeds=[2]", "--only", "table1"]) == 2
    assert "headct/full/code/seed2/metrics.json" in capsys.readouterr().err
