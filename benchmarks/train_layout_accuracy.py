"""How far the `full` training step's gradients are from float64, per tensor, in each memory layout.

    python -m benchmarks.train_layout_accuracy [--size 256] [--batch 10]

The gate for training in channels_last (issue #16): one step (forward, loss, backward) of a `full` model on
the same teacher features, in float64 (the truth), and in float32 in three layouts: every feature contiguous;
the engine's default (trainable modules as built, teacher features as the teachers return them: WRN50's
contiguous, VMamba's channels_last views, as the authors' code has them); the trainable modules and every
feature in channels_last. A fourth float32 run is the engine's with the students' transposed convolutions back
on `nn.ConvTranspose2d` (oneDNN's weight gradient instead of pdd.ops.transposed_conv's GEMM): the gate for that
GEMM. For every trainable tensor it computes max|g - g64| / max|g64|; it prints the median and the maximum over
tensors, the maximum over the transposed convolutions' weights (and how far those are from the default run's),
and each loss term's float64 value and absolute error. Random weights (none are reachable offline), train-mode BN.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics

import torch
from torch import nn

from pdd.models import build_pdd
from pdd.ops.transposed_conv import ConvTranspose2x2


def trainable_tensors(model) -> dict[str, torch.Tensor]:
    return {f"{module_index}.{name}": p for module_index, module in enumerate(model.trainable_modules())
            for name, p in module.named_parameters()}


def transposed_conv_weights(model) -> set[str]:
    weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.ConvTranspose2d)}
    return {name for name, p in trainable_tensors(model).items() if id(p) in weights}


def gradients(model, features) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    terms = model.loss_from_features(features)
    terms["total"].backward()
    grads = {name: p.grad.detach().double() for name, p in trainable_tensors(model).items()}
    return {name: value.item() for name, value in terms.items()}, grads


def with_stock_transposed_convs(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every ConvTranspose2x2 turned back into the nn.ConvTranspose2d it extends (same weights)."""
    for module in model.modules():
        if isinstance(module, ConvTranspose2x2):
            module.__class__ = nn.ConvTranspose2d
    return model


def relative(value: torch.Tensor, truth: torch.Tensor) -> float:
    scale = truth.abs().max().item()
    return (value - truth).abs().max().item() / scale if scale > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_pdd("full", "code", pretrained=False).train()
    with torch.no_grad():
        features = model.teacher_features(torch.randn(args.batch, 3, args.size, args.size))
    layouts = {
        "float64": (copy.deepcopy(model).double(), {k: v.double() for k, v in features.items()}),
        "contiguous": (copy.deepcopy(model), {k: v.contiguous() for k, v in features.items()}),
        "default": (copy.deepcopy(model), features),
        "default, oneDNN transposed-conv weight gradients": (with_stock_transposed_convs(copy.deepcopy(model)), features),
        "channels_last": (copy.deepcopy(model).to(memory_format=torch.channels_last),
                          {k: v.contiguous(memory_format=torch.channels_last) for k, v in features.items()}),
    }
    transposed = transposed_conv_weights(model)
    results = {name: gradients(m, f) for name, (m, f) in layouts.items()}
    truth_terms, truth_grads = results.pop("float64")
    report = {"size": args.size, "batch": args.batch, "load_average": os.getloadavg(), "layouts": {}}
    for name, (terms, grads) in results.items():
        errors = {tensor: relative(grads[tensor], truth_grads[tensor]) for tensor in truth_grads}
        worst = max(errors, key=errors.get)
        report["layouts"][name] = {
            "gradient_rel_error_median": statistics.median(errors.values()),
            "gradient_rel_error_max": errors[worst], "worst_tensor": worst,
            "transposed_conv_weights_rel_error_max": max(errors[tensor] for tensor in transposed),
            "transposed_conv_weights_rel_difference_to_default": max(
                relative(grads[tensor], results["default"][1][tensor]) for tensor in transposed),
            "loss_error": {term: {"float64": truth_terms[term], "abs": abs(terms[term] - truth_terms[term])}
                           for term in terms},
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
