"""The ``triton`` backend: a selective scan and VMamba's four-route cross scan as one Triton kernel.

It is the fast GPU path when mamba-ssm is not installed. **Forward only**: the scan runs in pdd only inside the
frozen VMamba teacher (`PDDModel.teacher_features` is computed under ``torch.no_grad``; no trainable module
calls it), so no backward is written. A call that needs a gradient raises here, and ``backend="auto"`` sends
it to the differentiable PyTorch scan instead (`pdd.ops.dispatch`).

One program owns a block of channels of one (batch item, group), keeps their (channels, N) states in
registers and walks the sequence step by step, as the C kernel and the reference do (same recurrence, same
order of operations, so no closed form's cumulative products underflow at L = 4096). Parallelism comes from
the batch x channels programs; a step's loads do not depend on the state, so they overlap the
recurrence's latency. (A chunked `tl.associative_scan` form was tried first: Triton's interpreter calls
its combine function once per element, which made the CPU tests take minutes.) Arithmetic is float32
(float64 for float64 inputs), as in every backend.

The cross scan reads every input in pixel (row-major) order, as the fused C kernel does: a route only
decides which pixel step t of the scan visits, so no route is copied, transposed or flipped. Each route
writes its own slice of a (batch, 4, channels, L) buffer (no two programs write one element), summed after.

Tests run the kernel on CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``, which must be set
before triton is imported: ``triton.jit`` reads it when a kernel is defined, triton's own library included;
tests/conftest.py sets it on machines without CUDA).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from pdd.devices import launch_device

ROUTES = 4
BLOCK_D = 32  # channels per program: (32, 16) states fill 4 warps with 4 registers a thread


def interpreting() -> bool:
    """Whether the kernel was defined for Triton's interpreter (it then runs on CPU tensors, and only on them)."""
    return isinstance(_scan_kernel, InterpretedFunction)


