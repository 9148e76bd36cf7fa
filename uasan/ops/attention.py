"""Attention ops of the relation model (DESIGN §6): PyTorch references beside fused Triton paths.

Shapes: N trajectories, P pairs, Lt tokens per trajectory, Lp tokens per pair (union + motion, may be 0), H heads,
Dh head dim, B batch rows, S key tokens, L query tokens, T encoded tokens per pair. Every op computes, per head,

    Attn(Q, K, V) = softmax(Q Kᵀ · scale) V,   scale = Dh^-1/2 by default,

and takes ``impl``: ``"auto"`` (Triton for CUDA bfloat16 / float16 tensors, the reference elsewhere), ``"triton"``
(the fused path: CUDA bfloat16 / float16 tensors, or CPU float32 / float16 tensors under the Triton interpreter,
``TRITON_INTERPRET=1``, whose bfloat16 dots are wrong; anything else is a ``ValueError``) or ``"torch"`` (the
reference). Every path is differentiable. The references compute in float32 (float64 for float64 inputs) and return
the input dtype; the Triton paths accumulate in float32. Float32 CUDA tensors take the reference, which follows
``torch.get_float32_matmul_precision()`` through its matmuls: the kernels' IEEE float32 dots spill registers, and
their TF32 dots would ignore that setting. The Triton kernel modules (``uasan.kernels.pair_self_attention``,
``uasan.kernels.shared_query_attention``) are imported on first use only.

Index checks: ``subj`` / ``obj`` out of range are a ``ValueError`` for CPU tensors and, with ``UASAN_CHECK_INDICES=1``,
for CUDA tensors too (that check reads two numbers back to the host, a sync per call); without it CUDA tensors get
a device-side assertion (``torch._assert_async``: no sync, but the failure surfaces as a CUDA error later).

* ``pair_self_attention``: SACEncoder. The sequence of pair p is X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]]
  (2·Lt + Lp tokens) and O_p = Attn(Q_p, K_p, V_p). The reference materialises X_p by gather; the kernel reads the
  trajectory rows through ``subj`` / ``obj`` and never builds anything of size P × 2·Lt (forward or backward).
* ``shared_query_attention``: VisualRefiner. O_b = Attn(Q, K_b, V_b) with one Q (L, H, Dh) for every row b; the
  kernel broadcasts Q (no expanded copy) and reduces dQ over the batch deterministically.
* ``pair_cross_attention``: URADecoder. One query per pair over its T tokens, o_p = Attn(q_p, K_p, V_p). Its
  ``"triton"`` path is ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on
  CUDA), not a kernel of this package.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
from typing import Any

import torch

__all__ = [
    "pair_cross_attention",
    "pair_cross_attention_ref",
    "pair_self_attention",
    "pair_self_attention_ref",
    "shared_query_attention",
    "shared_query_attention_ref",
]

_IMPLS = ("auto", "triton", "torch")
_FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
_INTERPRETER_FLOATS = (torch.float32, torch.float16)  # its tl.dot computes garbage for bfloat16
_CUDA_TRITON_FLOATS = (torch.float16, torch.bfloat16)
_SDPA_MAX_BATCH = 65_535  # CUDA grid y/z limit; larger pair counts are cut into slices


# ------------------------------------------------------------------------------------------------------------------
# checks shared by the three ops
# ------------------------------------------------------------------------------------------------------------------


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ("," if t.dim() == 1 else "") + ")"


def _float_tensor(op: str, name: str, x: Any, rank: int, expected: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{op}: expected {name} to be a torch.Tensor of shape {expected}, but got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{op}: expected {name} of shape {expected}, but got {_shape(x)}")
    if x.dtype not in _FLOATS:
        raise ValueError(f"{op}: expected {name} to be float64/32/16 or bfloat16, but got {x.dtype}")
    return x


def _same(op: str, name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor, dims: dict[int, str]) -> None:
    """``x`` matches ``ref`` in dtype, device and the listed dims (index → letter)."""
    for i, letter in dims.items():
        if x.shape[i] != ref.shape[i]:
            raise ValueError(
                f"{op}: expected {name} to have {letter} = {ref.shape[i]} like {ref_name} {_shape(ref)}, "
                f"but got shape {_shape(x)}"
            )
    if x.dtype != ref.dtype:
        raise ValueError(f"{op}: expected {name} of dtype {ref.dtype} like {ref_name}, but got {x.dtype}")
    if x.device != ref.device:
        raise ValueError(f"{op}: expected {name} on {ref.device} like {ref_name}, but got {x.device}")


def _check_keys_values(op: str, q: torch.Tensor, k: Any, v: Any, dims: tuple[str, ...], like_q: dict[int, int]) -> None:
    """k and v of shape ``dims`` (four letters), each dim ``i`` of ``like_q`` equal to dim ``like_q[i]`` of q, with q's
    dtype and device, and v's first two dims equal to k's."""
    expected = "(" + ", ".join(dims) + ")"
    want = "(" + ", ".join(f"{d} = {q.shape[like_q[i]]}" if i in like_q else d for i, d in enumerate(dims)) + ")"
    for name, x in (("k", k), ("v", v)):
        x = _float_tensor(op, name, x, 4, expected)
        if any(x.shape[i] != q.shape[j] for i, j in like_q.items()):
            raise ValueError(f"{op}: expected {name} of shape {want} like q {_shape(q)}, but got {_shape(x)}")
        if x.dtype != q.dtype or x.device != q.device:
            raise ValueError(
                f"{op}: expected {name} of dtype {q.dtype} on {q.device} like q, but got {x.dtype} on {x.device}"
            )
    if v.shape[:2] != k.shape[:2]:
        raise ValueError(f"{op}: expected v of shape {expected} = {_shape(k)} like k, but got {_shape(v)}")


def _scale(op: str, scale: Any, dh: int) -> float:
    if scale is None:
        if dh == 0:
            raise ValueError(f"{op}: expected a head dim Dh >= 1 (or an explicit scale), but got Dh = 0")
        return dh**-0.5
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(float(scale)):
        raise ValueError(f"{op}: expected scale to be None or a finite real number, but got {scale!r}")
    return float(scale)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _check_indices_on_host() -> bool:
    return os.environ.get("UASAN_CHECK_INDICES") == "1"


def _resolve_sdpa(op: str, impl: Any, device: torch.device, dtype: torch.dtype) -> str:
    """``_resolve`` for an op whose ``"triton"`` path is PyTorch's SDPA (any device; float32 / float16 / bfloat16)."""
    if not isinstance(impl, str) or impl not in _IMPLS:
        raise ValueError(f"{op}: expected impl to be one of {_IMPLS}, but got {impl!r}")
    if impl == "auto":
        return "triton" if device.type == "cuda" and dtype != torch.float64 else "torch"
    if impl == "triton" and dtype == torch.float64:
        raise ValueError(f"{op}: impl='triton' (SDPA) takes float32, float16 or bfloat16 tensors, but got {dtype}")
    return impl


