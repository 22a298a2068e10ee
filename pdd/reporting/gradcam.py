"""Figure 1: Grad-CAM of the two frozen teachers, stage by stage, on medical test images (`pdd explain`).

A teacher is a feature extractor, not a classifier, so the Grad-CAM target is the mean channel-norm
of the stage's own feature map ("how strongly does this stage respond, and where"). Each stage is
wrapped as a small module that ends in an identity tap, which is the layer Grad-CAM hooks: the same
code then serves the CNN and the state-space teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD, PreparedDataset
from pdd.errors import DataError
from pdd.models.options import PDDOptions
from pdd.models.teachers import VMambaTeacher, WideResNetTeacher
from pdd.reporting.figures import HEATMAP, save_figure, styled
from pdd.reporting.tables import DATASET_LABELS

FIGURE_STEM = "fig1_gradcam_teachers"
FeatureTaps = Callable[[torch.Tensor], Sequence[torch.Tensor]]


class StageProbe(nn.Module):
    """image -> one stage's B×C×H×W features, through an identity `tap` that Grad-CAM can hook."""

    def __init__(self, body: nn.Module, taps: FeatureTaps, stage: int):
        super().__init__()
        self.body = body  # registered so Grad-CAM finds the device through .parameters()
        self.taps, self.stage = taps, stage
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the teachers hold no trainable parameters: gradients reach the stage only through the input
        return self.tap(self.taps(x.detach().requires_grad_(True))[self.stage])


class ActivationNormTarget:
    """Grad-CAM target for a feature extractor: the spatial mean of the per-location channel L2 norm."""

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return features.norm(dim=0).mean()


def teacher_taps(params) -> dict[str, tuple[nn.Module, FeatureTaps]]:
    """The two frozen teachers as params configure them (weights or random init), each with its stage taps."""
    options = params.teacher_options()
    tiny = PDDOptions()
    wrn = WideResNetTeacher(options["wrn_tag"], (1, 2, 3, 4), options["pretrained"], options["wrn_weights"],
                            options["teacher_seed"])
    vmamba = VMambaTeacher(tiny.vmamba_depths, tiny.vmamba_dims, options["pretrained"], options["vmamba_weights"],
                           options["teacher_seed"])
    return {
        "WRN50-2": (wrn.body, wrn.body),
        "VMamba-T": (vmamba.body, vmamba.body.forward_features),
    }


def teacher_cams(images: torch.Tensor, teachers: dict[str, tuple[nn.Module, FeatureTaps]], n_stages: int = 4,
                 progress: bool = True) -> dict[str, np.ndarray]:
    """{teacher: CAMs of shape stages×B×H×W in [0, 1]} for a batch of normalised images."""
    from pytorch_grad_cam import GradCAM

    cams = {}
    jobs = [(name, stage) for name in teachers for stage in range(n_stages)]
    for name, stage in tqdm(jobs, desc="Grad-CAM", disable=not progress):
        body, taps = teachers[name]
        probe = StageProbe(body, taps, stage)
        with GradCAM(model=probe, target_layers=[probe.tap]) as cam:
            maps = cam(input_tensor=images, targets=[ActivationNormTarget()] * len(images))
        cams.setdefault(name, []).append(maps)
    return {name: np.stack(stages) for name, stages in cams.items()}


def select_test_images(root: Path, image_size: int, per_label: int) -> tuple[torch.Tensor, list[str], list[int]]:
    """The first `per_label` normal and anomalous test images (in path order) of a prepared dataset."""
    dataset = PreparedDataset(root, split="test", image_size=image_size)
    order = sorted(range(len(dataset.rows)), key=lambda i: dataset.rows[i].path)
    chosen = [i for i in order if dataset.rows[i].label == 0][:per_label]
    chosen += [i for i in order if dataset.rows[i].label == 1][:per_label]
    if not chosen:
        raise DataError(f"{root} has no test images; prepare the dataset first (`pdd data prepare`)")
    items = [dataset[i] for i in chosen]
    return torch.stack([item["image"] for item in items]), [item["path"] for item in items], \
        [int(item["label"]) for item in items]


def to_display(images: torch.Tensor) -> np.ndarray:
    """ImageNet-normalised B×3×H×W -> B×H×W×3 floats in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@styled
def gradcam_figure(images: np.ndarray, cams: dict[str, np.ndarray], captions: Sequence[str], title: str):
    """Columns: images; rows: the input, then each teacher's stages from shallow (top) to deep (bottom)."""
    import matplotlib.pyplot as plt

    rows = [("input", None, None)] + [
        (f"{name}\nstage {stage + 1}", name, stage) for name, stages in cams.items() for stage in range(len(stages))
    ]
    fig = plt.figure(figsize=(1.3 * len(images) + 0.6, 1.3 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), len(images), squeeze=False)
    for r, (label, name, stage) in enumerate(rows):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.imshow(image)
            if name is not None:
                ax.imshow(cams[name][stage, c], cmap=HEATMAP, alpha=0.5, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                ax.set_title(captions[c], fontsize=6)
        axes[r, 0].set_ylabel(label, fontsize=6)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def explain(params, out: Path, datasets: Sequence[str] = ("headct", "brainmri"), per_label: int = 2,
            progress: bool = True) -> list[Path]:
    """Draw Fig. 1 for `datasets` (a few normal and anomalous test images each) into `out`."""
    batches = [select_test_images(params.prepared_dir(name), params.data.image_size, per_label) for name in datasets]
    images = torch.cat([batch[0] for batch in batches])
    captions = [
        f"{DATASET_LABELS.get(name, name)}\n{'anomalous' if label else 'normal'}: {Path(path).name}"
        for name, (_, paths, labels) in zip(datasets, batches) for path, label in zip(paths, labels)
    ]
    cams = teacher_cams(images, teacher_taps(params), progress=progress)
    weights = "ImageNet weights" if params.teachers.pretrained else "random-init teachers"
    title = f"Grad-CAM of the frozen teachers ({weights}; target: mean feature norm of the stage)"
    figure = gradcam_figure(to_display(images), cams, captions, title)
    return save_figure(figure, out / FIGURE_STEM, demo=params.demo_only)
