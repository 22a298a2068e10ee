"""Figures 3c (loss curves) and 4/5 (localisation panels), drawn from run outputs with matplotlib Agg.

Output is byte-for-byte reproducible: fixed rcParams, no creation dates or software stamps in the
PDF/PNG metadata, deterministic sample selection. Runs marked `demo` in their metrics.json get the
demo banner on the figure itself, so a demo figure cannot be mistaken for a result.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pdd.config import RunSpec  # noqa: E402
from pdd.engine.rundir import RunDir  # noqa: E402
from pdd.errors import DataError  # noqa: E402
from pdd.io import atomic_path  # noqa: E402
from pdd.reporting.results import load_run  # noqa: E402
from pdd.reporting.tables import DATASET_LABELS, DEMO_BANNER  # noqa: E402

# Everything that could vary between machines or matplotlib styles is pinned here.
RC_PARAMS = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "figure.titlesize": 8,
    "savefig.dpi": 150,
    "image.interpolation": "nearest",
    "pdf.fonttype": 42,
    "svg.hashsalt": "pdd",
    "path.simplify": False,
}
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
PNG_METADATA = {"Software": None}
LOSS_TERMS = ("L_kr", "L_prp", "L_div")
HEATMAP = "jet"
OVERLAY_ALPHA = 0.45  # as in the authors' visualisation script


def styled(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw under the pinned rcParams (fonts and sizes are fixed when artists are created)."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(RC_PARAMS):
            return draw(*args, **kwargs)

    return wrapper


def save_figure(fig: Figure, stem: Path, demo: bool) -> list[Path]:
    """Write `<stem>.pdf` and `<stem>.png` atomically, with the demo banner when `demo`."""
    if demo:
        add_banner(fig)
    paths = []
    with matplotlib.rc_context(RC_PARAMS):
        for ext, metadata in (("pdf", PDF_METADATA), ("png", PNG_METADATA)):
            path = stem.with_suffix(f".{ext}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, metadata=metadata)
            paths.append(path)
    plt.close(fig)
    return paths


def add_banner(fig: Figure, band_inches: float = 0.3) -> None:
    """Grow the figure by a band at the top and write the demo banner there, over nothing else."""
    height = fig.get_figheight()
    shrink = height / (height + band_inches)
    fig.set_figheight(height + band_inches)
    for ax in fig.axes:
        x, y, w, h = ax.get_position().bounds
        ax.set_position([x, y * shrink, w, h * shrink])
    for text in (child for child in fig.get_children() if isinstance(child, Text)):  # suptitle and fig.text
        text.set_y(text.get_position()[1] * shrink)
    fig.text(0.5, 1 - 0.5 * (1 - shrink), DEMO_BANNER, ha="center", va="center", color="red", fontsize=8,
             fontweight="bold")


def run_is_demo(run_dir: RunDir) -> bool:
    """The `run.demo` flag of a run's metrics.json: the figures' banner follows the data, not the caller."""
    path = run_dir.metrics
    if not path.is_file():
        raise DataError(f"missing {path}: run `pdd evaluate --run {run_dir.root}` before drawing figures from it")
    return load_run(path).demo


# ---------------------------------------------------------------------------------------------------------------
# Figure 3c: loss curves


def read_epoch_losses(run_dir: RunDir, terms: Sequence[str] = LOSS_TERMS) -> dict[str, np.ndarray]:
    """Per-epoch means of each loss term from dvclive's `plots/metrics/train/epoch/<term>.tsv`."""
    curves = {}
    for term in terms:
        path = run_dir.dvclive / "plots" / "metrics" / "train" / "epoch" / f"{term}.tsv"
        if not path.is_file():
            raise DataError(f"missing {path}: the loss curve of {term} is logged by `pdd train` (dvclive)")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows or term not in rows[0]:
            raise DataError(f"{path} has no '{term}' column or no rows; re-run `pdd train` for {run_dir.root}")
        curves[term] = np.array([float(row[term]) for row in rows])
    return curves