def _resolve(op: str, impl: Any, device: torch.device, dtype: torch.dtype) -> str:
    """The path an ``impl`` takes for tensors on ``device`` of ``dtype``: ``"triton"`` or ``"torch"``."""
    if not isinstance(impl, str) or impl not in _IMPLS:
        raise ValueError(f"{op}: expected impl to be one of {_IMPLS}, but got {impl!r}")
    if impl == "auto":
        cuda_half = device.type == "cuda" and dtype in _CUDA_TRITON_FLOATS
        return "triton" if cuda_half and importlib.util.find_spec("triton") is not None else "torch"
    if impl == "torch":
        return impl
    if dtype == torch.float64:
        raise ValueError(f"{op}: impl='triton' takes bfloat16 / float16 (CUDA) or float32 / float16 (interpreter) "
                         f"tensors, but got {dtype}")  # fmt: skip
    if importlib.util.find_spec("triton") is None:
        raise ValueError(f"{op}: impl='triton' needs the triton package; use impl='torch' (or 'auto')")
    if device.type == "cuda":
        if dtype not in _CUDA_TRITON_FLOATS:
            raise ValueError(
                f"{op}: impl='triton' takes bfloat16 or float16 CUDA tensors, but got {dtype} (float32 runs on the "
                "reference, impl='torch' or 'auto', which honours torch.get_float32_matmul_precision())"
            )
        return impl
    if device.type != "cpu" or not _interpreting():
        raise ValueError(
            f"{op}: impl='triton' on {device.type} tensors needs the Triton interpreter (TRITON_INTERPRET=1, set "
            "before the first kernel import); use CUDA tensors, or impl='torch' / 'auto'"
        )
    if dtype not in _INTERPRETER_FLOATS:
        raise ValueError(
            f"{op}: impl='triton' under the Triton interpreter takes float32 or float16 tensors, but got {dtype} "
            "(the interpreter's bfloat16 dots are wrong)"
        )
    return impl


