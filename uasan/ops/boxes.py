"""Box IoU and GIoU of every box in one set against every box in another.

Boxes are ``[x1, y1, x2, y2]``. ``plus_one=True`` is the inclusive-pixel convention of the official VidVRD
evaluator (width = x2 − x1 + 1); ``plus_one=False`` the continuous one of torchvision.

The box geometry ops (here, the pair ops over a segment window in :mod:`uasan.ops.pairs` and the trajectory ops
in :mod:`uasan.ops.viou`) each have three paths with one semantics:

* ``<op>_ref``: a straightforward NumPy loop, written to be read (the reference);
* ``<op>_torch``: the best vectorised PyTorch version (also the path for CUDA tensors);
* the C++ path in ``csrc/boxes.cpp``;

and a dispatcher ``<op>(..., impl="auto"|"cpp"|"torch"|"ref")``. ``"auto"`` takes C++ for NumPy arrays and CPU
tensors, and PyTorch for tensors on another device. Outputs have the kind of the inputs (array or tensor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uasan import _ext
from uasan.ops._common import (
    Array,
    check_boxes,
    check_shape,
    float_array,
    is_tensor,
    like,
    resolve_impl_for_inputs,
)

_IMPLS = ("cpp", "torch", "ref")


def _pair_geometry(a: np.ndarray, b: np.ndarray, plus_one: bool) -> tuple[np.ndarray, ...]:
    """Intersection, union and enclosing areas of a (N, 4) against b (M, 4), each (N, M), in float64."""
    off = 1.0 if plus_one else 0.0
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    area_a = (a[:, 2] - a[:, 0] + off) * (a[:, 3] - a[:, 1] + off)
    area_b = (b[:, 2] - b[:, 0] + off) * (b[:, 3] - b[:, 1] + off)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + off
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + off
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    cw = np.maximum(a[:, None, 2], b[None, :, 2]) - np.minimum(a[:, None, 0], b[None, :, 0]) + off
    ch = np.maximum(a[:, None, 3], b[None, :, 3]) - np.minimum(a[:, None, 1], b[None, :, 1]) + off
    return inter, union, cw * ch


def box_iou_ref(a: np.ndarray, b: np.ndarray, *, plus_one: bool = True) -> np.ndarray:
    """IoU (N, M) = |a ∩ b| / |a ∪ b|; 0 where the union is empty."""
    inter, union, _ = _pair_geometry(a, b, plus_one)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0).astype(np.result_type(a, b))


def box_giou_ref(a: np.ndarray, b: np.ndarray, *, plus_one: bool = True) -> np.ndarray:
    """GIoU (N, M) = IoU − (|C| − |a ∪ b|) / |C| with C the enclosing box; IoU where |C| = 0."""
    inter, union, encl = _pair_geometry(a, b, plus_one)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
        giou = np.where(encl > 0, iou - (encl - union) / encl, iou)
    return giou.astype(np.result_type(a, b))


def box_terms_torch(a: Any, b: Any, plus_one: bool) -> tuple[Any, Any, Any]:
    """Intersection, union and enclosing-box areas of boxes ``a`` and ``b`` (..., 4), broadcast against each other
    (``a[:, None]`` against ``b[None]`` for all pairs; also the per-pair GIoU in :mod:`uasan.ops.pairs`)."""
    import torch

    off = 1.0 if plus_one else 0.0
    area_a = (a[..., 2] - a[..., 0] + off) * (a[..., 3] - a[..., 1] + off)
    area_b = (b[..., 2] - b[..., 0] + off) * (b[..., 3] - b[..., 1] + off)
    wh = torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2]) + off
    inter = torch.where((wh > 0).all(-1), wh.prod(-1), torch.zeros((), dtype=wh.dtype, device=wh.device))
    union = area_a + area_b - inter
    encl = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2]) + off).prod(-1)
    return inter, union, encl


def iou_from_terms_torch(inter: Any, union: Any) -> Any:
    """|a ∩ b| / |a ∪ b|; 0 where the union is empty."""
    return (inter / union.clamp_min(1e-300)).where(union > 0, 0.0)


def giou_from_terms_torch(inter: Any, union: Any, encl: Any) -> Any:
    """IoU − (|C| − |a ∪ b|) / |C| with C the enclosing box; IoU where |C| = 0."""
    iou = iou_from_terms_torch(inter, union)
    return (iou - (encl - union) / encl.clamp_min(1e-300)).where(encl > 0, iou)


def box_iou_torch(a: Any, b: Any, *, plus_one: bool = True) -> Any:
    """Vectorised PyTorch box_iou (float64 internally, like the other paths)."""
    inter, union, _ = box_terms_torch(a.double()[:, None], b.double()[None], plus_one)  # (N, M) each
    return iou_from_terms_torch(inter, union).to(_torch_result_dtype(a, b))


def box_giou_torch(a: Any, b: Any, *, plus_one: bool = True) -> Any:
    """Vectorised PyTorch box_giou (float64 internally, like the other paths)."""
    inter, union, encl = box_terms_torch(a.double()[:, None], b.double()[None], plus_one)  # (N, M) each
    return giou_from_terms_torch(inter, union, encl).to(_torch_result_dtype(a, b))


def _torch_result_dtype(a: Any, b: Any) -> Any:
    import torch

    return torch.promote_types(a.dtype, b.dtype)


def _box_pair_op(op: str, a: Array, b: Array, plus_one: bool, impl: str) -> Array:
    path = resolve_impl_for_inputs(impl, op, _IMPLS, a, b)
    as_tensor = is_tensor(a) or is_tensor(b)
    if path == "torch" and as_tensor and all(is_tensor(x) for x in (a, b)):
        return _box_pair_torch(op, a, b, plus_one)
    an, bn = float_array(a, op, "a"), float_array(b, op, "b")
    check_shape(an, op, "a", (None, 4), "(N, 4)")
    check_shape(bn, op, "b", (None, 4), "(M, 4)")
    check_boxes(an, op, "a")
    check_boxes(bn, op, "b")
    if an.dtype != bn.dtype:  # one float dtype for both, as the result would have
        an, bn = an.astype(np.float64), bn.astype(np.float64)
    if path == "cpp":
        # contiguous inputs keep pybind11 on the overload of their own dtype (no silent float64 copy)
        out = getattr(_ext.ext(), op)(np.ascontiguousarray(an), np.ascontiguousarray(bn), plus_one)
    elif path == "torch":
        import torch

        ref = box_iou_torch if op == "box_iou" else box_giou_torch
        out = ref(torch.from_numpy(an), torch.from_numpy(bn), plus_one=plus_one).numpy()
    else:
        out = (box_iou_ref if op == "box_iou" else box_giou_ref)(an, bn, plus_one=plus_one)
    return like(out, as_tensor)


def _box_pair_torch(op: str, a: Any, b: Any, plus_one: bool) -> Any:
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2 or x.shape[1] != 4:
            raise ValueError(
                f"{op}: expected {name} of shape ({'N' if name == 'a' else 'M'}, 4), but got {tuple(x.shape)}"
            )
        if not x.dtype.is_floating_point:
            x = x.double()
        if not bool(x.isfinite().all()):
            raise ValueError(f"{op}: expected {name} to hold finite coordinates")
        if bool(((x[:, 2] < x[:, 0]) | (x[:, 3] < x[:, 1])).any()):
            raise ValueError(f"{op}: expected {name} boxes with x2 >= x1 and y2 >= y1")
    a = a if a.dtype.is_floating_point else a.double()
    b = b if b.dtype.is_floating_point else b.double()
    return (box_iou_torch if op == "box_iou" else box_giou_torch)(a, b, plus_one=plus_one)


def box_iou(a: Array, b: Array, *, plus_one: bool = True, impl: str = "auto") -> Array:
    """IoU of every box in ``a`` (N, 4) against every box in ``b`` (M, 4) → (N, M); 0 where the union is empty.

    ``plus_one=True`` (default) measures inclusive pixels as the official VidVRD evaluator does.
    """
    return _box_pair_op("box_iou", a, b, plus_one, impl)


def box_giou(a: Array, b: Array, *, plus_one: bool = True, impl: str = "auto") -> Array:
    """Generalised IoU (Rezatofighi et al. 2019) of ``a`` (N, 4) against ``b`` (M, 4) → (N, M)."""
    return _box_pair_op("box_giou", a, b, plus_one, impl)
