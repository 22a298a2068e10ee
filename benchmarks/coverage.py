"""Coverage of the report's 95 % AUROC intervals on simulated test sets of known AUROC, at the report's settings.

    python -m benchmarks.coverage [--simulations 1000] [--resamples 10000]

Binormal scores (`pdd.reporting.simulation.binormal_scores`) at AUROC 0.80 and 0.95 with HeadCT's (40 + 100)
and BrainMRI's (40 + 154) class counts; for each, the share of simulations whose interval holds the true AUROC:
the stratified BCa and percentile bootstraps (`ImageBootstrap`, the simulations as curves of one call) and
DeLong's interval on the identity and logit scales. docs/reporting.md quotes its output; the tests rerun a
smaller version (1,000 resamples) of the bootstrap and DeLong-logit rows.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from pdd.reporting.resampling import AUROC
from pdd.reporting.simulation import binormal_scores
from pdd.reporting.uncertainty import (
    CurveMetric,
    ImageBootstrap,
    LabelledImages,
    UncertaintySettings,
    delong,
    normal_interval,
)

CASES = [(auroc, counts) for auroc in (0.80, 0.95) for counts in ((40, 100), (40, 154))]


def coverage(auroc: float, counts: tuple[int, int], simulations: int, resamples: int, seed: int) -> dict[str, float]:
    labels, scores = binormal_scores(np.random.default_rng(seed), auroc, *counts, size=(simulations,))
    images = LabelledImages("simulated", tuple(map(str, range(labels.size))), labels, np.array([""] * labels.size))
    result = {}
    for method in ("BCa", "percentile"):
        bootstrap = ImageBootstrap(images, UncertaintySettings(resamples=resamples, seed=seed))
        for simulation, row in enumerate(scores):
            bootstrap.add_curve(simulation, row)
        intervals = bootstrap.run([CurveMetric(s, AUROC) for s in range(simulations)], method=method).intervals
        result[f"bootstrap {method}"] = float(np.mean([interval.contains(auroc) for interval in intervals]))
    estimates, variances = delong(labels, scores, covariance=False)
    settings = UncertaintySettings()
    for scale in ("identity", "logit"):
        result[f"DeLong {scale}"] = float(np.mean([normal_interval(a, v, settings, scale).contains(auroc)
                                                   for a, v in zip(estimates, variances)]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.simulations} simulations, {args.resamples} resamples, seed {args.seed}, load {os.getloadavg()}")
    print("| AUROC | normal + anomalous | bootstrap BCa | bootstrap percentile | DeLong identity | DeLong logit |")
    print("|---|---|---:|---:|---:|---:|")
    for auroc, counts in CASES:
        row = coverage(auroc, counts, args.simulations, args.resamples, args.seed)
        shares = " | ".join(f"{100 * value:.1f} %" for value in row.values())
        print(f"| {auroc:.2f} | {counts[0]} + {counts[1]} | {shares} |", flush=True)


if __name__ == "__main__":
    main()
