"""Shared-query cross-attention (VisualRefiner, DESIGN §6): one set of L queries for every row b of a batch.

    O_b = softmax(Q K_bᵀ · scale) V_b,   Q (L, H, Dh) shared,   K_b, V_b (S, H, Dh),   O_b (L, H, Dh)

Q is broadcast inside the kernels (it is read with no batch stride): no (B, L, H, Dh) copy of it exists.

Forward (``_sq_fwd_kernel``): grid ``(B, H · ⌈L / BLOCK_M⌉, chunks)``, online softmax over S in BLOCK_N tiles, the
head dim tiled as in ``_attention_common`` (Q·Kᵀ over all chunks, one output chunk per program).

Backward, after the pre-pass Δ = Σ_d dO ∘ O:

* ``_sq_bwd_kv_kernel``, grid ``(B, H · ⌈S / BLOCK_M⌉, chunks)``: dV_b = Pᵀ dO_b, dK_b = scale · dSᵀ Q over all L
  queries — each key row belongs to one b, written directly.
* ``_sq_bwd_q_kernel``, grid ``(splits, H · ⌈L / BLOCK_M⌉, chunks)``: dQ = scale · Σ_b dS_b K_b is shared by the
  batch; each of ``splits`` contiguous ranges of b writes a float32 partial (splits, L, H, Dh) and the host sums them
  in a fixed order (no atomics: deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from uasan.kernels._attention_common import (
    DTYPES,
    LOG2E,
    autotuned,
    device_guard,
    dkdv_step,
    dot_precision,
    dq_step,
    head_and_block,
    head_dim_chunks,
    head_dim_pad,
    interpreting,
    load_rows,
    owner_rows,
    qk_tile,
    row_dot,
    softmax_update,
    store_forward,
)

#: Override of the number of batch ranges of the dQ reduction (None: heuristic).
DQ_SPLIT: int | None = None


@triton.jit
def _sq_fwd_kernel(
    Q, K, V, OUT, LSE, L, S, H, Dh, qk_scale,
    HEAD_DIM_PAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAX_D: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    BLOCK_D: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < MAX_D else MAX_D  # output columns per program
    SLICE: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < BLOCK_K else BLOCK_K  # head-dim slice of Q·Kᵀ
    NUM_K: tl.constexpr = HEAD_DIM_PAD // SLICE
    HD = H * Dh
    b = tl.program_id(0).to(tl.int64)
    h, mb = head_and_block(L, BLOCK_M)
    chunk = tl.program_id(2)
    hoff = h * Dh
    rows = mb * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) query rows, shared by every b
    rvalid = rows < L
    q_ptr = Q + rows * HD + hoff  # (BLOCK_M,) row pointers
    d_own = chunk * BLOCK_D + tl.arange(0, BLOCK_D)
    q_own = owner_rows(q_ptr, rvalid, Dh, SLICE, NUM_K)

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for n0 in range(0, S, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key rows of b
        cvalid = cols < S
        sc = qk_tile(q_own, rvalid, K + (b * S + cols) * HD + hoff, cvalid, Dh, SLICE, NUM_K, PREC)
        pr, alpha, m_i, l_i = softmax_update(sc, cvalid, m_i, l_i, qk_scale)
        v = load_rows(V + (b * S + cols) * HD + hoff, cvalid, d_own, Dh)  # (BLOCK_N, BLOCK_D)
        acc = acc * alpha[:, None] + tl.dot(pr.to(v.dtype), v, input_precision=PREC)
    store_forward(OUT, LSE, acc / l_i[:, None], m_i, l_i, b * L + rows, rvalid, d_own, Dh, HD, hoff, H, h, chunk)


@triton.jit
def _sq_bwd_kv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, L, S, H, Dh, qk_scale, scale,
    HEAD_DIM_PAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAX_D: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    BLOCK_D: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < MAX_D else MAX_D
    NUM_CHUNKS: tl.constexpr = HEAD_DIM_PAD // BLOCK_D
    SLICE: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < BLOCK_K else BLOCK_K
    NUM_K: tl.constexpr = HEAD_DIM_PAD // SLICE
    HD = H * Dh
    b = tl.program_id(0).to(tl.int64)
    h, kb = head_and_block(S, BLOCK_M)
    chunk = tl.program_id(2)
    hoff = h * Dh
    local = kb * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) key rows of b
    lvalid = local < S
    own_off = (b * S + local) * HD + hoff  # (BLOCK_M,)
    d_own = chunk * BLOCK_D + tl.arange(0, BLOCK_D)
    k_own = owner_rows(K + own_off, lvalid, Dh, SLICE, NUM_K)
    v_own = owner_rows(V + own_off, lvalid, Dh, SLICE, NUM_K)

    dk = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for i0 in range(0, L, BLOCK_N):
        qi = i0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) query rows
        qvalid = qi < L
        orow = b * L + qi  # rows of dO / LSE / Δ
        q_ptr = Q + qi * HD + hoff
        do_ptr = DO + orow * HD + hoff
        dk, dv = dkdv_step(
            dk, dv, k_own, v_own, lvalid, q_ptr, do_ptr, qvalid, LSE, DELTA, orow, H, h, d_own, Dh, qk_scale,
            SLICE, NUM_K, NUM_CHUNKS, PREC,
        )  # fmt: skip
    off = own_off[:, None] + d_own[None, :]
    mask = lvalid[:, None] & (d_own < Dh)[None, :]
    tl.store(DK + off, (dk * scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + off, dv.to(DV.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["B", "N_SPLIT"])
def _sq_bwd_q_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, B, L, S, H, Dh, N_SPLIT, qk_scale, scale,
    HEAD_DIM_PAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAX_D: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    BLOCK_D: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < MAX_D else MAX_D
    NUM_CHUNKS: tl.constexpr = HEAD_DIM_PAD // BLOCK_D
    SLICE: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < BLOCK_K else BLOCK_K
    NUM_K: tl.constexpr = HEAD_DIM_PAD // SLICE
    HD = H * Dh
    split = tl.program_id(0).to(tl.int64)
    h, mb = head_and_block(L, BLOCK_M)
    chunk = tl.program_id(2)
    hoff = h * Dh
    b_start = B * split // N_SPLIT
    b_end = B * (split + 1) // N_SPLIT
    rows = mb * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) query rows
    rvalid = rows < L
    q_ptr = Q + rows * HD + hoff
    d_own = chunk * BLOCK_D + tl.arange(0, BLOCK_D)
    q_own = owner_rows(q_ptr, rvalid, Dh, SLICE, NUM_K)

    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for b in range(b_start, b_end):
        orow = b * L + rows  # (BLOCK_M,) rows of dO / LSE / Δ
        do_ptr = DO + orow * HD + hoff
        lse = tl.load(LSE + orow * H + h, mask=rvalid, other=0.0)
        delta = tl.load(DELTA + orow * H + h, mask=rvalid, other=0.0)
        do_own = owner_rows(do_ptr, rvalid, Dh, SLICE, NUM_K)
        for j0 in range(0, S, BLOCK_N):
            kj = j0 + tl.arange(0, BLOCK_N)
            kvalid = kj < S
            k_ptr = K + (b * S + kj) * HD + hoff
            v_ptr = V + (b * S + kj) * HD + hoff
            dq = dq_step(
                dq, q_own, do_own, rvalid, lse, delta, k_ptr, v_ptr, kvalid, d_own, Dh, qk_scale,
                SLICE, NUM_K, NUM_CHUNKS, PREC,
            )  # fmt: skip
    off = ((split * L + rows) * HD + hoff)[:, None] + d_own[None, :]
    tl.store(DQ + off, (dq * scale).to(DQ.dtype.element_ty), mask=rvalid[:, None] & (d_own < Dh)[None, :])


# ------------------------------------------------------------------------------------------------------------------
# host side: launchers, then the autograd Function
# ------------------------------------------------------------------------------------------------------------------

_KEY = ["L", "S", "H", "Dh"]


def shared_query_attention_forward(q, k, v, scale: float):
    """q (L, H, Dh), k/v (B, S, H, Dh), contiguous → out (B, L, H, Dh), lse (B, L, H) float32 (log2 domain)."""
    length, h, dh = q.shape
    b, s = k.shape[:2]
    out = torch.empty((b, length, h, dh), device=q.device, dtype=q.dtype)  # (B, L, H, Dh)
    lse = torch.empty((b, length, h), device=q.device, dtype=torch.float32)  # (B, L, H)
    if out.numel() == 0:
        return out, lse
    if s == 0:
        return out.zero_(), lse.fill_(float("-inf"))  # softmax over no keys: an empty sum
    dpad = head_dim_pad(dh)
    kernel = autotuned("sq_fwd", _sq_fwd_kernel, _KEY, q)
    grid = lambda meta: (b, h * triton.cdiv(length, meta["BLOCK_M"]), head_dim_chunks(dpad, meta))  # noqa: E731
    kernel[grid](q, k, v, out, lse, length, s, h, dh, scale * LOG2E, HEAD_DIM_PAD=dpad, PREC=dot_precision(q.dtype))
    return out, lse


def _dq_split(b: int, h: int, length: int, dpad: int, device: torch.device) -> int:
    if DQ_SPLIT is not None:
        return max(1, min(int(DQ_SPLIT), b))
    if interpreting() or device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    programs = h * triton.cdiv(length, 32) * max(1, dpad // 128)
    return max(1, min(b, 64, triton.cdiv(2 * sms, programs)))


def shared_query_attention_backward(do, q, k, v, out, lse, scale: float):
    """Gradients (dq, dk, dv), deterministic."""
    length, h, dh = q.shape
    b, s = k.shape[:2]
    if out.numel() == 0 or s == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    do = do.contiguous()
    delta = row_dot(out, do)  # (B, L, H) float32
    dpad = head_dim_pad(dh)
    scalars = dict(HEAD_DIM_PAD=dpad, PREC=dot_precision(q.dtype))
    dk, dv = torch.empty_like(k), torch.empty_like(v)  # every row written
    kernel = autotuned("sq_bwd_kv", _sq_bwd_kv_kernel, _KEY, q)
    grid = lambda meta: (b, h * triton.cdiv(s, meta["BLOCK_M"]), head_dim_chunks(dpad, meta))  # noqa: E731
    kernel[grid](q, k, v, do, lse, delta, dk, dv, length, s, h, dh, scale * LOG2E, scale, **scalars)

    splits = _dq_split(b, h, length, dpad, q.device)
    buf = torch.empty((splits, length, h, dh), device=q.device, dtype=torch.float32)  # (splits, L, H, Dh) partials
    kernel = autotuned("sq_bwd_q", _sq_bwd_q_kernel, _KEY, q)
    grid = lambda meta: (splits, h * triton.cdiv(length, meta["BLOCK_M"]), head_dim_chunks(dpad, meta))  # noqa: E731
    kernel[grid](q, k, v, do, lse, delta, buf, b, length, s, h, dh, splits, scale * LOG2E, scale, **scalars)
    dq = (buf[0] if splits == 1 else buf.sum(0)).to(q.dtype)  # fixed-order sum over the batch ranges
    return dq, dk, dv


class SharedQueryAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: forward and backward are the Triton kernels above (inputs already validated)."""

    @staticmethod
    def forward(ctx, q, k, v, scale):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        with device_guard(q):
            out, lse = shared_query_attention_forward(q, k, v, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse = ctx.saved_tensors
        with device_guard(q):
            grads = shared_query_attention_backward(do, q, k, v, out, lse, ctx.scale)
        return (*grads, None)


def shared_query_attention(q, k, v, scale: float) -> torch.Tensor:
    if q.dtype not in DTYPES:
        raise ValueError(f"shared_query_attention: the Triton path takes {DTYPES}, but got {q.dtype}")
    return SharedQueryAttentionFunction.apply(q, k, v, scale)
