"""The public scan functions: check shapes, pick a backend per call and run it (package docstring: which)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from pdd.ops import cpu_kernel
from pdd.ops.reference import DiagonalScan

BACKENDS = ("auto", "cuda", "triton", "kernel", "torch")
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
        backend: "auto" (the fastest available), or force "cuda", "triton", "kernel" or "torch".

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
    if backend == "triton" or (backend == "auto" and _auto_picks_triton(u, delta, A, B, C, D, z, delta_bias)):
        return _triton_scan(u).selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    out_dtype = u.dtype
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    grouped_B, grouped_C = (t if t.dim() == 4 else t.unsqueeze(1) for t in (B, C))

    dt = delta if delta_bias is None else delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)  # identity above 20, as the CUDA kernel
    use_kernel = backend == "kernel" or (backend == "auto" and not u.is_cuda and dtype == torch.float32)
    if use_kernel and (u.is_cuda or dtype != torch.float32 or cpu_kernel.load_kernel() is None):
        if backend == "kernel":
            raise RuntimeError("backend='kernel' needs float32 CPU tensors and a working C compiler (cc)")
        use_kernel = False
    y = DiagonalScan.apply(u, dt, A, grouped_B, grouped_C, cpu_kernel.scan_forward if use_kernel else None)
    if D is not None:
        y = y + u * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(out_dtype)


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """The backends that work for tensors on `device` in this process (for logs and the benchmarks).

    `kernel` is CPU only; `cuda` (mamba-ssm) and `triton` are CUDA only. Triton's interpreter is not listed
    for the CPU: it is for testing the kernel, ~1000x too slow for a model."""
    on_cuda = torch.device(device).type == "cuda"
    names = ["torch"]
    if not on_cuda and cpu_kernel.load_kernel() is not None:
        names.append("kernel")
    if on_cuda and torch.cuda.is_available():
        if _mamba_scan_fn() is not None:
            names.append("cuda")
        triton_scan = _triton_scan_module()
        if triton_scan is not None and not triton_scan.interpreting():
            names.append("triton")
    return names


def cross_scan_2d(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    height: int,
    width: int,
    *,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """VMamba's cross scan (SS2D v0): selective scans along four routes over an H x W grid (row-major,
    column-major, and both reversed), each output put back at its pixel, summed, plus the D skips.

    Every tensor is in the channels-last pixel order of the VMamba block (pixel-major, channels
    innermost), so a caller neither builds the routes nor transposes anything. The ``fused`` C kernel
    walks each route over that same memory, 16 channels per vector (nothing is copied, transposed or
    flipped; routes and skips are summed in place) but has no backward; the ``triton`` kernel does the
    same on the GPU (`pdd.ops.triton_scan`, also forward-only). The other backends materialise the routes
    channel-first and scan them with `selective_scan` of that backend: the differentiable reference.

    Args:
        u: (batch, L, channels), L = height * width.
        delta: (4, batch, L, channels) step sizes, before delta_bias and softplus (as `selective_scan`).
        A: (4 * channels, N). B, C: (batch, L, 4, N), e.g. strided views of the ``x_proj`` output.
        D: (4 * channels,). delta_bias: (4 * channels,), like A and D route-major.
        delta_softplus: steps = softplus(delta + delta_bias); the fused kernels apply both as they read them.
        backend: "auto" (without gradients: ``fused`` for float32 CPU tensors, ``triton`` for CUDA tensors
            when mamba-ssm is absent; else `selective_scan`'s "auto"), "fused", "triton", or a
            `selective_scan` backend for route-by-route scans.

    Returns:
        y of shape (batch, L, channels), contiguous.
    """
    batch, length, channels = u.shape
    n_state = A.shape[-1]
    expected = {"delta": (ROUTES, batch, length, channels), "A": (ROUTES * channels, n_state),
                "B": (batch, length, ROUTES, n_state), "C": (batch, length, ROUTES, n_state), "D": (ROUTES * channels,),
                "delta_bias": (ROUTES * channels,)}
    bias = D if delta_bias is None else delta_bias  # D's shape: nothing to check without a bias
    for name, tensor in zip(expected, (delta, A, B, C, D, bias)):
        if tuple(tensor.shape) != expected[name] or height * width != length:
            raise ValueError(f"cross_scan_2d: {name} must be {expected[name]} for u {tuple(u.shape)} on a "
                             f"{height}x{width} grid; got {tuple(tensor.shape)}")
    inputs = (u, delta, A, B, C, D, bias)
    if backend == "triton" or (backend == "auto" and _auto_picks_triton(*inputs)):
        return _triton_scan(u).cross_scan_2d(u, delta, A, B, C, D, height, width, delta_bias=delta_bias,
                                             delta_softplus=delta_softplus)
    fusable = (not _needs_grad(*inputs) and n_state <= cpu_kernel.MAX_STATE and cpu_kernel.load_kernel() is not None
               and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in inputs))
    if backend == "fused" and not fusable:
        raise RuntimeError("backend='fused' needs float32 CPU tensors without gradients, N <= "
                           f"{cpu_kernel.MAX_STATE} and a working C compiler (cc); use backend='auto'")
    if backend == "fused" or (backend == "auto" and fusable):
        return cpu_kernel.cross_scan_forward(u, delta, delta_bias, delta_softplus, A, B, C, D, height, width)

    def routes(x: torch.Tensor) -> torch.Tensor:  # (batch, 4, ..., L) in pixel order -> each route's order
        return torch.stack([_route_order(x[:, k], k, height, width) for k in range(ROUTES)], dim=1)

    # Channel-first (..., L) rows, as `selective_scan` takes them.
    u, delta, B, C = u.transpose(1, 2), delta.permute(1, 0, 3, 2), B.permute(0, 2, 3, 1), C.permute(0, 2, 3, 1)
    xs = routes(u.unsqueeze(1).expand(batch, ROUTES, channels, length))
    y = selective_scan(xs.flatten(1, 2), routes(delta).flatten(1, 2), A, routes(B), routes(C), D,
                       delta_bias=delta_bias, delta_softplus=delta_softplus, backend=backend)
    y = y.view(batch, ROUTES, channels, length)
    y = sum(_pixel_order(y[:, k], k, height, width) for k in range(ROUTES))
    return y.transpose(1, 2).contiguous()


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


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


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


# --- mamba-ssm (CUDA) -------------------------------------------------------------------------


@functools.cache
def _mamba_scan_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or its CUDA extension failing to load
        return None
    return selective_scan_fn


# --- Triton (GPU without mamba-ssm) -----------------------------------------------------------


@functools.cache
def _triton_scan_module():
    try:
        from pdd.ops import triton_scan
    except ImportError:  # triton is not installed
        return None
    return triton_scan


def _auto_picks_triton(u: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """"auto" on CUDA without mamba-ssm: the Triton kernel, unless a gradient is needed (it has no backward)."""
    if not u.is_cuda or _mamba_scan_fn() is not None or _needs_grad(u, *others):
        return False
    triton_scan = _triton_scan_module()
    return triton_scan is not None and triton_scan.runs_on(u)


def _triton_scan(u: torch.Tensor):
    triton_scan = _triton_scan_module()
    if triton_scan is None or not triton_scan.runs_on(u):
        raise RuntimeError("backend='triton' needs triton installed and CUDA tensors "
                           "(or CPU tensors with TRITON_INTERPRET=1 set before triton is imported)")
    return triton_scan
