"""Fused pair self-attention over gathered sequences (SACEncoder, DESIGN §6): forward and backward Triton kernels.

For every pair p the sequence is ``X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]]`` (L = 2·Lt + Lp rows) and, per head,

    O_p = softmax(Q_p K_pᵀ · scale) V_p

with Q_p, K_p, V_p the rows of X_p taken from the (traj_q, pair_q), (traj_k, pair_k), (traj_v, pair_v) tensors.
The trajectory rows are read through ``subj`` / ``obj`` inside the kernels (one pointer per row, picked from the
trajectory or the pair tensor): nothing of size P × 2·Lt exists, in the forward or the backward.

Forward (``_pair_fwd_kernel``): grid ``(P, H · ⌈L / BLOCK_M⌉, chunks)`` — P on axis 0 (no 65,535 limit). A program
owns BLOCK_M query rows of one pair and head and one head-dim chunk of the output (all of it in a full-width tile);
it streams the L key rows in BLOCK_N tiles with the online softmax, and the chunk-0 program saves the row
log-sum-exp (log2 domain) for the backward. Q·Kᵀ runs over the whole head dim: from registers when it is one
``BLOCK_K`` slice, else slice by slice as loaded (``_attention_common.scores``), once per output chunk.

Backward (``_pair_bwd_kernel``), after the pre-pass Δ_i = Σ_d dO_i · O_i. For a block R of rows of X_p the program
computes, per head-dim chunk,

    dV_R = Σ_i P_iR dO_i,   dK_R = scale · Σ_i dS_iR Q_i,   dQ_R = scale · Σ_j dS_Rj K_j,   dS = P ∘ (dO Vᵀ − Δ)

(phase 1: dK, dV looping over all query rows i; phase 2: dQ looping over all key rows j). It runs in two modes:

* ``TRAJ=False``, grid ``(P, H · ⌈Lp / BLOCK_M⌉, chunks)``: R is a block of pair p's own rows (offset 2·Lt); the
  gradients of pair_q/k/v are written directly (each row belongs to one pair).
* ``TRAJ=True``, grid ``(N, H · ⌈Lt / BLOCK_M⌉, chunks · splits)``: R is a block of trajectory n's rows, and the
  program accumulates over the pairs that contain n, read from a CSR of (pair, role) entries sorted by trajectory
  (role 0: n is the subject, rows at offset 0; role 1: the object, offset Lt; s == o gives two entries). The
  entries of a trajectory may be cut into ``splits`` contiguous ranges for parallelism; each range writes its own
  float32 partial (splits, N, Lt, H, Dh) and the host sums them in a fixed order. No atomics: bit-reproducible.

Why not one backward program per (pair, head) that computes each P block once: the trajectory rows' gradients of a
pair then have to be reduced over the 2(N−1) pairs of each trajectory. Without atomics (the kernels are
deterministic) that needs float32 partials of size P × 2·Lt × H × Dh for each of dQ, dK, dV — 1.3× the materialised
bf16 gather (3 × P × L × H × Dh) that this op exists to avoid, and the peak-memory goal (≤ ½ of eager) with it.
Owner programs recompute P (two passes over each pair's L × L scores instead of one) but keep memory at
O(N·Lt + P·Lp).
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

#: Override of the number of ranges the pair list of each trajectory is cut into in the backward (None: heuristic).
TRAJ_SPLIT: int | None = None


@triton.jit
def _seq_offsets(s, o, p, rows, Lt, Lp, HD, hoff):
    """Element offsets of rows ``rows`` of X_p = [traj[s]; traj[o]; pair[p]] (head offset ``hoff`` included) into the
    trajectory tensor and into the pair tensor (both contiguous (·, H·Dh) row-major), and whether each row is a
    trajectory row. Each row is read from exactly one of the two (``tl.where`` on the pointers)."""
    in_s = rows < Lt
    in_t = rows < 2 * Lt
    t_off = (tl.where(in_s, s, o) * Lt + tl.where(in_s, rows, rows - Lt)) * HD + hoff  # (R,) int64
    p_off = (p * Lp + (rows - 2 * Lt)) * HD + hoff  # (R,) int64 (negative for trajectory rows: never used)
    return t_off, p_off, in_t


@triton.jit
def _pair_fwd_kernel(
    TQ, TK, TV, PQ, PK, PV, SUBJ, OBJ, OUT, LSE,
    Lt, Lp, H, Dh, qk_scale,
    HEAD_DIM_PAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAX_D: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    BLOCK_D: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < MAX_D else MAX_D  # output columns per program
    SLICE: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < BLOCK_K else BLOCK_K  # head-dim slice of Q·Kᵀ
    NUM_K: tl.constexpr = HEAD_DIM_PAD // SLICE
    L = 2 * Lt + Lp
    HD = H * Dh
    p = tl.program_id(0).to(tl.int64)
    h, mb = head_and_block(L, BLOCK_M)
    chunk = tl.program_id(2)
    hoff = h * Dh
    s = tl.load(SUBJ + p)
    o = tl.load(OBJ + p)

    rows = mb * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) positions in X_p
    rvalid = rows < L
    t_off, p_off, in_t = _seq_offsets(s, o, p, rows, Lt, Lp, HD, hoff)
    q_ptr = tl.where(in_t, TQ + t_off, PQ + p_off)  # (BLOCK_M,) row pointers
    d_own = chunk * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,) this program's output columns
    q_own = owner_rows(q_ptr, rvalid, Dh, SLICE, NUM_K)

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for n0 in range(0, L, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key positions in X_p
        cvalid = cols < L
        kt_off, kp_off, k_in_t = _seq_offsets(s, o, p, cols, Lt, Lp, HD, hoff)
        sc = qk_tile(q_own, rvalid, tl.where(k_in_t, TK + kt_off, PK + kp_off), cvalid, Dh, SLICE, NUM_K, PREC)
        pr, alpha, m_i, l_i = softmax_update(sc, cvalid, m_i, l_i, qk_scale)
        v = load_rows(tl.where(k_in_t, TV + kt_off, PV + kp_off), cvalid, d_own, Dh)  # (BLOCK_N, BLOCK_D)
        acc = acc * alpha[:, None] + tl.dot(pr.to(v.dtype), v, input_precision=PREC)
    store_forward(OUT, LSE, acc / l_i[:, None], m_i, l_i, p * L + rows, rvalid, d_own, Dh, HD, hoff, H, h, chunk)


@triton.jit(do_not_specialize=["N_OWN", "N_SPLIT"])
def _pair_bwd_kernel(
    TQ, TK, TV, PQ, PK, PV, SUBJ, OBJ, DO, LSE, DELTA, ENT, PTR, DQ, DK, DV,
    Lt, Lp, H, Dh, N_OWN, N_SPLIT, qk_scale, scale,
    TRAJ: tl.constexpr, HEAD_DIM_PAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAX_D: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    BLOCK_D: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < MAX_D else MAX_D  # gradient columns per program
    NUM_CHUNKS: tl.constexpr = HEAD_DIM_PAD // BLOCK_D
    SLICE: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < BLOCK_K else BLOCK_K  # head-dim slice of S and dP
    NUM_K: tl.constexpr = HEAD_DIM_PAD // SLICE
    L = 2 * Lt + Lp
    HD = H * Dh
    own = tl.program_id(0).to(tl.int64)  # trajectory n (TRAJ) or pair p
    if TRAJ:
        nrows = Lt
        OQ = TQ
        OK = TK
        OV = TV
    else:
        nrows = Lp
        OQ = PQ
        OK = PK
        OV = PV
    h, rb = head_and_block(nrows, BLOCK_M)
    chunk = tl.program_id(2) % NUM_CHUNKS
    split = tl.program_id(2) // NUM_CHUNKS
    hoff = h * Dh
    if TRAJ:
        e_lo = tl.load(PTR + own)
        count = tl.load(PTR + own + 1) - e_lo
        e_start = e_lo + count * split // N_SPLIT
        e_end = e_lo + count * (split + 1) // N_SPLIT
    else:
        e_start = 0
        e_end = 1

    local = rb * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) row within the owner's block of rows
    lvalid = local < nrows
    own_off = (own * nrows + local) * HD + hoff  # (BLOCK_M,) row offsets in the owner tensor (N·Lt or P·Lp, H·Dh)
    d_own = chunk * BLOCK_D + tl.arange(0, BLOCK_D)
    k_own = owner_rows(OK + own_off, lvalid, Dh, SLICE, NUM_K)
    v_own = owner_rows(OV + own_off, lvalid, Dh, SLICE, NUM_K)

    # phase 1: dK, dV of the owner rows, over every query row of every pair they appear in
    dk = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for e in range(e_start, e_end):
        if TRAJ:
            p = tl.load(ENT + e) // 2
        else:
            p = own
        s = tl.load(SUBJ + p)
        o = tl.load(OBJ + p)
        for i0 in range(0, L, BLOCK_N):
            qi = i0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) query positions in X_p
            qvalid = qi < L
            qrow = p * L + qi  # rows of dO / LSE / Δ
            qt_off, qp_off, q_in_t = _seq_offsets(s, o, p, qi, Lt, Lp, HD, hoff)
            q_ptr = tl.where(q_in_t, TQ + qt_off, PQ + qp_off)
            do_ptr = DO + qrow * HD + hoff
            dk, dv = dkdv_step(
                dk, dv, k_own, v_own, lvalid, q_ptr, do_ptr, qvalid, LSE, DELTA, qrow, H, h, d_own, Dh, qk_scale,
                SLICE, NUM_K, NUM_CHUNKS, PREC,
            )  # fmt: skip
    out_off = (((split * N_OWN + own) * nrows + local) * HD + hoff)[:, None] + d_own[None, :]
    own_mask = lvalid[:, None] & (d_own < Dh)[None, :]
    tl.store(DK + out_off, (dk * scale).to(DK.dtype.element_ty), mask=own_mask)
    tl.store(DV + out_off, dv.to(DV.dtype.element_ty), mask=own_mask)

    # phase 2: dQ of the owner rows, over every key row of every pair they appear in
    q_own = owner_rows(OQ + own_off, lvalid, Dh, SLICE, NUM_K)
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for e in range(e_start, e_end):
        if TRAJ:
            ent = tl.load(ENT + e)
            p = ent // 2
            pos = (ent % 2) * Lt
        else:
            p = own
            pos = 2 * Lt
        s = tl.load(SUBJ + p)
        o = tl.load(OBJ + p)
        orow = p * L + pos + local  # (BLOCK_M,) rows of dO / LSE / Δ for the owner rows in X_p
        do_ptr = DO + orow * HD + hoff
        lse = tl.load(LSE + orow * H + h, mask=lvalid, other=0.0)
        delta = tl.load(DELTA + orow * H + h, mask=lvalid, other=0.0)
        do_own = owner_rows(do_ptr, lvalid, Dh, SLICE, NUM_K)
        for j0 in range(0, L, BLOCK_N):
            kj = j0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key positions in X_p
            kvalid = kj < L
            kt_off, kp_off, k_in_t = _seq_offsets(s, o, p, kj, Lt, Lp, HD, hoff)
            k_ptr = tl.where(k_in_t, TK + kt_off, PK + kp_off)
            v_ptr = tl.where(k_in_t, TV + kt_off, PV + kp_off)
            dq = dq_step(
                dq, q_own, do_own, lvalid, lse, delta, k_ptr, v_ptr, kvalid, d_own, Dh, qk_scale,
                SLICE, NUM_K, NUM_CHUNKS, PREC,
            )  # fmt: skip
    tl.store(DQ + out_off, (dq * scale).to(DQ.dtype.element_ty), mask=own_mask)


# ------------------------------------------------------------------------------------------------------------------
# host side: launchers, then the autograd Function
# ------------------------------------------------------------------------------------------------------------------

_KEY = ["Lt", "Lp", "H", "Dh"]


def pair_self_attention_forward(tq, tk, tv, pq, pk, pv, subj, obj, scale: float):
    """Launches the forward. Inputs contiguous, same dtype (fp32/fp16/bf16) and device; subj/obj int64 in range.
    Returns ``out`` (P, 2Lt+Lp, H, Dh) and ``lse`` (P, 2Lt+Lp, H) float32 (log2 domain)."""
    n, lt, h, dh = tq.shape
    p, lp = pq.shape[:2]
    length = 2 * lt + lp
    out = torch.empty((p, length, h, dh), device=tq.device, dtype=tq.dtype)  # (P, 2Lt+Lp, H, Dh)
    lse = torch.empty((p, length, h), device=tq.device, dtype=torch.float32)  # (P, 2Lt+Lp, H)
    if p == 0 or length == 0 or h == 0 or dh == 0:
        return out, lse
    if lp == 0:  # never read: every pair-row load is masked
        pq = pk = pv = tq
    dpad = head_dim_pad(dh)
    kernel = autotuned("pair_fwd", _pair_fwd_kernel, _KEY, tq)
    grid = lambda meta: (p, h * triton.cdiv(length, meta["BLOCK_M"]), head_dim_chunks(dpad, meta))  # noqa: E731
    kernel[grid](
        tq, tk, tv, pq, pk, pv, subj, obj, out, lse, lt, lp, h, dh, scale * LOG2E,
        HEAD_DIM_PAD=dpad, PREC=dot_precision(tq.dtype),
    )  # fmt: skip
    return out, lse


def _traj_split(n: int, h: int, lt: int, dpad: int, pairs: int, device: torch.device) -> int:
    if TRAJ_SPLIT is not None:
        return max(1, int(TRAJ_SPLIT))
    if interpreting() or device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    programs = n * h * triton.cdiv(lt, 32) * max(1, dpad // 128)
    per_traj = max(1, (2 * pairs) // max(n, 1))  # mean entries per trajectory
    return max(1, min(triton.cdiv(2 * sms, programs), per_traj // 2))


def trajectory_csr(subj: torch.Tensor, obj: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Entries ``2·p + role`` (role 0: subject, 1: object) grouped by trajectory, pairs ascending within each
    group (subject entries first), and the (N + 1,) offsets. A stable sort: deterministic."""
    p = subj.shape[0]
    key = torch.cat([subj, obj])  # (2P,)
    ids = torch.arange(p, device=subj.device, dtype=torch.int64) * 2
    ent = torch.cat([ids, ids + 1])[torch.argsort(key, stable=True)]  # (2P,)
    ptr = torch.zeros(n + 1, device=subj.device, dtype=torch.int64)
    ptr[1:] = torch.cumsum(torch.bincount(key, minlength=n), 0)
    return ent, ptr


