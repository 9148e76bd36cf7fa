"""``pair_cross_attention`` (URADecoder): one query per pair over the pair's encoded tokens; its ``"triton"`` path is
PyTorch's SDPA (see :mod:`uasan.ops.attention` for the family's dispatch rules)."""

from __future__ import annotations

import torch

from uasan.ops._attention import _attend, _check_keys_values, _float_tensor, _math_dtype, _resolve_sdpa, _scale

__all__ = ["pair_cross_attention", "pair_cross_attention_ref"]

_CROSS = "pair_cross_attention"
_SDPA_MAX_BATCH = 65_535  # CUDA grid y/z limit; larger pair counts are cut into slices


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