@styled
def loss_curves_figure(run_dir: RunDir, title: str) -> Figure:
    """L_kr, L_prp and L_div over epochs, each on its own axis (their scales differ by orders of magnitude)."""
    curves = read_epoch_losses(run_dir)
    fig = plt.figure(figsize=(7.0, 2.4))
    axes = fig.subplots(1, len(curves))
    for ax, (term, values) in zip(axes, curves.items()):
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, marker="o" if len(values) < 20 else None, markersize=3)
        ax.set_title(rf"$\mathcal{{L}}_{{{term.split('_', 1)[1]}}}$")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("mean loss per epoch")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Figures 4 and 5: localisation panels


@dataclass(frozen=True)
class SavedMaps:
    """The `maps/<scoring>.npz` a run saved: uint8 images and masks, float maps, labels and paths."""

    images: np.ndarray  # N×S×S×3 uint8
    masks: np.ndarray  # N×S×S 0/1
    maps: np.ndarray  # N×S×S float
    labels: np.ndarray
    paths: np.ndarray

    @classmethod
    def load(cls, path: Path) -> SavedMaps:
        if not path.is_file():
            raise DataError(f"missing {path}: `pdd evaluate` saves it when eval.save_maps > 0")
        with np.load(path) as data:
            missing = [name for name in ("images", "masks", "maps", "labels", "paths") if name not in data]
            if missing:
                raise DataError(f"{path} lacks arrays {missing}; re-run `pdd evaluate` for that run")
            return cls(data["images"], data["masks"], data["maps"], data["labels"], data["paths"])

    def index(self) -> dict[str, int]:
        return {str(p): i for i, p in enumerate(self.paths)}


def select_examples(baseline: SavedMaps, ours: SavedMaps, per_label: int) -> list[str]:
    """Paths saved by both runs: up to `per_label` normal then anomalous images, in path order."""
    common = sorted(set(baseline.index()) & set(ours.index()))
    if not common:
        raise DataError("the two runs saved no common test image; evaluate both with the same eval.save_maps")
    labels = {p: int(ours.labels[ours.index()[p]]) for p in common}
    chosen = [p for p in common if labels[p] == 0][:per_label] + [p for p in common if labels[p] == 1][:per_label]
    return chosen


