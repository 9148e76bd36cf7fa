"""Plumbing shared by the attention kernels: the autotune search space and its pruning, dot precision, device
guards, the Δ pre-pass.

Conventions of every attention kernel here:

* Scores live in the log2 domain: ``s2 = (q · k) · scale · log2(e)``, ``P = exp2(s2 − lse2)`` with
  ``lse2 = max + log2(Σ exp2(s2 − max))``, saved by the forward (float32) and reused by the backward.
* The head dim is padded to ``HEAD_DIM_PAD = max(16, next_pow2(Dh))`` and cut into ``HEAD_DIM_PAD / BLOCK_D`` chunks
  of ``BLOCK_D = min(HEAD_DIM_PAD, MAX_D)`` columns. A program accumulates its output for one chunk (grid axis
  "chunk"); Q·Kᵀ (and dO·Vᵀ) are summed over all chunks, so they are recomputed once per chunk. A config with
  ``MAX_D >= HEAD_DIM_PAD`` is full width: one chunk, no recomputation; a narrower one trades that recomputation
  for a smaller register footprint. The pruning below keeps only configs that compile without register spills
  (``tests/kernels/test_compile.py`` checks this for sm_80 and sm_90a).
* Products run in float32 accumulators. On a GPU, float32 inputs use TF32 dots (the dispatcher sends float32 to the
  reference path unless ``torch.get_float32_matmul_precision()`` allows TF32); the interpreter computes in IEEE.
* Integer arguments that change from batch to batch (pair, trajectory and batch counts) are ``do_not_specialize``:
  a new batch size never recompiles a kernel. Lengths, heads and the head dim are the model's and stay specialised.

This module imports Triton; import it lazily (the dispatchers in ``uasan.ops.attention`` do).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """True when kernels run under the Triton interpreter (checked at call time, never at import time)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def head_dim_pad(dh: int) -> int:
    """The padded head dim of every kernel: a power of two, at least 16 (the smallest ``tl.dot`` width)."""
    return max(16, next_pow2(dh))


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: IEEE for float32 under the interpreter, TF32 for float32 on a GPU (IEEE float32
    dots spill registers in every tile we tried; the dispatcher routes float32 to the reference path when TF32 is not
    allowed); half types take the tensor-core path either way."""
    if dtype == torch.float32 and interpreting():
        return "ieee"
    return "tf32"


def device_guard(t: torch.Tensor):
    """``torch.cuda.device(t.device)`` for CUDA tensors (Triton launches on the current device), else a no-op."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------------------------
