"""Selective scan (the S6 recurrence of Mamba) with mamba-ssm's `selective_scan_fn` semantics.

For every batch item, channel c (of group g) and state n::

    dt_t   = softplus(delta_t + delta_bias)      (or delta_t + delta_bias)
    h_t[n] = exp(dt_t * A[c, n]) * h_{t-1}[n] + dt_t * u_t * B[g, n, t]
    y_t    = sum_n C[g, n, t] * h_t[n] + D[c] * u_t,  then  y_t *= silu(z_t)

Backends, picked per call by `dispatch`:

* ``cuda``: mamba-ssm's fused kernel, when it imports and the tensors live on a GPU;
* ``triton``: our Triton kernel of `triton_scan` (forward only: the scan runs in the frozen teacher),
  picked on a GPU when mamba-ssm is absent and no gradient is needed;
* ``kernel``: the C loops of ``selective_scan.c`` (package data), compiled once with the system C compiler
  and called through ctypes by `cpu_kernel` (float32 forward on the CPU). They keep the 16 states in
  registers instead of materialising (L, D, N) tensors, which makes them ~3x faster than the best
  pure-PyTorch form (benchmarks/README.md);
* ``torch``: the time-blocked PyTorch scan of `reference`, on any device and dtype, also the autograd path.

`cross_scan_2d` is VMamba's four-route scan over an image, in the channels-last (B, L, D) layout of the
VMamba block: without gradients one C pass that holds 16 channels per vector (so B_t[n], C_t[n] are
scalars and <C_t, h_t> needs no horizontal sum) on the CPU, or one Triton launch on the GPU; with them
route by route through `selective_scan`.

The recurrence is evaluated step by step in every backend. It only ever multiplies by decays in
(0, 1], so nothing under- or overflows at L = 4096, unlike closed forms built on cumulative products.
Whatever the backend, the arithmetic is float32 (float64 for float64 inputs) and y has u's dtype.
"""

from pdd.ops.dispatch import available_backends, cross_scan_2d, selective_scan

__all__ = ["selective_scan", "cross_scan_2d", "available_backends"]