def _math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v over (..., Lq, D), (..., Lk, D), (..., Lk, D); an empty key set gives 0."""
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v


# ------------------------------------------------------------------------------------------------------------------
# pair self-attention (SACEncoder)
# ------------------------------------------------------------------------------------------------------------------

_PAIR = "pair_self_attention"


def _check_pair(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj, obj, scale, impl):
    tq = _float_tensor(_PAIR, "traj_q", traj_q, 4, "(N, Lt, H, Dh)")
    for name, x in (("traj_k", traj_k), ("traj_v", traj_v)):
        _same(_PAIR, name, _float_tensor(_PAIR, name, x, 4, "(N, Lt, H, Dh)"), "traj_q", tq, dict(enumerate("NLHD")))
    pq = _float_tensor(_PAIR, "pair_q", pair_q, 4, "(P, Lp, H, Dh)")
    _same(_PAIR, "pair_q", pq, "traj_q", tq, {2: "H", 3: "Dh"})
    for name, x in (("pair_k", pair_k), ("pair_v", pair_v)):
        _same(_PAIR, name, _float_tensor(_PAIR, name, x, 4, "(P, Lp, H, Dh)"), "pair_q", pq, dict(enumerate("PLHD")))
    n, p = tq.shape[0], pq.shape[0]
    idx = []
    for name, x in (("subj", subj), ("obj", obj)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{_PAIR}: expected {name} to be a torch.Tensor of shape ({p},), got {type(x).__name__}")
        if x.dim() != 1 or x.shape[0] != p:
            raise ValueError(f"{_PAIR}: expected {name} of shape ({p},) (P from pair_q), but got {_shape(x)}")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"{_PAIR}: expected {name} to hold integer indices (int64), but got {x.dtype}")
        if x.device != tq.device:
            raise ValueError(f"{_PAIR}: expected {name} on {tq.device} like traj_q, but got {x.device}")
        idx.append(x.to(torch.int64))
    if p and (tq.device.type == "cpu" or _check_indices_on_host()):  # one host read for both range checks
        bounds = torch.stack([t for x in idx for t in torch.aminmax(x)]).tolist()
        for name, lo, hi in (("subj", *bounds[:2]), ("obj", *bounds[2:])):
            if lo < 0 or hi >= n:
                raise ValueError(f"{_PAIR}: expected {name} indices in [0, N = {n}), but got {lo if lo < 0 else hi}")
    elif p:  # no host sync on the training path: a device-side assertion
        ok = torch.stack([((x >= 0) & (x < n)).all() for x in idx]).all()
        torch._assert_async(ok, f"{_PAIR}: subj / obj indices out of range [0, N = {n})")
    return _scale(_PAIR, scale, tq.shape[3]), _resolve(_PAIR, impl, tq.device, tq.dtype), idx[0], idx[1]


def pair_self_attention_ref(
    traj_q: torch.Tensor,
    traj_k: torch.Tensor,
    traj_v: torch.Tensor,
    pair_q: torch.Tensor,
    pair_k: torch.Tensor,
    pair_v: torch.Tensor,
    subj: torch.Tensor,
    obj: torch.Tensor,
    *,
    scale: float | None = None,
    impl: str = "torch",
) -> torch.Tensor:
    """Reference: X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]] materialised by gather, O_p = softmax(Q_p K_pᵀ · scale)
    V_p per head, in float32 (float64 for float64 inputs). Returns (P, 2·Lt + Lp, H, Dh) in the input dtype.
    ``impl`` is accepted for a uniform signature and ignored."""
    scale, _, subj, obj = _check_pair(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj, obj, scale, "torch")
    dtype = traj_q.dtype
    math_dtype = _math_dtype(dtype)

    def seq(traj: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        x = torch.cat([traj[subj], traj[obj], pair], dim=1)  # (P, 2Lt+Lp, H, Dh)
        return x.to(math_dtype).transpose(1, 2)  # (P, H, 2Lt+Lp, Dh)

    q, k, v = seq(traj_q, pair_q), seq(traj_k, pair_k), seq(traj_v, pair_v)
    return _attend(q, k, v, scale).transpose(1, 2).to(dtype)  # (P, 2Lt+Lp, H, Dh)


def pair_self_attention(
    traj_q: torch.Tensor,
    traj_k: torch.Tensor,
    traj_v: torch.Tensor,
    pair_q: torch.Tensor,
    pair_k: torch.Tensor,
    pair_v: torch.Tensor,
    subj: torch.Tensor,
    obj: torch.Tensor,
    *,
    scale: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Self-attention over each pair's gathered sequence X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]]:

        O_p = softmax(Q_p K_pᵀ · scale) V_p  per head,  scale = Dh^-1/2 by default.

    traj_q/k/v (N, Lt, H, Dh): projected once per trajectory. pair_q/k/v (P, Lp, H, Dh): the pair's own tokens
    (Lp may be 0). subj, obj (P,) integer indices into N, any order, repeats allowed, subj[p] == obj[p] allowed.
    Returns (P, 2·Lt + Lp, H, Dh) in the input dtype; differentiable in all six feature tensors. The Triton path
    (``kernels/pair_self_attention.py``) gathers inside the kernel and reduces the trajectory gradients without
    atomics.
    """
    scale, path, subj_i, obj_i = _check_pair(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj, obj, scale, impl)
    if path == "torch":
        return pair_self_attention_ref(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj_i, obj_i, scale=scale)
    from uasan.kernels import pair_self_attention as kernel

    return kernel.pair_self_attention(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj_i, obj_i, scale)