def runs_on(tensor: torch.Tensor) -> bool:
    return tensor.is_cuda != interpreting()


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """`pdd.ops.dispatch.selective_scan` (shapes checked there) in the kernel; y has u's dtype."""
    _require_no_grad(u, delta, A, B, C, D, z, delta_bias)
    batch, channels, length = u.shape
    grouped_B, grouped_C = (t if t.dim() == 4 else t.unsqueeze(1) for t in (B, C))
    groups = grouped_B.shape[1]
    dtype = _compute_dtype(u)
    y = torch.empty(u.shape, dtype=dtype, device=u.device)

    def by_group(t):  # (batch, channels, L) -> (batch, groups, channels per group, L)
        return None if t is None else t.to(dtype).view(batch, groups, channels // groups, length)

    _launch(by_group(u), by_group(delta), A, grouped_B, grouped_C, D, by_group(z), delta_bias, by_group(y),
            dtype=dtype, softplus=delta_softplus)
    return y.to(u.dtype)


def cross_scan_2d(u, delta, A, B, C, D, height: int, width: int, *, delta_bias=None,
                  delta_softplus=False) -> torch.Tensor:
    """`pdd.ops.dispatch.cross_scan_2d` (shapes checked there: channels-last u, delta, B, C) in one launch
    over the four routes; each route writes its own slice of a (4, batch, L, channels) buffer, summed after."""
    _require_no_grad(u, delta, A, B, C, D, delta_bias)
    batch, length, channels = u.shape
    dtype = _compute_dtype(u)
    routes = torch.empty(delta.shape, dtype=dtype, device=u.device)
    # (batch, route, channel, step) views of the block's memory: nothing is copied (u is shared by the routes)
    _launch(u.to(dtype).permute(0, 2, 1).unsqueeze(1).expand(batch, ROUTES, channels, length),
            delta.to(dtype).permute(1, 0, 3, 2), A, B.to(dtype).permute(0, 2, 3, 1), C.to(dtype).permute(0, 2, 3, 1),
            D, None, delta_bias, routes.permute(1, 0, 3, 2), dtype=dtype, softplus=delta_softplus,
            height=height, width=width)
    return routes.sum(dim=0).to(u.dtype)


def _launch(u, dt, A, B, C, D, z, delta_bias, y, *, dtype, softplus, height=None, width=None) -> None:
    """Run the kernel over (batch, groups, channel blocks). u, dt, z and y are (batch, groups, channels per
    group, L) and B, C (batch, groups, N, L), in any strides (the kernel reads them where they lie)."""
    batch, groups, per_group, length = y.shape
    n_state = A.shape[1]
    A = A.to(dtype).contiguous()
    optional = [t.to(dtype).contiguous() if t is not None else None for t in (D, delta_bias)]
    D, delta_bias = (t if t is not None else A for t in optional)  # a placeholder is never read: HAS_* is off
    grid = (batch, groups, triton.cdiv(per_group, BLOCK_D))
    with launch_device(y):  # Triton launches on the current GPU, which need not be the tensors' one
        _scan_kernel[grid](
            u, dt, A, B, C, D, z if z is not None else y, delta_bias, y,
            *u.stride(), *dt.stride(), *B.stride(), *C.stride(), *(z if z is not None else y).stride(),
            *y.stride(), per_group, n_state, length, height or 1, width or length,
            HAS_D=optional[0] is not None, HAS_Z=z is not None, HAS_BIAS=optional[1] is not None,
            SOFTPLUS=softplus, ROUTED=height is not None,
            BLOCK_D=BLOCK_D, BLOCK_N=triton.next_power_of_2(n_state),
        )


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _require_no_grad(*tensors) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError("backend='triton' is forward-only (the scan runs in the frozen teacher); "
                           "use backend='auto' or 'torch' where a gradient is needed")


@triton.jit
def _scan_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
    su_b, su_g, su_d, su_t, sdt_b, sdt_g, sdt_d, sdt_t, sB_b, sB_g, sB_n, sB_t, sC_b, sC_g, sC_n, sC_t,
    sz_b, sz_g, sz_d, sz_t, sy_b, sy_g, sy_d, sy_t,
    per_group, n_state, length, height, width,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    ROUTED: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1)
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok = d < per_group
    n_ok = n < n_state
    channel = g * per_group + d  # index into A, D and delta_bias
    d64 = d.to(tl.int64)
    u_row = b * su_b + g * su_g + d64 * su_d
    dt_row = b * sdt_b + g * sdt_g + d64 * sdt_d
    z_row = b * sz_b + g * sz_g + d64 * sz_d
    y_row = b * sy_b + g * sy_g + d64 * sy_d
    B_row = b * sB_b + g * sB_g + n.to(tl.int64) * sB_n
    C_row = b * sC_b + g * sC_g + n.to(tl.int64) * sC_n
    # Padded channels (u = 0, never stored) and states (A = B = C = 0) stay at zero.
    A = tl.load(A_ptr + channel[:, None] * n_state + n[None, :], mask=d_ok[:, None] & n_ok[None, :], other=0.0)
    if HAS_D:
        skip = tl.load(D_ptr + channel, mask=d_ok, other=0.0)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + channel, mask=d_ok, other=0.0)
    state = tl.zeros((BLOCK_D, BLOCK_N), dtype=A.dtype)
    for t in range(0, length):
        if ROUTED:  # route g: 0 row-major, 1 column-major, 2 and 3 the same reversed
            s = tl.where(g >= 2, length - 1 - t, t)
            pixel = tl.where(g % 2 == 1, (s % height) * width + s // height, s).to(tl.int64)
        else:
            pixel = tl.full((), t, tl.int64)
        u = tl.load(u_ptr + u_row + pixel * su_t, mask=d_ok, other=0.0)
        dt = tl.load(dt_ptr + dt_row + pixel * sdt_t, mask=d_ok, other=0.0)
        if HAS_BIAS:
            dt += bias
        if SOFTPLUS:  # log(1 + e^x), identity above 20 as in mamba-ssm and torch; log1p by Goldberg's trick
            # (exact where 1 + e^x rounds), so small steps keep their relative precision. Inline: a nested
            # jit call costs the interpreter more than the whole step.
            e = tl.exp(tl.minimum(dt, 20.0))
            w = 1.0 + e
            dt = tl.where(dt > 20.0, dt, tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0)))
        B = tl.load(B_ptr + B_row + pixel * sB_t, mask=n_ok, other=0.0)
        C = tl.load(C_ptr + C_row + pixel * sC_t, mask=n_ok, other=0.0)
        state = tl.exp(dt[:, None] * A) * state + (dt * u)[:, None] * B[None, :]
        y = tl.sum(state * C[None, :], axis=1)
        if HAS_D:
            y += skip * u
        if HAS_Z:
            gate = tl.load(z_ptr + z_row + pixel * sz_t, mask=d_ok, other=0.0)
            y *= gate * tl.sigmoid(gate)
        tl.store(y_ptr + y_row + pixel * sy_t, y, mask=d_ok)
