"""``shared_query_attention`` (VisualRefiner): one set of queries attending to every row of a batch (see
:mod:`uasan.ops.attention` for the family's dispatch rules)."""

from __future__ import annotations

import torch

from uasan.ops._attention import _attend, _check_keys_values, _float_tensor, _math_dtype, _resolve, _scale

__all__ = ["shared_query_attention", "shared_query_attention_ref"]

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
