"""The pure-PyTorch selective scan: a time-blocked forward and its reverse-scan backward.

It is the ``torch`` backend, the only backward of every backend (the compiled kernel has no gradient) and the
reference the kernels are tested against. Arithmetic is in the inputs' dtype (float32 or float64).
"""

from __future__ import annotations

import torch

# Elements of one (T, batch, channels, states) block: small enough to stay in the CPU cache, large enough
# that per-block Python overhead is negligible (measured best: 2^20).
BLOCK_ELEMENTS = 1 << 20


class DiagonalScan(torch.autograd.Function):
    """y_t = sum_n C_t h_t with h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t; backward is a reverse scan.

    Only the discretised core lives here: the bias, softplus, D skip and gate around it are plain
    differentiable PyTorch in `pdd.ops.dispatch.selective_scan`. `kernel_forward`, when given, computes the
    same forward faster (the compiled CPU kernel); the backward is this reverse scan whichever forward ran.
    """

    @staticmethod
    def forward(ctx, u, dt, A, B, C, kernel_forward):
        ctx.save_for_backward(u, dt, A, B, C)
        if kernel_forward is not None:
            return kernel_forward(u, dt, A, B, C)
        scan = BlockedScan(u, dt, A, B, C)
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
        scan = BlockedScan(u, dt, A, B, C)
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


class BlockedScan:
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
        self.block = max(8, min(256, 1 << max(0, (BLOCK_ELEMENTS // per_step).bit_length() - 1)))

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