# autotune search space
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One autotune config: ``BLOCK_M`` owned rows, ``BLOCK_N`` rows per loop step, ``MAX_D`` the cap of the
    output / gradient columns per program, ``BLOCK_K`` the head-dim slice of the score products."""

    block_m: int
    block_n: int
    max_d: int
    block_k: int
    warps: int
    stages: int

    def config(self) -> triton.Config:
        meta = dict(BLOCK_M=self.block_m, BLOCK_N=self.block_n, MAX_D=self.max_d, BLOCK_K=self.block_k)
        return triton.Config(meta, num_warps=self.warps, num_stages=self.stages)


def _tiles(spec: str) -> tuple[Tile, ...]:
    """``"BMxBN/MAX_D/BLOCK_K/warps/stages ..."`` → tiles (keeps the tables below one line per config)."""
    out = []
    for item in spec.split():
        mn, d, k, w, s = item.split("/")
        m, n = mn.split("x")
        out.append(Tile(int(m), int(n), int(d), int(k), int(w), int(s)))
    return tuple(out)


#: The autotuned kernels, by the names the launchers give them.
TILED_KERNELS = ("pair_fwd", "pair_bwd_pair", "pair_bwd_traj", "sq_fwd", "sq_bwd_kv", "sq_bwd_q")

#: Per kernel and padded head dim (the list of the smallest listed Dh ≥ the padded one; 1024's above 1024), the tiles
#: the autotuner may pick, as ``BMxBN/MAX_D/BLOCK_K/warps/stages``. Each compiles without register spills for sm_80
#: and sm_90a (``tests/kernels/test_compile.py``: bf16 and fp16 at Dh 64 and 512, the model's; bf16 at the others;
#: registers per tile in benchmarks/RESULTS.md), within 99 KiB of shared memory. Full-width tiles (``MAX_D >= Dh``:
#: Q·Kᵀ computed once per query block) come first where one fits. Register use is not monotonic in the head dim
#: (ptxas 13 spills some sm_80 tiles at Dh = 16 that fit at 64), hence one measured list per head dim. No backward
#: kernel of pair self-attention fits full width at Dh = 512 (two float32 accumulators of BLOCK_M × 512 and the
#: operands exceed 255 registers in every tile tried): they run 128- or 256-column chunks.
_TILES: dict[str, dict[int, str]] = {
    "pair_fwd": {
        16: "64x64/128/128/4/2 64x32/128/128/4/2 32x32/128/128/4/2 64x64/128/128/8/2",
        32: "64x64/128/128/4/2 64x32/128/128/4/2 32x32/128/128/4/2 64x64/128/128/8/2",
        64: "64x64/128/128/4/2 64x32/128/128/4/2 32x32/128/128/4/2 64x64/128/128/8/2",
        128: "32x32/512/64/8/2 16x16/512/64/4/1 32x32/128/128/4/2 64x64/128/128/8/2",
        256: "32x32/512/64/8/2 16x16/512/64/4/1 64x64/128/128/8/2",
        512: "32x32/512/64/8/2 16x16/512/64/4/1 32x32/256/64/8/2 64x64/128/128/8/2",
        1024: "32x32/512/64/8/2 16x16/512/64/4/1 32x32/256/64/8/2 64x64/128/128/8/2",
    },
    "pair_bwd_pair": {
        16: "32x64/128/128/4/2 64x32/128/64/8/2 32x32/512/64/8/2",
        32: "32x64/128/128/4/2 32x32/128/128/4/2 64x32/128/64/8/2 32x32/512/64/8/2",
        64: "32x64/128/128/4/2 32x32/128/128/4/2 64x32/128/64/8/2 32x32/512/64/8/2",
        128: "32x32/512/64/8/2 32x32/128/128/4/2 16x32/128/64/8/1 32x16/128/64/8/1",
        256: "16x16/256/64/8/1 32x32/128/64/8/1 16x32/128/64/8/1 32x16/128/64/8/1",
        512: "32x32/128/64/8/1 16x16/256/64/8/1 16x32/128/64/8/1 32x16/128/64/8/1",
        1024: "32x32/128/64/8/1 16x16/256/64/8/1 16x32/128/64/8/1",
    },
    "pair_bwd_traj": {
        16: "32x32/512/64/8/2 32x16/512/64/8/2 64x32/128/64/8/2 16x32/512/64/8/2",
        32: "32x32/128/128/4/2 16x32/128/128/4/2 32x32/512/64/8/2 32x32/128/128/4/1",
        64: "32x32/128/128/4/2 16x32/128/128/4/2 32x32/512/64/8/2 32x32/128/128/4/1",
        128: "32x32/128/128/4/2 16x32/128/128/4/2 32x32/128/128/4/1",
        256: "16x16/256/64/8/1 16x32/128/128/4/2 32x32/128/128/4/1 32x32/128/64/8/2",
        512: "32x32/128/64/8/1 16x16/256/64/8/1 32x32/128/64/8/2 16x32/128/64/8/1",
        1024: "32x32/128/64/8/1 16x16/256/64/8/1 16x32/128/64/8/1",
    },
    "sq_fwd": {
        16: "32x32/128/128/4/2 32x64/128/128/4/2 16x32/128/128/4/2 32x32/512/64/8/2",
        32: "32x32/128/128/4/2 32x64/128/128/4/2 16x32/128/128/4/2 32x32/512/64/8/2",
        64: "32x32/128/128/4/2 32x64/128/128/4/2 16x32/128/128/4/2 32x32/512/64/8/2",
        128: "32x32/512/64/8/2 16x16/512/64/4/1 32x32/128/128/4/2 32x64/128/128/4/2",
        256: "32x32/512/64/8/2 16x16/512/64/4/1 32x32/128/128/4/2 16x32/128/128/4/2",
        512: "32x32/512/64/8/2 16x16/512/64/4/1 32x32/256/64/8/2 32x32/128/128/4/2",
        1024: "32x32/512/64/8/2 16x16/512/64/4/1 32x32/256/64/8/2",
    },
    "sq_bwd_kv": {
        16: "32x32/128/128/4/2 16x32/128/128/4/2 64x32/128/128/4/2 32x32/512/64/8/2",
        32: "32x32/128/128/4/2 16x32/128/128/4/2 64x32/128/128/4/2 32x32/512/64/8/2",
        64: "32x32/128/128/4/2 16x32/128/128/4/2 64x32/128/128/4/2 32x32/512/64/8/2",
        128: "32x32/512/64/8/2 16x32/512/64/8/2 32x32/128/128/4/2 64x32/128/64/8/2",
        256: "32x32/512/64/8/2 16x32/512/64/8/2 32x32/128/64/8/1 64x32/128/64/8/2",
        512: "16x32/512/64/8/2 32x32/256/64/8/2 32x32/128/64/8/1 64x32/128/64/8/2",
        1024: "16x32/512/64/8/2 32x32/256/64/8/2 32x32/128/64/8/1 64x32/128/64/8/2",
    },
    "sq_bwd_q": {
        16: "32x32/128/128/4/2 16x32/128/128/4/2 32x64/128/128/4/2 32x32/512/64/8/2",
        32: "32x32/128/128/4/2 16x32/128/128/4/2 32x32/512/64/8/2",
        64: "32x32/128/128/4/2 16x32/128/128/4/2 32x64/128/128/4/2 32x32/512/64/8/2",
        128: "32x32/512/64/8/2 16x32/512/64/8/2 16x32/128/128/4/2",
        256: "32x32/512/64/8/2 16x32/512/64/8/2 16x16/512/64/4/1 32x32/128/128/4/2",
        512: "16x32/512/64/8/2 16x16/512/64/4/1 32x32/256/64/8/1 32x32/128/64/8/1",
        1024: "16x32/512/64/8/2 16x16/512/64/4/1 32x32/256/64/8/1 32x32/128/64/8/1",
    },
}
_CLASSES = (16, 32, 64, 128, 256, 512, 1024)

#: Every tile of every kernel: the autotuner's config list (``allowed_tiles`` prunes it per launch).
SEARCH_SPACE: dict[str, tuple[Tile, ...]] = {
    k: tuple(dict.fromkeys(t for spec in by_dim.values() for t in _tiles(spec))) for k, by_dim in _TILES.items()
}

#: Small tiles; at Dh = 512 four output chunks of 128 columns and scores in eight slices of 64 (both paths tested).
INTERP_TILE = Tile(16, 16, 128, 64, 4, 1)


def arch_of(t: torch.Tensor) -> int:
    """The compute capability of ``t``'s device as an int (80, 90, …); 0 for CPU tensors."""
    if t.device.type != "cuda":
        return 0
    major, minor = torch.cuda.get_device_capability(t.device)
    return 10 * major + minor