@styled
def localization_figure(baseline: SavedMaps, ours: SavedMaps, dataset: str, per_label: int = 2) -> Figure:
    """Rows: chosen test images; columns: input, ground truth (when masks exist), the re-run RD4AD's map, PDD's map.

    Each method's maps share one colour scale across its rows, so a normal image's map is comparable with an
    anomalous one's (per-image min-max scaling would make every normal image look anomalous).
    """
    chosen = select_examples(baseline, ours, per_label)
    with_masks = bool(ours.masks.any())
    columns = ["input", *(["ground truth"] if with_masks else []), BASELINE_LABEL, "PDD (full)"]
    scales = {name: _scale(maps, [m.index()[p] for p in chosen]) for name, maps, m in
              ((BASELINE_LABEL, baseline.maps, baseline), ("PDD (full)", ours.maps, ours))}
    fig = plt.figure(figsize=(1.6 * len(columns), 1.6 * len(chosen) + 0.5))
    axes = np.atleast_2d(fig.subplots(len(chosen), len(columns), squeeze=False))
    for r, path in enumerate(chosen):
        i, j = ours.index()[path], baseline.index()[path]
        image = ours.images[i]
        panels = {"input": None, "ground truth": ours.masks[i], BASELINE_LABEL: baseline.maps[j], "PDD (full)": ours.maps[i]}
        for c, name in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(image)
            if name == "ground truth":
                ax.imshow(np.ma.masked_equal(panels[name], 0), cmap="autumn", alpha=0.6, vmin=0, vmax=1)
            elif name != "input":
                low, high = scales[name]
                ax.imshow(panels[name], cmap=HEATMAP, alpha=OVERLAY_ALPHA, vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                ax.set_title(name)
        label = "anomalous" if int(ours.labels[i]) else "normal"
        axes[r, 0].set_ylabel(f"{label}\n{Path(path).name}", fontsize=6)
    fig.suptitle(f"Anomaly localisation on {DATASET_LABELS.get(dataset, dataset)}: {BASELINE_LABEL} vs PDD; "
                 "one colour scale per method")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _scale(maps: np.ndarray, rows: Sequence[int]) -> tuple[float, float]:
    shown = maps[list(rows)]
    low, high = float(shown.min()), float(shown.max())
    return low, high if high > low else low + 1e-6


# ---------------------------------------------------------------------------------------------------------------
# All figures drawn from results (Figure 1 comes from the teachers: `pdd explain`, pdd.reporting.gradcam)

LOSS_FIGURE = ("fig3c_loss_curves", "zhanglab")  # the paper plots ZhangLab
LOCALIZATION_FIGURES = {"fig4_localization_headct": "headct", "fig5_localization_zhanglab": "zhanglab"}
# The paper's Fig. 5 sets PDD beside RD4AD (Fig. 4 beside Skip-TS, which pdd does not re-run): both figures show the
# `rd4ad` variant, RD4AD re-run with its own recipe and teachers (Tables 1-2), not Table 3's M1 (PDD's recipe).
BASELINE_VARIANT, BASELINE_LABEL = "rd4ad", "RD4AD (re-run)"
FIGURES = (LOSS_FIGURE[0], *LOCALIZATION_FIGURES)


def render_figures(
    results_root: Path, out: Path, fidelity: str, seed: int, only: Sequence[str] = FIGURES, scoring: str = "ts"
) -> list[Path]:
    """Draw Figs. 3c, 4 and 5 from the runs `results/<dataset>/{rd4ad,full}/<fidelity>/seed<seed>`."""
    written: list[Path] = []

    def run_dir(dataset: str, variant: str) -> RunDir:
        return RunDir(results_root / RunSpec(dataset, variant, fidelity, seed).relative_dir)

    if LOSS_FIGURE[0] in only:
        stem, dataset = LOSS_FIGURE
        directory = run_dir(dataset, "full")
        title = f"Training losses, {DATASET_LABELS[dataset]}, PDD (full, {fidelity} fidelity, seed {seed})"
        written += save_figure(loss_curves_figure(directory, title), out / stem, run_is_demo(directory))
    for stem, dataset in LOCALIZATION_FIGURES.items():
        if stem not in only:
            continue
        baseline_dir, ours_dir = run_dir(dataset, BASELINE_VARIANT), run_dir(dataset, "full")
        figure = localization_figure(
            SavedMaps.load(baseline_dir.maps(scoring)), SavedMaps.load(ours_dir.maps(scoring)),
            dataset,
        )
        written += save_figure(figure, out / stem, run_is_demo(baseline_dir) or run_is_demo(ours_dir))
    return written


# ---------------------------------------------------------------------------------------------------------------
# The replication report's forest plot


@dataclass(frozen=True)
class ForestRow:
    """One published cell: ours − paper (percentage points) with its interval, and its verdict."""

    label: str
    delta: float
    low: float
    high: float
    verdict: str


VERDICT_COLOURS = {"reproduced": "tab:green", "lower": "tab:red", "higher": "tab:blue"}


@styled
def forest_figure(rows: Sequence[ForestRow], title: str, level: float) -> Figure:
    """ours − paper per cell with its interval, one line each in the report's order, the paper at 0."""
    fig = plt.figure(figsize=(6.5, 1.0 + 0.17 * max(len(rows), 1)))
    ax = fig.subplots()
    positions = np.arange(len(rows))[::-1]
    for y, row in zip(positions, rows):
        colour = VERDICT_COLOURS.get(row.verdict, "tab:gray")
        ax.plot([row.low, row.high], [y, y], color=colour, linewidth=1.2)
        ax.plot([row.delta], [y], marker="o", markersize=3, color=colour)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(positions, [row.label for row in rows], fontsize=6)
    ax.set_ylim(-1, len(rows))
    ax.set_xlabel(f"ours − paper (percentage points), with the {100 * level:g} % interval of ours")
    handles = [Line2D([], [], color=colour, marker="o", markersize=3, label=verdict)
               for verdict, colour in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=6)
    ax.set_title(title)
    fig.tight_layout()
    return fig