# ------------------------------------------------------------------------------------------------------------------
# shared-query cross-attention (VisualRefiner)
# ------------------------------------------------------------------------------------------------------------------

_SHARED = "shared_query_attention"


def _check_shared(q, k, v, scale, impl):
    q = _float_tensor(_SHARED, "q", q, 3, "(L, H, Dh)")
    _check_keys_values(_SHARED, q, k, v, ("B", "S", "H", "Dh"), like_q={2: 1, 3: 2})
    return _scale(_SHARED, scale, q.shape[2]), _resolve(_SHARED, impl, q.device, q.dtype)


def shared_query_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None, impl: str = "torch"
) -> torch.Tensor:
    """Reference: O_b = softmax(Q K_bᵀ · scale) V_b per head with Q broadcast over b, in float32 (float64 for
    float64 inputs). q (L, H, Dh), k/v (B, S, H, Dh) → (B, L, H, Dh) in the input dtype. ``impl`` is ignored."""
    scale, _ = _check_shared(q, k, v, scale, "torch")
    dtype, math_dtype = q.dtype, _math_dtype(q.dtype)
    qh = q.to(math_dtype).transpose(0, 1)[None]  # (1, H, L, Dh), broadcast over B
    kh, vh = (x.to(math_dtype).transpose(1, 2) for x in (k, v))  # (B, H, S, Dh)
    return _attend(qh, kh, vh, scale).transpose(1, 2).to(dtype)  # (B, L, H, Dh)