def pair_self_attention_backward(do, tq, tk, tv, pq, pk, pv, subj, obj, out, lse, scale: float):
    """Gradients (d traj_q, d traj_k, d traj_v, d pair_q, d pair_k, d pair_v), deterministic."""
    n, lt, h, dh = tq.shape
    p, lp = pq.shape[:2]
    length = 2 * lt + lp
    if p == 0 or length == 0 or h == 0 or dh == 0:
        return [torch.zeros_like(x) for x in (tq, tk, tv, pq, pk, pv)]
    do = do.contiguous()
    delta = row_dot(out, do)  # (P, L, H) float32
    dpad = head_dim_pad(dh)
    if lp == 0:
        pq_, pk_, pv_ = tq, tk, tv  # never read
    else:
        pq_, pk_, pv_ = pq, pk, pv
    scalars = dict(HEAD_DIM_PAD=dpad, PREC=dot_precision(tq.dtype))
    ent, ptr = trajectory_csr(subj, obj, n)

    grads_pair = [torch.empty_like(x) for x in (pq, pk, pv)]  # every row written by the pair-mode programs
    if lp > 0:
        kernel = autotuned("pair_bwd_pair", _pair_bwd_kernel, _KEY, tq)
        grid = lambda meta: (p, h * triton.cdiv(lp, meta["BLOCK_M"]), head_dim_chunks(dpad, meta))  # noqa: E731
        dpq, dpk, dpv = grads_pair
        kernel[grid](
            tq, tk, tv, pq_, pk_, pv_, subj, obj, do, lse, delta, ent, ptr, dpq, dpk, dpv,
            lt, lp, h, dh, p, 1, scale * LOG2E, scale, TRAJ=False, **scalars,
        )  # fmt: skip

    if lt == 0 or n == 0:
        return [torch.zeros_like(x) for x in (tq, tk, tv)] + grads_pair
    splits = _traj_split(n, h, lt, dpad, p, tq.device)
    # float32 partials (one compiled variant whatever the split; N·Lt rows are few, so the cast below is cheap)
    bufs = [torch.empty((splits, n, lt, h, dh), device=tq.device, dtype=torch.float32) for _ in range(3)]
    kernel = autotuned("pair_bwd_traj", _pair_bwd_kernel, _KEY, tq)
    grid = lambda meta: (n, h * triton.cdiv(lt, meta["BLOCK_M"]), head_dim_chunks(dpad, meta) * splits)  # noqa: E731
    kernel[grid](
        tq, tk, tv, pq_, pk_, pv_, subj, obj, do, lse, delta, ent, ptr, bufs[0], bufs[1], bufs[2],
        lt, lp, h, dh, n, splits, scale * LOG2E, scale, TRAJ=True, **scalars,
    )  # fmt: skip
    grads_traj = [(b[0] if splits == 1 else b.sum(0)).to(tq.dtype) for b in bufs]  # fixed-order sum over splits
    return grads_traj + grads_pair


class PairSelfAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: forward and backward are the Triton kernels above (inputs already validated)."""

    @staticmethod
    def forward(ctx, tq, tk, tv, pq, pk, pv, subj, obj, scale):
        args = [x.contiguous() for x in (tq, tk, tv, pq, pk, pv)]
        subj, obj = subj.contiguous(), obj.contiguous()
        with device_guard(tq):
            out, lse = pair_self_attention_forward(*args, subj, obj, scale)
        ctx.save_for_backward(*args, subj, obj, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, do):
        tq, tk, tv, pq, pk, pv, subj, obj, out, lse = ctx.saved_tensors
        with device_guard(tq):
            grads = pair_self_attention_backward(do, tq, tk, tv, pq, pk, pv, subj, obj, out, lse, ctx.scale)
        return (*grads, None, None, None)


def pair_self_attention(tq, tk, tv, pq, pk, pv, subj, obj, scale: float) -> torch.Tensor:
    if tq.dtype not in DTYPES:
        raise ValueError(f"pair_self_attention: the Triton path takes {DTYPES}, but got {tq.dtype}")
    return PairSelfAttentionFunction.apply(tq, tk, tv, pq, pk, pv, subj, obj, scale)