def allowed_tiles(kernel: str, dpad: int, itemsize: int, arch: int) -> list[Tile]:
    """The tiles the autotuner may pick for ``kernel`` at padded head dim ``dpad``, inputs of ``itemsize`` bytes, on a
    GPU of compute capability ``arch``: ``_TILES`` of the smallest listed head dim ≥ ``dpad`` (the 1024 list above
    1024, unchecked there). The lists hold for sm_80 and sm_90a alike (both are checked) and are used as they are on
    other GPUs.
    Float32 (itemsize 4) gets none: float32 CUDA tensors take the reference path (IEEE dots spill; see
    ``dot_precision``)."""
    if itemsize != 2:
        return []
    cls = next((c for c in _CLASSES if dpad <= c), _CLASSES[-1])
    return list(_tiles(_TILES[kernel][cls]))


#: Kernel name → the tile it launches with in place of the autotuner's choice (tests and the GPU report's per-tile
#: check fill it; empty: autotune).
FORCE_TILES: dict[str, Tile] = {}

_TUNED: dict[tuple, object] = {}


def tile_pruner(kernel: str, first_arg: str, arch: int, first_only: bool = False):
    """The ``early_config_prune`` of ``kernel``: keeps the configs of ``allowed_tiles`` for the launch's
    ``HEAD_DIM_PAD`` and the dtype of its argument ``first_arg`` (only the first with ``first_only``)."""

    def prune(configs, named_args, **kwargs):
        dpad = kwargs.get("HEAD_DIM_PAD", named_args.get("HEAD_DIM_PAD"))
        itemsize = named_args[first_arg].element_size()
        tiles = allowed_tiles(kernel, dpad, itemsize, arch)[: 1 if first_only else None]
        keep = {repr(t.config().all_kwargs()) for t in tiles}
        kept = [c for c in configs if repr(c.all_kwargs()) in keep]
        if not kept:  # float32 never gets here: the dispatcher sends float32 CUDA tensors to the reference
            raise ValueError(f"{kernel}: no tile for {itemsize}-byte inputs at padded head dim {dpad}")
        return kept

    return prune


