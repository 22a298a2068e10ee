"""Our `selective_scan` (every CPU backend) against a step-by-step loop at VMamba-Tiny's stage shapes.

The loop is mamba-ssm's `selective_scan_ref` formulation (one Python iteration per time step, fp32).
Outputs are checked to agree within 1e-5 relative before any speed is reported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.common import Ratio, Settings, median_seconds
from pdd.ops import available_backends, selective_scan

# (stage, K*D channels, L) of VMamba-Tiny at 256²: K = 4 routes, D = 2C, L = (256 / 4 / 2^stage)².
STAGES = [(1, 768, 4096), (2, 1536, 1024), (3, 3072, 256), (4, 6144, 64)]
ROUTES, STATES = 4, 16
MAX_RELATIVE_ERROR = 1e-5


def step_by_step_scan(u, delta, A, B, C, D, delta_bias):
    """The baseline: one Python iteration per time step, as mamba-ssm's `selective_scan_ref`."""
    batch, channels, length = u.shape
    dt = F.softplus(delta + delta_bias[:, None])
    B = B.repeat_interleave(channels // B.shape[1], dim=1)
    C = C.repeat_interleave(channels // C.shape[1], dim=1)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", dt, A))
    inputs = torch.einsum("bdl,bdnl,bdl->bdln", dt, B, u)
    state = u.new_zeros(batch, channels, A.shape[1])
    ys = []
    for t in range(length):
        state = decay[:, :, t] * state + inputs[:, :, t]
        ys.append(torch.einsum("bdn,bdn->bd", state, C[:, :, :, t]))
    return torch.stack(ys, dim=2) + u * D[:, None]


def scan_inputs(channels: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs in the ranges of a trained VMamba: dt ~ 0.1, A in the S4D range -1 .. -16."""
    gen = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(1, channels, length, generator=gen),
        delta=torch.randn(1, channels, length, generator=gen) - 2.0,
        A=-torch.exp(torch.rand(channels, STATES, generator=gen) * 2.8),
        B=torch.randn(1, ROUTES, STATES, length, generator=gen),
        C=torch.randn(1, ROUTES, STATES, length, generator=gen),
        D=torch.ones(channels),
        delta_bias=torch.zeros(channels),
    )


def run(settings: Settings) -> dict:
    backends = available_backends("cpu")  # the scan inputs are CPU tensors, whatever --device says
    stages = STAGES[:1] + STAGES[3:] if settings.quick else STAGES
    rows, ratios = [], []
    for stage, channels, length in stages:
        inputs = scan_inputs(channels, length)
        with torch.no_grad():
            loop_s, expected = median_seconds(lambda: step_by_step_scan(**inputs), 1, warmup=0)
            row = {"stage": stage, "channels": channels, "L": length, "N": STATES, "batch": 1, "loop_s": loop_s}
            for backend in backends:
                seconds, y = median_seconds(
                    lambda: selective_scan(**inputs, delta_softplus=True, backend=backend), settings.repeats
                )
                error = ((y - expected).abs().max() / expected.abs().max()).item()
                if error > MAX_RELATIVE_ERROR:
                    raise AssertionError(f"{backend} scan disagrees with the loop at stage {stage}: {error:.2e}")
                row[backend] = {"seconds": seconds, "speedup_vs_loop": loop_s / seconds, "max_rel_error": error}
        rows.append(row)
        best = max(backends, key=lambda b: row[b]["speedup_vs_loop"])
        ratios.append(Ratio(
            f"scan stage {stage} ({channels}x{length}): {best} vs step-by-step loop",
            row[best]["speedup_vs_loop"], ">= 10",
            detail=f"loop {loop_s * 1e3:.0f} ms, {best} {row[best]['seconds'] * 1e3:.1f} ms, "
                   f"err {row[best]['max_rel_error']:.1e}",
        ))
    return {"stages": rows, "ratios": ratios}
