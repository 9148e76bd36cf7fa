"""Plumbing shared by the attention kernels: autotune wrapping at call time, dot precision, the Δ pre-pass.

Conventions of every attention kernel here:

* Scores live in the log2 domain: ``s2 = (q · k) · scale · log2(e)``, ``P = exp2(s2 − lse2)`` with
  ``lse2 = max + log2(Σ exp2(s2 − max))``, saved by the forward (float32) and reused by the backward.
* The head dim is tiled: tiles of ``BLOCK_D = min(next_pow2(Dh), MAX_D)`` columns. Q·Kᵀ (and dO·Vᵀ) are summed over
  all tiles; each program accumulates its output for one tile of columns (grid axis "chunk"), so an accumulator is
  never wider than ``MAX_D`` and Dh = 512 runs on the same code as Dh = 64 (Q·Kᵀ is recomputed per chunk).
* Products run in fp32 accumulators; float32 inputs use IEEE dots unless ``torch.backends.cuda.matmul.allow_tf32``.

This module imports Triton; import it lazily (the dispatchers in ``uasan.ops.attention`` do).
"""

from __future__ import annotations

import math
import os

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


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: IEEE for float32 (as torch does by default), TF32 when torch allows it."""
    if dtype == torch.float32 and not (torch.cuda.is_available() and torch.backends.cuda.matmul.allow_tf32):
        return "ieee"
    return "tf32"


_TUNED: dict[tuple[str, bool], object] = {}


def autotuned(name: str, fn, gpu_configs, interp_config, key, prune=None):
    """``fn`` (a ``triton.jit`` kernel) wrapped in ``triton.autotune``: one config under the interpreter, the GPU
    list otherwise. Built on first use per mode, so the interpreter check happens at call time."""
    interp = interpreting()
    cache_key = (name, interp)
    if cache_key not in _TUNED:
        if interp:
            kernel = triton.autotune(configs=[interp_config], key=key)(fn)
        else:
            kw = {"early_config_prune": prune} if prune is not None else None
            kernel = triton.autotune(configs=gpu_configs, key=key, prune_configs_by=kw)(fn)
        _TUNED[cache_key] = kernel
    return _TUNED[cache_key]


def config(num_warps: int = 4, num_stages: int = 2, **meta) -> triton.Config:
    return triton.Config(meta, num_warps=num_warps, num_stages=num_stages)


def gpu_configs() -> list[triton.Config]:
    """The GPU search space of the attention kernels: row / loop tiles, head-dim chunk cap, warps."""
    out = []
    for max_d in (128, 256):
        for bm, bn in ((32, 32), (64, 32), (32, 64), (64, 64)):
            for warps in (4, 8):
                out.append(config(warps, 2, BLOCK_M=bm, BLOCK_N=bn, MAX_D=max_d))
    return out


def interp_config() -> triton.Config:
    """The one interpreter config: small tiles; a 128-column chunk cap so Dh = 512 exercises the chunked path."""
    return config(4, 1, BLOCK_M=16, BLOCK_N=16, MAX_D=128)


def prune_width(configs, named_args, **kwargs):
    """Drops GPU configs whose tiles (rows × head-dim chunk) would spill registers, and duplicate chunk caps."""
    dpad = kwargs.get("HEAD_DIM_PAD", named_args.get("HEAD_DIM_PAD"))
    kept = []
    for c in configs:
        width = min(dpad, c.kwargs["MAX_D"])
        if dpad <= 128 and c.kwargs["MAX_D"] != 128:
            continue  # one chunk either way
        if max(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) * width <= 64 * 128:
            kept.append(c)
    return kept or configs[:1]


# ------------------------------------------------------------------------------------------------------------------
# Δ pre-pass of every backward: delta[r] = Σ_d dO[r, d] · O[r, d]  (rows r of a contiguous (R, Dh) view)
# ------------------------------------------------------------------------------------------------------------------


@triton.jit
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


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Δ = Σ_d a·b over the last dim, float32, shape ``a.shape[:-1]``; ``a``, ``b`` contiguous, same shape."""
    dh = a.shape[-1]
    out = torch.empty(a.shape[:-1], device=a.device, dtype=torch.float32)
    rows = out.numel()
    if rows == 0:
        return out
    block_r = 64 if interpreting() else 32
    block_d = min(next_pow2(dh), 128)
    _row_dot_kernel[(triton.cdiv(rows, block_r),)](a, b, out, rows, dh, BLOCK_R=block_r, BLOCK_D=block_d)
    return out
