"""Selective scan (the S6 recurrence of Mamba) with mamba-ssm's `selective_scan_fn` semantics.

For every batch item, channel c (of group g) and state n::

    dt_t   = softplus(delta_t + delta_bias)      (or delta_t + delta_bias)
    h_t[n] = exp(dt_t * A[c, n]) * h_{t-1}[n] + dt_t * u_t * B[g, n, t]
    y_t    = sum_n C[g, n, t] * h_t[n] + D[c] * u_t,  then  y_t *= silu(z_t)

Backends, picked per call:

* ``cuda``: mamba-ssm's fused kernel, when it imports and the tensors live on a GPU;
* ``kernel``: a small C loop compiled once with the system C compiler and called through ctypes
  (float32 forward on the CPU). It keeps the 16 states in registers instead of materialising
  (L, D, N) tensors, which makes it ~3x faster than the best pure-PyTorch form (benchmarks/README.md);
* ``torch``: time-blocked PyTorch on any device and dtype, also the autograd path.

`cross_scan_2d` is VMamba's four-route scan over an image built on the same kernels: fused into one
C loop without gradients, route by route through `selective_scan` with them.

The recurrence is evaluated step by step in every backend. It only ever multiplies by decays in
(0, 1], so nothing under- or overflows at L = 4096, unlike closed forms built on cumulative products.
Whatever the backend, the arithmetic is float32 (float64 for float64 inputs) and y has u's dtype.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from pdd.io import atomic_path

__all__ = ["selective_scan", "cross_scan_2d", "available_backends"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cuda", "kernel", "torch")
# Elements of one (T, batch, channels, states) block in the PyTorch path: small enough to stay in
# the CPU cache, large enough that per-block Python overhead is negligible (measured best: 2^20).
_BLOCK_ELEMENTS = 1 << 20
ROUTES = 4  # cross_scan_2d: row-major, column-major, and both reversed


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Run the selective scan; shapes as mamba-ssm's `selective_scan_fn`.

    Args:
        u, delta: (batch, channels, L).
        A: (channels, N), real.
        B, C: (batch, N, L), or grouped (batch, G, N, L) where channel c uses group c // (channels // G).
        D: (channels,) skip weights. z: (batch, channels, L) gate. delta_bias: (channels,).
        delta_softplus: apply softplus to delta + delta_bias.
        backend: "auto" (the fastest available), or force "cuda", "kernel" or "torch".

    Returns:
        y of shape (batch, channels, L) and dtype of u.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if backend == "cuda" or (backend == "auto" and u.is_cuda and _mamba_scan_fn() is not None):
        if _mamba_scan_fn() is None or not u.is_cuda:
            raise RuntimeError("backend='cuda' needs mamba-ssm installed (pip install 'pdd[cuda]') and CUDA tensors")
        return _mamba_scan_fn()(u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    out_dtype = u.dtype
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    grouped_B, grouped_C = (t if t.dim() == 4 else t.unsqueeze(1) for t in (B, C))

    dt = delta if delta_bias is None else delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)  # identity above 20, as the CUDA kernel
    use_kernel = backend == "kernel" or (backend == "auto" and not u.is_cuda and dtype == torch.float32)
    if use_kernel and (u.is_cuda or dtype != torch.float32 or _load_kernel() is None):
        if backend == "kernel":
            raise RuntimeError("backend='kernel' needs float32 CPU tensors and a working C compiler (cc)")
        use_kernel = False
    y = _DiagonalScan.apply(u, dt, A, grouped_B, grouped_C, use_kernel)
    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(out_dtype)


def available_backends() -> list[str]:
    """The backends that work in this process (for logs and the benchmark)."""
    names = ["torch"]
    if _load_kernel() is not None:
        names.append("kernel")
    if _mamba_scan_fn() is not None and torch.cuda.is_available():
        names.append("cuda")
    return names


def cross_scan_2d(
    u: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    height: int,
    width: int,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """VMamba's cross scan (SS2D v0): selective scans along four routes over an H x W grid (row-major,
    column-major, and both reversed), each output put back at its pixel, summed, plus the D skips.

    Every input is in pixel (row-major) order, so a caller never builds the routes. The ``fused`` C
    kernel walks each route over the same memory (nothing is copied, transposed or flipped; routes and
    skips are summed in place) but has no backward. The other backends materialise the routes and scan
    them with `selective_scan` of that backend: the differentiable reference.

    Args:
        u: (batch, channels, L), L = height * width.
        dt: (batch, 4, channels, L) step sizes, already biased and activated (softplus).
        A: (4 * channels, N). B, C: (batch, 4, N, L). D: (4 * channels,).
        backend: "auto" (``fused`` when no gradient is needed and the inputs are float32 CPU tensors,
            else `selective_scan`'s "auto"), "fused", or a `selective_scan` backend for route-by-route scans.

    Returns:
        y of shape (batch, channels, L).
    """
    batch, channels, length = u.shape
    n_state = A.shape[-1]
    expected = {"dt": (batch, ROUTES, channels, length), "A": (ROUTES * channels, n_state),
                "B": (batch, ROUTES, n_state, length), "C": (batch, ROUTES, n_state, length), "D": (ROUTES * channels,)}
    for name, tensor in zip(expected, (dt, A, B, C, D)):
        if tuple(tensor.shape) != expected[name] or height * width != length:
            raise ValueError(f"cross_scan_2d: {name} must be {expected[name]} for u {tuple(u.shape)} on a "
                             f"{height}x{width} grid; got {tuple(tensor.shape)}")
    inputs = (u, dt, A, B, C, D)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    fusable = (not needs_grad and n_state <= _KERNEL_MAX_STATE and _load_kernel() is not None
               and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in inputs))
    if backend == "fused" and not fusable:
        raise RuntimeError("backend='fused' needs float32 CPU tensors without gradients, N <= "
                           f"{_KERNEL_MAX_STATE} and a working C compiler (cc); use backend='auto'")
    if backend == "fused" or (backend == "auto" and fusable):
        return _cross_kernel_forward(u, dt, A, B, C, D, height, width)

    def routes(x: torch.Tensor) -> torch.Tensor:  # (batch, 4, ..., L) in pixel order -> each route's order
        return torch.stack([_route_order(x[:, k], k, height, width) for k in range(ROUTES)], dim=1)

    xs = routes(u.unsqueeze(1).expand(batch, ROUTES, channels, length))
    y = selective_scan(xs.flatten(1, 2), routes(dt).flatten(1, 2), A, routes(B), routes(C), D, backend=backend)
    y = y.view(batch, ROUTES, channels, length)
    return sum(_pixel_order(y[:, k], k, height, width) for k in range(ROUTES))


def _route_order(x: torch.Tensor, route: int, height: int, width: int) -> torch.Tensor:
    """(..., L) in pixel order -> the order in which `route` visits the pixels."""
    if route % 2:
        x = x.unflatten(-1, (height, width)).transpose(-1, -2).flatten(-2)
    return x.flip(-1) if route >= 2 else x


def _pixel_order(x: torch.Tensor, route: int, height: int, width: int) -> torch.Tensor:
    """The inverse of `_route_order`."""
    if route >= 2:
        x = x.flip(-1)
    if route % 2:
        x = x.unflatten(-1, (width, height)).transpose(-1, -2).flatten(-2)
    return x


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (batch, channels, L); got {tuple(u.shape)}, {tuple(delta.shape)}")
    batch, channels, length = u.shape
    if A.dim() != 2 or A.shape[0] != channels or A.is_complex():
        raise ValueError(f"A must be real (channels={channels}, N); got {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        grouped = t.dim() == 4
        ok = t.dim() in (3, 4) and t.shape[0] == batch and t.shape[-2:] == (n_state, length)
        if not ok or (grouped and channels % t.shape[1]):
            raise ValueError(
                f"{name} must be (batch, N, L) or (batch, G, N, L) with G dividing channels={channels}; "
                f"got {tuple(t.shape)} for N={n_state}, L={length}"
            )
    for name, t, shape in (("D", D, (channels,)), ("delta_bias", delta_bias, (channels,)), ("z", z, u.shape)):
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(t.shape)}")


class _DiagonalScan(torch.autograd.Function):
    """y_t = sum_n C_t h_t with h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t; backward is a reverse scan.

    Only the discretised core lives here: the bias, softplus, D skip and gate around it are plain
    differentiable PyTorch in `selective_scan`.
    """

    @staticmethod
    def forward(ctx, u, dt, A, B, C, use_kernel: bool):
        ctx.save_for_backward(u, dt, A, B, C)
        if use_kernel:
            return _kernel_forward(u, dt, A, B, C)
        scan = _BlockedScan(u, dt, A, B, C)
        y = torch.empty_like(scan.u)
        state = scan.zero_state()
        for start, stop in scan.blocks():
            states = scan.run_block(start, stop, state)
            torch.matmul(states, scan.C[start:stop, ..., None], out=y[start:stop, ..., None])
            state = states[-1]
        return scan.to_channels_first(y)

    @staticmethod
    def backward(ctx, grad_y):
        u, dt, A, B, C = ctx.saved_tensors
        scan = _BlockedScan(u, dt, A, B, C)
        grad_y = scan.to_time_major(grad_y.to(scan.u.dtype))
        # Forward again, keeping only each block's incoming state; then walk the blocks backwards.
        blocks = list(scan.blocks())
        incoming = [scan.zero_state()]
        for start, stop in blocks[:-1]:
            incoming.append(scan.run_block(start, stop, incoming[-1])[-1].clone())
        grad_u, grad_dt = torch.empty_like(scan.u), torch.empty_like(scan.u)
        grad_B, grad_C = torch.empty_like(scan.B), torch.empty_like(scan.C)
        grad_A = torch.zeros_like(scan.A)
        carry = scan.zero_state()  # a_{t+1} * dL/dh_{t+1}, flowing into the block from the right
        for (start, stop), state in zip(reversed(blocks), reversed(incoming)):
            states = scan.run_block(start, stop, state)
            decay = scan.decay(start, stop)
            previous = torch.cat([state[None], states[:-1]])
            gy = grad_y[start:stop]
            grad_C[start:stop] = torch.einsum("tbgdn,tbgd->tbgn", states, gy)
            grad_h = gy[..., None] * scan.C[start:stop, :, :, None, :]
            grad_h[-1] += carry
            for t in range(stop - start - 2, -1, -1):
                grad_h[t].addcmul_(decay[t + 1], grad_h[t + 1])
            carry = decay[0] * grad_h[0]
            # h_t depends on dt through the decay exp(dt A) and the input dt u B.
            grad_input = torch.einsum("tbgdn,tbgn->tbgd", grad_h, scan.B[start:stop])
            grad_decay = grad_h * previous * decay
            grad_u[start:stop] = grad_input * scan.dt[start:stop]
            grad_dt[start:stop] = grad_input * scan.u[start:stop] + torch.einsum("tbgdn,gdn->tbgd", grad_decay, scan.A)
            grad_A += torch.einsum("tbgdn,tbgd->gdn", grad_decay, scan.dt[start:stop])
            grad_B[start:stop] = torch.einsum("tbgdn,tbgd->tbgn", grad_h, scan.dt[start:stop] * scan.u[start:stop])
        return (
            scan.to_channels_first(grad_u),
            scan.to_channels_first(grad_dt),
            grad_A.reshape(A.shape),
            grad_B.permute(1, 2, 3, 0).reshape(B.shape),
            grad_C.permute(1, 2, 3, 0).reshape(C.shape),
            None,
        )


class _BlockedScan:
    """Time-major views of one scan, evaluated in blocks of T steps that fit in the CPU cache.

    Layouts: u, dt (L, batch, G, Dg); B, C (L, batch, G, N); A (G, Dg, N); states (T, batch, G, Dg, N).
    """

    def __init__(self, u, dt, A, B, C) -> None:
        batch, channels, length = u.shape
        groups, n_state = B.shape[1], A.shape[1]
        self.shape = (batch, groups, channels // groups, n_state)
        self.length = length
        self.u = self.to_time_major(u)
        self.dt = self.to_time_major(dt)
        self.A = A.reshape(groups, channels // groups, n_state)
        self.B = B.permute(3, 0, 1, 2).contiguous()
        self.C = C.permute(3, 0, 1, 2).contiguous()
        per_step = batch * channels * n_state
        self.block = max(8, min(256, 1 << max(0, (_BLOCK_ELEMENTS // per_step).bit_length() - 1)))

    def to_time_major(self, x: torch.Tensor) -> torch.Tensor:
        batch, groups, per_group, _ = self.shape
        return x.permute(2, 0, 1).reshape(self.length, batch, groups, per_group).contiguous()

    def to_channels_first(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.length, x.shape[1], -1).permute(1, 2, 0).contiguous()

    def zero_state(self) -> torch.Tensor:
        return self.u.new_zeros(self.shape)

    def blocks(self):
        for start in range(0, self.length, self.block):
            yield start, min(start + self.block, self.length)

    def decay(self, start: int, stop: int) -> torch.Tensor:
        return torch.exp(self.dt[start:stop, ..., None] * self.A)

    def run_block(self, start: int, stop: int, state: torch.Tensor) -> torch.Tensor:
        """States h_t for t in [start, stop), from the state before `start`; the scan itself is in place."""
        decay = self.decay(start, stop)
        states = (self.dt[start:stop] * self.u[start:stop])[..., None] * self.B[start:stop, :, :, None, :]
        states[0].addcmul_(decay[0], state)
        for t in range(1, stop - start):
            states[t].addcmul_(decay[t], states[t - 1])
        return states


# --- mamba-ssm (CUDA) -------------------------------------------------------------------------


@functools.cache
def _mamba_scan_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or its CUDA extension failing to load
        return None
    return selective_scan_fn


# --- compiled C kernel (CPU, float32 forward) --------------------------------------------------

_KERNEL_SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* exp(x) for float32 without libm, so that gcc vectorises the state loop: exp(x) = 2^k * e^r with
   |r| <= ln2/2 and a degree-7 Taylor polynomial (truncation error below one ulp). */
static inline float exp_f32(float x) {
    const float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float k = (clamped * 1.44269504f + 12582912.0f) - 12582912.0f;
    const float r = (clamped - k * 0.693145752f) - k * 1.42860677e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits += (int32_t)k << 23;
    memcpy(&p, &bits, sizeof p);
    return x < -87.0f ? 0.0f : p;
}

/* One time step of one row: update the n_state states in place and return <C_t, h_t>. Inlined with a
   literal n_state for the common N = 16, so that the states stay in one vector register. */
static inline __attribute__((always_inline)) float scan_step(
        float* h, const float* rate, float step, float input, const float* B_t, const float* C_t,
        const int64_t n_state) {
    float acc = 0.0f;
    #pragma omp simd reduction(+ : acc)
    for (int64_t n = 0; n < n_state; ++n) {
        h[n] = exp_f32(step * rate[n]) * h[n] + input * B_t[n];
        acc += h[n] * C_t[n];
    }
    return acc;
}

/* One (batch, channel) row over time. */
static inline __attribute__((always_inline)) void scan_row(
        const float* u_row, const float* dt_row, const float* A_row, const float* B_group,
        const float* C_group, float* y_row, int64_t length, const int64_t n_state) {
    float h[256], rate[256];
    for (int64_t n = 0; n < n_state; ++n) {
        h[n] = 0.0f;
        rate[n] = A_row[n];
    }
    for (int64_t t = 0; t < length; ++t) {
        const float step = dt_row[t];
        y_row[t] = scan_step(h, rate, step, step * u_row[t], B_group + t * n_state, C_group + t * n_state,
                             n_state);
    }
}

/* One route of VMamba's cross scan for one row, adding its outputs to y_row at each pixel. Every input
   is in pixel (row-major) order; the route only decides the visiting order: 0 row-major, 1 column-major,
   2 and 3 the same reversed. So no route is ever copied, transposed or flipped in memory. */
static inline __attribute__((always_inline)) void cross_route(
        const float* u_row, const float* dt_row, const float* A_row, const float* B_route,
        const float* C_route, float* y_row, int64_t height, int64_t width, int route, const int64_t n_state) {
    float h[256], rate[256];
    for (int64_t n = 0; n < n_state; ++n) {
        h[n] = 0.0f;
        rate[n] = A_row[n];
    }
    const int reverse = route >= 2, columns = route % 2;
    const int64_t outer = columns ? width : height, inner = columns ? height : width;
    const int64_t outer_stride = columns ? 1 : width, inner_stride = columns ? width : 1;
    for (int64_t i = 0; i < outer; ++i) {
        const int64_t o = reverse ? outer - 1 - i : i;
        for (int64_t j = 0; j < inner; ++j) {
            const int64_t p = o * outer_stride + (reverse ? inner - 1 - j : j) * inner_stride;
            const float step = dt_row[p];
            y_row[p] += scan_step(h, rate, step, step * u_row[p], B_route + p * n_state, C_route + p * n_state,
                                  n_state);
        }
    }
}

/* Rows [row_begin, row_end) of the (batch * channels) rows; u, dt, y: (batch, channels, L);
   A: (channels, N); B, C: (batch, groups, L, N). */
void selective_scan_rows(const float* u, const float* dt, const float* A, const float* B, const float* C,
                         float* y, int64_t channels, int64_t groups, int64_t length, int64_t n_state,
                         int64_t row_begin, int64_t row_end) {
    for (int64_t row = row_begin; row < row_end; ++row) {
        const int64_t b = row / channels, c = row % channels, g = c / (channels / groups);
        const int64_t group_offset = (b * groups + g) * length * n_state;
        if (n_state == 16)
            scan_row(u + row * length, dt + row * length, A + c * 16, B + group_offset, C + group_offset,
                     y + row * length, length, 16);
        else
            scan_row(u + row * length, dt + row * length, A + c * n_state, B + group_offset, C + group_offset,
                     y + row * length, length, n_state);
    }
}

/* Rows [row_begin, row_end) of VMamba's four-route scan, summed per pixel with the D skip of every
   route; u, y: (batch, channels, L); dt: (batch, 4, channels, L); A: (4, channels, N); B, C:
   (batch, 4, L, N); D: (4, channels). All in pixel order, L = height * width. */
void cross_scan_rows(const float* u, const float* dt, const float* A, const float* B, const float* C,
                     const float* D, float* y, int64_t channels, int64_t height, int64_t width, int64_t n_state,
                     int64_t row_begin, int64_t row_end) {
    const int64_t length = height * width;
    for (int64_t row = row_begin; row < row_end; ++row) {
        const int64_t b = row / channels, c = row % channels;
        const float* u_row = u + row * length;
        float* y_row = y + row * length;
        const float skip = D[c] + D[channels + c] + D[2 * channels + c] + D[3 * channels + c];
        for (int64_t t = 0; t < length; ++t)
            y_row[t] = skip * u_row[t];
        for (int route = 0; route < 4; ++route) {
            const float* dt_row = dt + ((b * 4 + route) * channels + c) * length;
            const float* A_row = A + (route * channels + c) * n_state;
            const int64_t route_offset = (b * 4 + route) * length * n_state;
            if (n_state == 16)
                cross_route(u_row, dt_row, A_row, B + route_offset, C + route_offset, y_row, height, width,
                            route, 16);
            else
                cross_route(u_row, dt_row, A_row, B + route_offset, C + route_offset, y_row, height, width,
                            route, n_state);
        }
    }
}
"""
_KERNEL_MAX_STATE = 256
# No -ffast-math: it would let gcc drop exp_f32's rounding trick, and gcc 12 links it with code that
# sets flush-to-zero for the whole process. -fopenmp-simd only honours the `omp simd` pragma.
_KERNEL_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-shared", "-fPIC"]


def _kernel_cache_dir() -> Path:
    return Path(os.environ.get("PDD_KERNEL_DIR", Path.home() / ".cache" / "pdd" / "kernels"))


@functools.cache
def _load_kernel() -> ctypes.CDLL | None:
    """Compile the C kernels once per source, flags and CPU (cached on disk); None when no compiler works."""
    if os.environ.get("PDD_SCAN_KERNEL", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        log.info("selective_scan: no C compiler found; using the PyTorch scan")
        return None
    key = hashlib.sha256("\n".join([_KERNEL_SOURCE, *_KERNEL_FLAGS, platform.machine(), _cpu_flags()]).encode())
    path = _kernel_cache_dir() / f"selective_scan_{key.hexdigest()[:16]}.so"
    try:
        if not path.exists():
            with atomic_path(path) as tmp:
                subprocess.run([compiler, *_KERNEL_FLAGS, "-x", "c", "-", "-o", str(tmp)],
                               input=_KERNEL_SOURCE.encode(), check=True, capture_output=True, timeout=120)
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("selective_scan: could not build the C kernel (%s); using the PyTorch scan", exc)
        return None
    library.selective_scan_rows.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 6
    library.cross_scan_rows.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 6
    for function in (library.selective_scan_rows, library.cross_scan_rows):
        function.restype = None
    return library


def _cpu_flags() -> str:
    """The CPU's feature flags: a kernel built with -march=native must not be reused on another CPU."""
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()


def _kernel_forward(u, dt, A, B, C) -> torch.Tensor:
    batch, channels, length = u.shape
    _check_kernel_state(A.shape[1])
    u, dt, A = u.contiguous(), dt.contiguous(), A.contiguous()
    B, C = B.transpose(-1, -2).contiguous(), C.transpose(-1, -2).contiguous()
    y = torch.empty_like(u)
    _run_rows(_load_kernel().selective_scan_rows, batch * channels, u, dt, A, B, C, y,
              channels, B.shape[1], length, A.shape[1])
    return y


def _check_kernel_state(n_state: int) -> None:
    if n_state > _KERNEL_MAX_STATE:
        raise ValueError(f"the C kernel supports N <= {_KERNEL_MAX_STATE}; use backend='torch'")


def _run_rows(function, rows: int, *arguments) -> None:
    """Call `function(*pointers, *integers, row_begin, row_end)` on row ranges split evenly over torch's
    threads: ctypes releases the GIL, so the threads run truly in parallel."""
    values = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in arguments]
    workers = max(1, min(torch.get_num_threads(), rows))
    bounds = [rows * i // workers for i in range(workers + 1)]

    def run(i: int) -> None:
        function(*values, bounds[i], bounds[i + 1])

    if workers == 1:
        run(0)
    else:
        list(_thread_pool(workers).map(run, range(workers)))


def _cross_kernel_forward(u, dt, A, B, C, D, height: int, width: int) -> torch.Tensor:
    batch, channels, _ = u.shape
    u, dt, A, D = (t.contiguous() for t in (u, dt, A, D))
    B, C = B.transpose(-1, -2).contiguous(), C.transpose(-1, -2).contiguous()
    y = torch.empty_like(u)
    _run_rows(_load_kernel().cross_scan_rows, batch * channels, u, dt, A, B, C, D, y,
              channels, height, width, A.shape[1])
    return y


@functools.cache
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pdd-scan")