def shared_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None, impl: str = "auto"
) -> torch.Tensor:
    """Cross-attention of one shared set of queries to every row of a batch:

        O_b = softmax(Q K_bᵀ · scale) V_b  per head,  Q (L, H, Dh) the same for all b.

    k, v (B, S, H, Dh) → (B, L, H, Dh) in the input dtype, differentiable in q, k, v. The Triton path
    (``kernels/shared_query_attention.py``) reads Q with no batch stride and sums dQ over b without atomics.
    """
    scale, path = _check_shared(q, k, v, scale, impl)
    if path == "torch":
        return shared_query_attention_ref(q, k, v, scale=scale)
    from uasan.kernels import shared_query_attention as kernel

    return kernel.shared_query_attention(q, k, v, scale)


# ------------------------------------------------------------------------------------------------------------------
# per-pair cross-attention with one query (URADecoder)
# ------------------------------------------------------------------------------------------------------------------

_CROSS = "pair_cross_attention"


def _check_cross(q, k, v, scale, impl):
    q = _float_tensor(_CROSS, "q", q, 3, "(P, H, Dh)")
    _check_keys_values(_CROSS, q, k, v, ("P", "T", "H", "Dh"), like_q={0: 0, 2: 1, 3: 2})
    return _scale(_CROSS, scale, q.shape[2]), _resolve_sdpa(_CROSS, impl, q.device, q.dtype)


def pair_cross_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None, impl: str = "torch"
) -> torch.Tensor:
    """Reference: o_p = softmax(q_p K_pᵀ · scale) V_p per head, float32 (float64 for float64 inputs) math.
    q (P, H, Dh), k/v (P, T, H, Dh) → (P, H, Dh) in the input dtype. ``impl`` is ignored."""
    scale, _ = _check_cross(q, k, v, scale, "torch")
    dtype, math_dtype = q.dtype, _math_dtype(q.dtype)
    qh = q.to(math_dtype)[:, :, None]  # (P, H, 1, Dh)
    kh, vh = (x.to(math_dtype).transpose(1, 2) for x in (k, v))  # (P, H, T, Dh)
    return _attend(qh, kh, vh, scale)[:, :, 0].to(dtype)  # (P, H, Dh)


def pair_cross_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None, impl: str = "auto"
) -> torch.Tensor:
    """One query per pair over the pair's T encoded tokens:

        o_p = softmax(q_p K_pᵀ · scale) V_p  per head.

    q (P, H, Dh) (an expanded view of one shared query is fine), k/v (P, T, H, Dh) → (P, H, Dh), differentiable.
    The ``"triton"`` path routes to ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
    backends on CUDA; a query length of 1 leaves a dedicated kernel little to win — unmeasured), in slices of at
    most 65,535 pairs.
    """
    scale, path = _check_cross(q, k, v, scale, impl)
    if path == "torch":
        return pair_cross_attention_ref(q, k, v, scale=scale)
    p, t = k.shape[:2]
    if p == 0 or t == 0:
        return pair_cross_attention_ref(q, k, v, scale=scale)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    outs = []
    for lo in range(0, p, _SDPA_MAX_BATCH):
        sl = slice(lo, lo + _SDPA_MAX_BATCH)
        qh = q[sl, :, None]  # (p, H, 1, Dh)
        kh, vh = k[sl].transpose(1, 2), v[sl].transpose(1, 2)  # (p, H, T, Dh)
        outs.append(sdpa(qh, kh, vh, scale=scale)[:, :, 0])  # (p, H, Dh)
    return outs[0] if len(outs) == 1 else torch.cat(outs)