def autotuned(kernel: str, fn, key: list[str], ref: torch.Tensor):
    """``fn`` (a ``triton.jit`` kernel) wrapped in ``triton.autotune``: ``FORCE_TILES[kernel]`` if set, else the one
    interpreter tile under the interpreter, else every tile of ``ref``'s GPU family, pruned at launch to
    ``allowed_tiles`` for the head dim and dtype (``UASAN_AUTOTUNE=0``: the first of them, no tuning — the tests set
    it, since tuning every tiny test shape compiles every tile). Built on first use, so nothing here runs at import
    time."""
    interp = interpreting()
    arch = 0 if interp else arch_of(ref)
    forced = FORCE_TILES.get(kernel)
    first_only = os.environ.get("UASAN_AUTOTUNE") == "0"
    cache_key = (kernel, interp, arch, forced, first_only)
    if cache_key not in _TUNED:
        if forced is not None or interp:
            tile = forced or INTERP_TILE
            tuned = triton.autotune(configs=[tile.config()], key=key)(fn)
        else:
            prune = tile_pruner(kernel, fn.arg_names[0], arch, first_only)
            configs = [t.config() for t in SEARCH_SPACE[kernel]]
            tuned = triton.autotune(configs=configs, key=key, prune_configs_by={"early_config_prune": prune})(fn)
        _TUNED[cache_key] = tuned
    return _TUNED[cache_key]


# ------------------------------------------------------------------------------------------------------------------
# tile helpers of the attention kernels
# ------------------------------------------------------------------------------------------------------------------


@triton.jit
def load_rows(ptr, rmask, cols, Dh):
    """(R, C) tile of the rows starting at ``ptr`` (R,), columns ``cols``; 0 where a row or column is out of range."""
    return tl.load(ptr[:, None] + cols[None, :], mask=rmask[:, None] & (cols < Dh)[None, :], other=0.0)


