"""Fused pair self-attention over gathered sequences (SACEncoder, DESIGN §6): forward and backward Triton kernels.

For every pair p the sequence is ``X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]]`` (L = 2·Lt + Lp rows) and, per head,

    O_p = softmax(Q_p K_pᵀ · scale) V_p

with Q_p, K_p, V_p the rows of X_p taken from the (traj_q, pair_q), (traj_k, pair_k), (traj_v, pair_v) tensors.
The trajectory rows are read through ``subj`` / ``obj`` inside the kernels: nothing of size P × 2·Lt exists, in the
forward or the backward.

Forward (``_pair_fwd_kernel``): grid ``(P, H · ⌈L / BLOCK_M⌉, chunks)`` — P on axis 0 (no 65,535 limit). A program
owns BLOCK_M query rows of one pair and head and one head-dim chunk of the output; it streams the L key rows in
BLOCK_N tiles with the online softmax (Q·Kᵀ summed over all head-dim chunks), and the chunk-0 program saves the
row log-sum-exp (log2 domain) for the backward.

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
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from uasan.kernels._attention_common import (
    DTYPES,
    LOG2E,
    autotuned,
    dot_precision,
    gpu_configs,
    interp_config,
    interpreting,
    next_pow2,
    prune_width,
    row_dot,
)

#: Override of the number of ranges the pair list of each trajectory is cut into in the backward (None: heuristic).
TRAJ_SPLIT: int | None = None


@triton.jit
def _seq_tile(TRAJ, PAIR, s, o, p, rows, valid, cols, h, Lt, Lp, HD, Dh):
    """Rows ``rows`` of pair p's sequence [traj[s]; traj[o]; pair[p]], head h, columns ``cols`` → (R, C); 0 where
    ``valid`` is false, the row is past the sequence or the column past Dh. Both tensors are contiguous."""
    in_s = rows < Lt
    in_t = rows < 2 * Lt
    n = tl.where(in_s, s, o)  # (R,) int64
    t = tl.where(in_s, rows, rows - Lt)
    cmask = (cols < Dh)[None, :]
    trow = n * Lt + t  # (R,) row of traj (N·Lt, H·Dh)
    xt = tl.load(TRAJ + (trow * HD + h * Dh)[:, None] + cols[None, :], mask=(valid & in_t)[:, None] & cmask, other=0.0)
    prow = p * Lp + (rows - 2 * Lt)  # (R,) row of pair (P·Lp, H·Dh)
    pmask = (valid & (rows >= 2 * Lt) & (rows < 2 * Lt + Lp))[:, None] & cmask
    xp = tl.load(PAIR + (prow * HD + h * Dh)[:, None] + cols[None, :], mask=pmask, other=0.0)
    return tl.where(in_t[:, None], xt, xp)


@triton.jit
def _pair_fwd_kernel(
    TQ, TK, TV, PQ, PK, PV, SUBJ, OBJ, OUT, LSE,
    Lt, Lp, H, Dh, qk_scale,
    HEAD_DIM_PAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAX_D: tl.constexpr,
):  # fmt: skip
    BLOCK_D: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < MAX_D else MAX_D
    NUM_CHUNKS: tl.constexpr = HEAD_DIM_PAD // BLOCK_D
    L = 2 * Lt + Lp
    HD = H * Dh
    p = tl.program_id(0).to(tl.int64)
    n_mblocks = tl.cdiv(L, BLOCK_M)
    h = tl.program_id(1) // n_mblocks
    mb = tl.program_id(1) % n_mblocks
    chunk = tl.program_id(2)
    s = tl.load(SUBJ + p)
    o = tl.load(OBJ + p)

    rows = mb * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) positions in X_p
    rvalid = rows < L
    d_own = chunk * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,) this program's output columns
    q_own = _seq_tile(TQ, PQ, s, o, p, rows, rvalid, d_own, h, Lt, Lp, HD, Dh)  # (BLOCK_M, BLOCK_D)

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for n0 in range(0, L, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key positions in X_p
        cvalid = cols < L
        k = _seq_tile(TK, PK, s, o, p, cols, cvalid, d_own, h, Lt, Lp, HD, Dh)  # (BLOCK_N, BLOCK_D)
        sc = tl.dot(q_own, tl.trans(k), input_precision=PREC)  # (BLOCK_M, BLOCK_N)
        for j in range(1, NUM_CHUNKS):  # the other head-dim chunks of Q·Kᵀ
            dj = ((chunk + j) % NUM_CHUNKS) * BLOCK_D + tl.arange(0, BLOCK_D)
            qj = _seq_tile(TQ, PQ, s, o, p, rows, rvalid, dj, h, Lt, Lp, HD, Dh)
            kj = _seq_tile(TK, PK, s, o, p, cols, cvalid, dj, h, Lt, Lp, HD, Dh)
            sc += tl.dot(qj, tl.trans(kj), input_precision=PREC)
        sc = tl.where(cvalid[None, :], sc * qk_scale, float("-inf"))  # log2 domain
        m_new = tl.maximum(m_i, tl.max(sc, 1))
        alpha = tl.exp2(m_i - m_new)
        pr = tl.exp2(sc - m_new[:, None])
        l_i = l_i * alpha + tl.sum(pr, 1)
        v = _seq_tile(TV, PV, s, o, p, cols, cvalid, d_own, h, Lt, Lp, HD, Dh)  # (BLOCK_N, BLOCK_D)
        acc = acc * alpha[:, None] + tl.dot(pr.to(v.dtype), v, input_precision=PREC)
        m_i = m_new

    acc = acc / l_i[:, None]
    orow = p * L + rows  # (BLOCK_M,) row of OUT (P·L, H·Dh)
    omask = rvalid[:, None] & (d_own < Dh)[None, :]
    tl.store(OUT + (orow * HD + h * Dh)[:, None] + d_own[None, :], acc.to(OUT.dtype.element_ty), mask=omask)
    if chunk == 0:
        tl.store(LSE + orow * H + h, m_i + tl.log2(l_i), mask=rvalid)


@triton.jit
def _pair_bwd_kernel(
    TQ, TK, TV, PQ, PK, PV, SUBJ, OBJ, DO, LSE, DELTA, ENT, PTR, DQ, DK, DV,
    Lt, Lp, H, Dh, N_OWN, N_SPLIT, qk_scale, scale,
    TRAJ: tl.constexpr, HEAD_DIM_PAD: tl.constexpr, PREC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, MAX_D: tl.constexpr,
):  # fmt: skip
    BLOCK_D: tl.constexpr = HEAD_DIM_PAD if HEAD_DIM_PAD < MAX_D else MAX_D
    NUM_CHUNKS: tl.constexpr = HEAD_DIM_PAD // BLOCK_D
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
    n_rblocks = tl.cdiv(nrows, BLOCK_M)
    h = tl.program_id(1) // n_rblocks
    rb = tl.program_id(1) % n_rblocks
    chunk = tl.program_id(2) % NUM_CHUNKS
    split = tl.program_id(2) // NUM_CHUNKS
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
    own_row = own * nrows + local  # (BLOCK_M,) row of the owner tensor (N·Lt or P·Lp, H·Dh)
    d_own = chunk * BLOCK_D + tl.arange(0, BLOCK_D)
    own_mask = lvalid[:, None] & (d_own < Dh)[None, :]
    own_off = (own_row * HD + h * Dh)[:, None] + d_own[None, :]  # (BLOCK_M, BLOCK_D)
    k_own = tl.load(OK + own_off, mask=own_mask, other=0.0)
    v_own = tl.load(OV + own_off, mask=own_mask, other=0.0)

    # phase 1: dK, dV of the owner rows, over every query row of every pair they appear in
    dk = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for e in range(e_start, e_end):
        if TRAJ:
            ent = tl.load(ENT + e)
            p = ent // 2
        else:
            p = own
        s = tl.load(SUBJ + p)
        o = tl.load(OBJ + p)
        for i0 in range(0, L, BLOCK_N):
            qi = i0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) query positions in X_p
            qvalid = qi < L
            qrow = p * L + qi  # rows of dO / LSE / Δ
            q_c = _seq_tile(TQ, PQ, s, o, p, qi, qvalid, d_own, h, Lt, Lp, HD, Dh)  # (BLOCK_N, BLOCK_D)
            dmask = qvalid[:, None] & (d_own < Dh)[None, :]
            do_c = tl.load(DO + (qrow * HD + h * Dh)[:, None] + d_own[None, :], mask=dmask, other=0.0)
            s_t = tl.dot(k_own, tl.trans(q_c), input_precision=PREC)  # (BLOCK_M, BLOCK_N) = Sᵀ
            dp_t = tl.dot(v_own, tl.trans(do_c), input_precision=PREC)  # (BLOCK_M, BLOCK_N) = (dO Vᵀ)ᵀ
            for j in range(1, NUM_CHUNKS):
                dj = ((chunk + j) % NUM_CHUNKS) * BLOCK_D + tl.arange(0, BLOCK_D)
                jmask = (dj < Dh)[None, :]
                koff = (own_row * HD + h * Dh)[:, None] + dj[None, :]
                k_j = tl.load(OK + koff, mask=lvalid[:, None] & jmask, other=0.0)
                v_j = tl.load(OV + koff, mask=lvalid[:, None] & jmask, other=0.0)
                q_j = _seq_tile(TQ, PQ, s, o, p, qi, qvalid, dj, h, Lt, Lp, HD, Dh)
                do_j = tl.load(
                    DO + (qrow * HD + h * Dh)[:, None] + dj[None, :], mask=qvalid[:, None] & jmask, other=0.0
                )
                s_t += tl.dot(k_j, tl.trans(q_j), input_precision=PREC)
                dp_t += tl.dot(v_j, tl.trans(do_j), input_precision=PREC)
            lse = tl.load(LSE + qrow * H + h, mask=qvalid, other=0.0)
            delta = tl.load(DELTA + qrow * H + h, mask=qvalid, other=0.0)
            p_t = tl.where(qvalid[None, :], tl.exp2(s_t * qk_scale - lse[None, :]), 0.0)
            ds_t = p_t * (dp_t - delta[None, :])
            dv += tl.dot(p_t.to(do_c.dtype), do_c, input_precision=PREC)
            dk += tl.dot(ds_t.to(q_c.dtype), q_c, input_precision=PREC)
    out_off = (((split * N_OWN + own) * nrows + local) * HD + h * Dh)[:, None] + d_own[None, :]
    tl.store(DK + out_off, (dk * scale).to(DK.dtype.element_ty), mask=own_mask)
    tl.store(DV + out_off, dv.to(DV.dtype.element_ty), mask=own_mask)

    # phase 2: dQ of the owner rows, over every key row of every pair they appear in
    q_own = tl.load(OQ + own_off, mask=own_mask, other=0.0)
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
        do_own = tl.load(DO + (orow * HD + h * Dh)[:, None] + d_own[None, :], mask=own_mask, other=0.0)
        lse = tl.load(LSE + orow * H + h, mask=lvalid, other=0.0)
        delta = tl.load(DELTA + orow * H + h, mask=lvalid, other=0.0)
        for j0 in range(0, L, BLOCK_N):
            kj = j0 + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key positions in X_p
            kvalid = kj < L
            k_c = _seq_tile(TK, PK, s, o, p, kj, kvalid, d_own, h, Lt, Lp, HD, Dh)  # (BLOCK_N, BLOCK_D)
            v_c = _seq_tile(TV, PV, s, o, p, kj, kvalid, d_own, h, Lt, Lp, HD, Dh)
            sc = tl.dot(q_own, tl.trans(k_c), input_precision=PREC)  # (BLOCK_M, BLOCK_N)
            dp = tl.dot(do_own, tl.trans(v_c), input_precision=PREC)
            for j in range(1, NUM_CHUNKS):
                dj = ((chunk + j) % NUM_CHUNKS) * BLOCK_D + tl.arange(0, BLOCK_D)
                jmask = lvalid[:, None] & (dj < Dh)[None, :]
                q_j = tl.load(OQ + (own_row * HD + h * Dh)[:, None] + dj[None, :], mask=jmask, other=0.0)
                do_j = tl.load(DO + (orow * HD + h * Dh)[:, None] + dj[None, :], mask=jmask, other=0.0)
                k_j = _seq_tile(TK, PK, s, o, p, kj, kvalid, dj, h, Lt, Lp, HD, Dh)
                v_j = _seq_tile(TV, PV, s, o, p, kj, kvalid, dj, h, Lt, Lp, HD, Dh)
                sc += tl.dot(q_j, tl.trans(k_j), input_precision=PREC)
                dp += tl.dot(do_j, tl.trans(v_j), input_precision=PREC)
            pr = tl.where(kvalid[None, :], tl.exp2(sc * qk_scale - lse[:, None]), 0.0)
            ds = pr * (dp - delta[:, None])
            dq += tl.dot(ds.to(k_c.dtype), k_c, input_precision=PREC)
    tl.store(DQ + out_off, (dq * scale).to(DQ.dtype.element_ty), mask=own_mask)


# ------------------------------------------------------------------------------------------------------------------
# host side
# ------------------------------------------------------------------------------------------------------------------

_KEY = ["Lt", "Lp", "H", "Dh"]


def _chunks(dpad: int, meta) -> int:
    return dpad // min(dpad, meta["MAX_D"])


def _head_dim_pad(dh: int) -> int:
    return max(16, next_pow2(dh))


def pair_attention_forward(tq, tk, tv, pq, pk, pv, subj, obj, scale: float):
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
    dpad = _head_dim_pad(dh)
    kernel = autotuned("pair_fwd", _pair_fwd_kernel, gpu_configs(), interp_config(), _KEY, prune_width)
    grid = lambda meta: (p, h * triton.cdiv(length, meta["BLOCK_M"]), _chunks(dpad, meta))  # noqa: E731
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
    programs = n * h * triton.cdiv(lt, 64) * max(1, dpad // 128)
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


def pair_attention_backward(do, tq, tk, tv, pq, pk, pv, subj, obj, out, lse, scale: float):
    """Gradients (d traj_q, d traj_k, d traj_v, d pair_q, d pair_k, d pair_v), deterministic."""
    n, lt, h, dh = tq.shape
    p, lp = pq.shape[:2]
    length = 2 * lt + lp
    grads_pair = [torch.zeros_like(x) for x in (pq, pk, pv)]
    if p == 0 or length == 0 or h == 0 or dh == 0:
        return [torch.zeros_like(x) for x in (tq, tk, tv)] + grads_pair
    do = do.contiguous()
    delta = row_dot(out, do)  # (P, L, H) float32
    dpad = _head_dim_pad(dh)
    prec = dot_precision(tq.dtype)
    if lp == 0:
        pq_, pk_, pv_ = tq, tk, tv  # never read
    else:
        pq_, pk_, pv_ = pq, pk, pv
    scalars = dict(HEAD_DIM_PAD=dpad, PREC=prec)
    ent, ptr = trajectory_csr(subj, obj, n)

    if lp > 0:
        kernel = autotuned("pair_bwd_pair", _pair_bwd_kernel, gpu_configs(), interp_config(), _KEY, prune_width)
        grid = lambda meta: (p, h * triton.cdiv(lp, meta["BLOCK_M"]), _chunks(dpad, meta))  # noqa: E731
        dpq, dpk, dpv = grads_pair
        kernel[grid](
            tq, tk, tv, pq_, pk_, pv_, subj, obj, do, lse, delta, ent, ptr, dpq, dpk, dpv,
            lt, lp, h, dh, p, 1, scale * LOG2E, scale, TRAJ=False, **scalars,
        )  # fmt: skip

    if lt == 0 or n == 0:
        return [torch.zeros_like(x) for x in (tq, tk, tv)] + grads_pair
    splits = _traj_split(n, h, lt, dpad, p, tq.device)
    bufs = [torch.empty((splits, n, lt, h, dh), device=tq.device, dtype=torch.float32) for _ in range(3)]
    kernel = autotuned("pair_bwd_traj", _pair_bwd_kernel, gpu_configs(), interp_config(), _KEY, prune_width)
    grid = lambda meta: (n, h * triton.cdiv(lt, meta["BLOCK_M"]), _chunks(dpad, meta) * splits)  # noqa: E731
    kernel[grid](
        tq, tk, tv, pq_, pk_, pv_, subj, obj, do, lse, delta, ent, ptr, bufs[0], bufs[1], bufs[2],
        lt, lp, h, dh, n, splits, scale * LOG2E, scale, TRAJ=True, **scalars,
    )  # fmt: skip
    grads_traj = [(b[0] if splits == 1 else b.sum(0)).to(tq.dtype) for b in bufs]  # fixed-order sum over splits
    return grads_traj + grads_pair


class PairSelfAttention(torch.autograd.Function):
    """Autograd wrapper: forward and backward are the Triton kernels above (inputs already validated)."""

    @staticmethod
    def forward(ctx, tq, tk, tv, pq, pk, pv, subj, obj, scale):
        args = [x.contiguous() for x in (tq, tk, tv, pq, pk, pv)]
        subj, obj = subj.contiguous(), obj.contiguous()
        out, lse = pair_attention_forward(*args, subj, obj, scale)
        ctx.save_for_backward(*args, subj, obj, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, do):
        tq, tk, tv, pq, pk, pv, subj, obj, out, lse = ctx.saved_tensors
        grads = pair_attention_backward(do, tq, tk, tv, pq, pk, pv, subj, obj, out, lse, ctx.scale)
        return (*grads, None, None, None)


def pair_self_attention(tq, tk, tv, pq, pk, pv, subj, obj, scale: float) -> torch.Tensor:
    if tq.dtype not in DTYPES:
        raise ValueError(f"pair_self_attention: the Triton path takes {DTYPES}, but got {tq.dtype}")
    return PairSelfAttention.apply(tq, tk, tv, pq, pk, pv, subj, obj, scale)