@triton.jit
def scores(acc, a_ptr, a_mask, b_ptr, b_mask, Dh, SLICE: tl.constexpr, NUM_K: tl.constexpr, PREC: tl.constexpr):
    """acc + A Bᵀ summed over the head dim in slices of SLICE columns, each loaded when used (nothing of the full
    width is held in registers): A rows start at ``a_ptr`` (R,), B rows at ``b_ptr`` (C,) → (R, C)."""
    for kk in range(NUM_K):
        cols = kk * SLICE + tl.arange(0, SLICE)
        a = load_rows(a_ptr, a_mask, cols, Dh)
        acc += tl.dot(a, tl.trans(load_rows(b_ptr, b_mask, cols, Dh)), input_precision=PREC)
    return acc


# ------------------------------------------------------------------------------------------------------------------
# loop steps shared by the kernels. A program owns BLOCK_M rows (queries in the forward and in dQ, keys in dK / dV)
# and loops over tiles of BLOCK_N rows of the other side. The owner rows' operand of a score product is their
# (BLOCK_M, SLICE) tile, kept in registers across the loop, when the head dim is one slice (NUM_K == 1); else their
# row pointers, whose slices ``scores`` loads where used (``owner_rows`` gives either). The kernels compute every
# pointer where the step uses it (not earlier): a (BLOCK_N,) tensor of 64-bit pointers kept live across the dots
# costs registers that the tiles near the limit do not have (``tests/kernels/test_compile.py``).
# ------------------------------------------------------------------------------------------------------------------


@triton.jit
def head_and_block(n_rows, BLOCK_M: tl.constexpr):
    """(head, row block) of this program: grid axis 1 runs over H · ⌈n_rows / BLOCK_M⌉."""
    n_blocks = tl.cdiv(n_rows, BLOCK_M)
    return tl.program_id(1) // n_blocks, tl.program_id(1) % n_blocks


@triton.jit
def owner_rows(ptr, rmask, Dh, SLICE: tl.constexpr, NUM_K: tl.constexpr):
    """The owner rows' operand (see above): their tile when NUM_K == 1, else the row pointers ``ptr`` (R,)."""
    if NUM_K == 1:
        own = load_rows(ptr, rmask, tl.arange(0, SLICE), Dh)  # (R, HEAD_DIM_PAD)
    else:
        own = ptr
    return own


@triton.jit
def qk_tile(q_own, rvalid, k_ptr, cvalid, Dh, SLICE: tl.constexpr, NUM_K: tl.constexpr, PREC: tl.constexpr):
    """Q Kᵀ (BLOCK_M, BLOCK_N) of the owner query rows ``q_own`` against the key rows at ``k_ptr`` (BLOCK_N,)."""
    if NUM_K == 1:
        sc = tl.dot(q_own, tl.trans(load_rows(k_ptr, cvalid, tl.arange(0, SLICE), Dh)), input_precision=PREC)
    else:
        zero = tl.zeros((rvalid.shape[0], cvalid.shape[0]), tl.float32)
        sc = scores(zero, q_own, rvalid, k_ptr, cvalid, Dh, SLICE, NUM_K, PREC)
    return sc


@triton.jit
def softmax_update(sc, cvalid, m_i, l_i, qk_scale):
    """The forward's online softmax over one key tile of scores ``sc`` (BLOCK_M, BLOCK_N): → (P, α, m, l) with
    P = exp2(S · scale − m) (log2 domain; 0 where a key is out of range), the new running max m and sum l (BLOCK_M,),
    and α = exp2(m_old − m), the factor that rescales what was accumulated before. The caller then takes
    acc = α · acc + P V."""
    sc = tl.where(cvalid[None, :], sc * qk_scale, float("-inf"))  # (BLOCK_M, BLOCK_N), log2 domain
    m_new = tl.maximum(m_i, tl.max(sc, 1))
    alpha = tl.exp2(m_i - m_new)
    pr = tl.exp2(sc - m_new[:, None])
    l_i = l_i * alpha + tl.sum(pr, 1)
    return pr, alpha, m_new, l_i


@triton.jit
def store_forward(OUT, LSE, out, m_i, l_i, orow, rvalid, d_own, Dh, HD, hoff, H, h, chunk):
    """The output ``out`` (BLOCK_M, BLOCK_D) = acc / l into rows ``orow`` (BLOCK_M,) of OUT (·, HD = H·Dh), columns
    ``d_own`` of head ``h`` (at column ``hoff``); the chunk-0 program also saves the rows' log-sum-exp (log2 domain)
    for the backward."""
    omask = rvalid[:, None] & (d_own < Dh)[None, :]
    tl.store(OUT + (orow * HD + hoff)[:, None] + d_own[None, :], out.to(OUT.dtype.element_ty), mask=omask)
    if chunk == 0:
        tl.store(LSE + orow * H + h, m_i + tl.log2(l_i), mask=rvalid)


@triton.jit
def dkdv_step(
    dk, dv, k_own, v_own, lvalid, q_ptr, do_ptr, qvalid, LSE, DELTA, qrow, H, h, d_own, Dh, qk_scale,
    SLICE: tl.constexpr, NUM_K: tl.constexpr, NUM_CHUNKS: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One tile of query rows (``q_ptr``, ``do_ptr`` (BLOCK_N,), valid where ``qvalid``; rows ``qrow`` of the saved
    log-sum-exp and Δ, LSE and DELTA (·, H)) in the dK, dV loop of the owner key rows ``k_own``, ``v_own``:

        Sᵀ = K Qᵀ,  Pᵀ = exp2(Sᵀ · scale − lse),  dSᵀ = Pᵀ ∘ (V dOᵀ − Δ),  dV += Pᵀ dO,  dK += dSᵀ Q

    over the columns ``d_own`` (dK without its factor ``scale``). → (dk, dv)."""
    d_all = tl.arange(0, SLICE)
    if NUM_K == 1:
        q_s = load_rows(q_ptr, qvalid, d_all, Dh)  # (BLOCK_N, HEAD_DIM_PAD)
        do_s = load_rows(do_ptr, qvalid, d_all, Dh)
        s_t = tl.dot(k_own, tl.trans(q_s), input_precision=PREC)  # (BLOCK_M, BLOCK_N) = Sᵀ
        dp_t = tl.dot(v_own, tl.trans(do_s), input_precision=PREC)  # (BLOCK_M, BLOCK_N) = (dO Vᵀ)ᵀ
    else:
        zero = tl.zeros((lvalid.shape[0], qvalid.shape[0]), tl.float32)
        s_t = scores(zero, k_own, lvalid, q_ptr, qvalid, Dh, SLICE, NUM_K, PREC)
        dp_t = scores(zero, v_own, lvalid, do_ptr, qvalid, Dh, SLICE, NUM_K, PREC)
    if NUM_K == 1 and NUM_CHUNKS == 1:
        q_c = q_s
        do_c = do_s
    else:
        q_c = load_rows(q_ptr, qvalid, d_own, Dh)  # (BLOCK_N, BLOCK_D)
        do_c = load_rows(do_ptr, qvalid, d_own, Dh)
    lse = tl.load(LSE + qrow * H + h, mask=qvalid, other=0.0)
    delta = tl.load(DELTA + qrow * H + h, mask=qvalid, other=0.0)
    p_t = tl.where(qvalid[None, :], tl.exp2(s_t * qk_scale - lse[None, :]), 0.0)
    ds_t = p_t * (dp_t - delta[None, :])
    dv += tl.dot(p_t.to(do_c.dtype), do_c, input_precision=PREC)
    dk += tl.dot(ds_t.to(q_c.dtype), q_c, input_precision=PREC)
    return dk, dv


@triton.jit
def dq_step(
    dq, q_own, do_own, rvalid, lse, delta, k_ptr, v_ptr, kvalid, d_own, Dh, qk_scale,
    SLICE: tl.constexpr, NUM_K: tl.constexpr, NUM_CHUNKS: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One tile of key rows (``k_ptr``, ``v_ptr`` (BLOCK_N,), valid where ``kvalid``) in the dQ loop of the owner
    query rows ``q_own``, ``do_own`` with their log-sum-exp ``lse`` and Δ ``delta`` (BLOCK_M,):

        S = Q Kᵀ,  P = exp2(S · scale − lse),  dS = P ∘ (dO Vᵀ − Δ),  dQ += dS K

    over the columns ``d_own`` (without the factor ``scale``). → dq."""
    d_all = tl.arange(0, SLICE)
    if NUM_K == 1:
        k_s = load_rows(k_ptr, kvalid, d_all, Dh)  # (BLOCK_N, HEAD_DIM_PAD)
        sc = tl.dot(q_own, tl.trans(k_s), input_precision=PREC)  # (BLOCK_M, BLOCK_N)
        dp = tl.dot(do_own, tl.trans(load_rows(v_ptr, kvalid, d_all, Dh)), input_precision=PREC)
    else:
        zero = tl.zeros((rvalid.shape[0], kvalid.shape[0]), tl.float32)
        sc = scores(zero, q_own, rvalid, k_ptr, kvalid, Dh, SLICE, NUM_K, PREC)
        dp = scores(zero, do_own, rvalid, v_ptr, kvalid, Dh, SLICE, NUM_K, PREC)
    if NUM_K == 1 and NUM_CHUNKS == 1:
        k_c = k_s
    else:
        k_c = load_rows(k_ptr, kvalid, d_own, Dh)  # (BLOCK_N, BLOCK_D)
    pr = tl.where(kvalid[None, :], tl.exp2(sc * qk_scale - lse[:, None]), 0.0)
    ds = pr * (dp - delta[:, None])
    dq += tl.dot(ds.to(k_c.dtype), k_c, input_precision=PREC)
    return dq


def head_dim_chunks(dpad: int, meta) -> int:
    """Grid axis 2 of every tiled kernel: the head-dim chunks of ``min(dpad, MAX_D)`` columns."""
    return dpad // min(dpad, meta["MAX_D"])


# ------------------------------------------------------------------------------------------------------------------
# Δ pre-pass of every backward: delta[r] = Σ_d dO[r, d] · O[r, d]  (rows r of a contiguous (R, Dh) view)
# ------------------------------------------------------------------------------------------------------------------

ROW_DOT_BLOCK_R = 32


@triton.jit(do_not_specialize=["R"])
def _row_dot_kernel(A, B, OUT, R, Dh, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)  # (BLOCK_R,)
    rmask = rows < R
    acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
    for d0 in range(0, Dh, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        m = rmask[:, None] & (cols < Dh)[None, :]
        off = rows[:, None] * Dh + cols[None, :]
        a = tl.load(A + off, mask=m, other=0.0).to(tl.float32)
        b = tl.load(B + off, mask=m, other=0.0).to(tl.float32)
        acc += tl.sum(a * b, axis=1)
    tl.store(OUT + rows, acc, mask=rmask)


def row_dot_block_d(dh: int) -> int:
    return min(next_pow2(dh), 128)


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Δ = Σ_d a·b over the last dim, float32, shape ``a.shape[:-1]``; ``a``, ``b`` contiguous, same shape."""
    dh = a.shape[-1]
    out = torch.empty(a.shape[:-1], device=a.device, dtype=torch.float32)
    rows = out.numel()
    if rows == 0:
        return out
    grid = (triton.cdiv(rows, ROW_DOT_BLOCK_R),)
    _row_dot_kernel[grid](a, b, out, rows, dh, BLOCK_R=ROW_DOT_BLOCK_R, BLOCK_D=row_dot_block_d(dh))
    return out
