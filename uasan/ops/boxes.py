"""Box and trajectory geometry: IoU / GIoU, per-pair union boxes and motion features, vIoU.

Boxes are ``[x1, y1, x2, y2]``. ``plus_one=True`` is the inclusive-pixel convention of the official VidVRD
evaluator (width = x2 − x1 + 1); ``plus_one=False`` the continuous one of torchvision.

Each op has three paths with one semantics:

* ``<op>_ref``: a straightforward NumPy loop, written to be read (the reference);
* ``<op>_torch``: the best vectorised PyTorch version (also the path for CUDA tensors);
* the C++ path in ``csrc/boxes.cpp``;

and a dispatcher ``<op>(..., impl="auto"|"cpp"|"torch"|"ref")``. ``"auto"`` takes C++ for NumPy arrays and CPU
tensors, and PyTorch for tensors on another device. Outputs have the kind of the inputs (array or tensor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from uasan import _ext
from uasan.ops._common import (
    bool_array,
    check_boxes,
    check_shape,
    float_array,
    int_array,
    is_tensor,
    like,
    resolve_impl,
    to_numpy,
)

Array = Any  # np.ndarray | torch.Tensor

_IMPLS = ("cpp", "torch", "ref")


def _impl_for(impl: str, op: str, *inputs: Any) -> str:
    """``auto`` sends tensors that live off the CPU to the PyTorch path (the C++ path is host-only)."""
    if impl == "auto" and any(is_tensor(x) and x.device.type != "cpu" for x in inputs):
        return "torch"
    return resolve_impl(impl, op, _IMPLS, fallback="torch")


# ----------------------------------------------------------------------------------------------------------------
# box_iou / box_giou
# ----------------------------------------------------------------------------------------------------------------


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


def _torch_pair_geometry(a: Any, b: Any, plus_one: bool) -> tuple[Any, ...]:
    import torch

    off = 1.0 if plus_one else 0.0
    area_a = (a[:, 2] - a[:, 0] + off) * (a[:, 3] - a[:, 1] + off)
    area_b = (b[:, 2] - b[:, 0] + off) * (b[:, 3] - b[:, 1] + off)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = rb - lt + off
    inter = torch.where((wh > 0).all(-1), wh.prod(-1), torch.zeros((), dtype=a.dtype, device=a.device))
    union = area_a[:, None] + area_b[None, :] - inter
    ewh = torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2]) + off
    return inter, union, ewh.prod(-1)


def box_iou_torch(a: Any, b: Any, *, plus_one: bool = True) -> Any:
    """Vectorised PyTorch box_iou (float64 internally, like the other paths)."""
    inter, union, _ = _torch_pair_geometry(a.double(), b.double(), plus_one)
    safe = union.clamp_min(1e-300)
    return (inter / safe).where(union > 0, 0.0).to(_torch_result_dtype(a, b))


def box_giou_torch(a: Any, b: Any, *, plus_one: bool = True) -> Any:
    """Vectorised PyTorch box_giou (float64 internally, like the other paths)."""
    inter, union, encl = _torch_pair_geometry(a.double(), b.double(), plus_one)
    iou = (inter / union.clamp_min(1e-300)).where(union > 0, 0.0)
    giou = (iou - (encl - union) / encl.clamp_min(1e-300)).where(encl > 0, iou)
    return giou.to(_torch_result_dtype(a, b))


def _torch_result_dtype(a: Any, b: Any) -> Any:
    import torch

    return torch.promote_types(a.dtype, b.dtype)


def _box_pair_op(op: str, a: Array, b: Array, plus_one: bool, impl: str) -> Array:
    path = _impl_for(impl, op, a, b)
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


# ----------------------------------------------------------------------------------------------------------------
# pair ops over trajectories in one segment window: boxes (N, T, 4), valid (N, T), pairs (P, 2)
# ----------------------------------------------------------------------------------------------------------------


def _pair_inputs(op: str, boxes: Array, valid: Array, pairs: Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = float_array(boxes, op, "boxes")
    check_shape(b, op, "boxes", (None, None, 4), "(N, T, 4)")
    v = bool_array(valid, op, "valid")
    check_shape(v, op, "valid", b.shape[:2], f"(N, T) = {b.shape[:2]} matching boxes")
    p = int_array(pairs, op, "pairs")
    if p.size == 0 and p.ndim <= 2:
        p = p.reshape(0, 2)
    check_shape(p, op, "pairs", (None, 2), "(P, 2)")
    if p.size and (p.min() < 0 or p.max() >= b.shape[0]):
        k = int(np.argmax((p < 0).any(1) | (p >= b.shape[0]).any(1)))
        raise ValueError(
            f"{op}: expected pairs to index trajectories in [0, {b.shape[0]}), but pairs[{k}] is {p[k].tolist()}"
        )
    check_boxes(b[v], op, "boxes")
    return b, v, p


def pair_union_boxes_ref(boxes: np.ndarray, valid: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (s, o) and frame t: ``[min x1, min y1, max x2, max y2]`` where both exist, zeros elsewhere."""
    P, T = pairs.shape[0], boxes.shape[1]
    union = np.zeros((P, T, 4), dtype=boxes.dtype)  # (P, T, 4)
    both = np.zeros((P, T), dtype=bool)  # (P, T)
    for k, (s, o) in enumerate(pairs):
        both[k] = valid[s] & valid[o]
        lo = np.minimum(boxes[s, :, :2], boxes[o, :, :2])
        hi = np.maximum(boxes[s, :, 2:], boxes[o, :, 2:])
        union[k] = np.where(both[k][:, None], np.concatenate([lo, hi], axis=1), 0)
    return union, both


def _ends(valid_row: np.ndarray) -> tuple[int, int] | None:
    """First valid frame and exclusive end (last valid + 1) of one trajectory; None if it never exists."""
    idx = np.flatnonzero(valid_row)
    return None if idx.size == 0 else (int(idx[0]), int(idx[-1]) + 1)


def _pair_ends(valid: np.ndarray, pairs: np.ndarray):
    """Yields (pair k, end e, (frame, time) of s, (frame, time) of o) for e = 0 (first box, time = start frame) and
    e = 1 (last box, time = exclusive end); pairs with a member that never exists are skipped (zero rows)."""
    for k, (s, o) in enumerate(pairs):
        es, eo = _ends(valid[s]), _ends(valid[o])
        if es is None or eo is None:
            continue
        yield k, 0, (es[0], es[0]), (eo[0], eo[0])
        yield k, 1, (es[1] - 1, es[1]), (eo[1] - 1, eo[1])


def pair_motion_features_ref(
    boxes: np.ndarray, valid: np.ndarray, pairs: np.ndarray, *, min_size: float = 1.0
) -> np.ndarray:
    """Relative motion features (P, 12) of DESIGN §4, from each member's first and last box.

    With centre form x = (x1 + x2) / 2, w = max(x2 − x1, min_size) (likewise y, h), per end e ∈ {first, last}:
    rx = (x_s − x_o) / w_o, ry = (y_s − y_o) / h_o, rw = log w_s − log w_o, rh = log h_s − log h_o,
    ra = log(w_s h_s) − log(w_o h_o), rt = (t_s − t_o) / 30 with t the start frame (first) or the exclusive
    end frame (last). Layout ``[rx_f, rx_l, ry_f, ry_l, rw_f, rw_l, rh_f, rh_l, ra_f, ra_l, rt_f, rt_l]``.
    Sizes are floored at ``min_size`` so degenerate boxes give finite values; a pair with a member that never
    exists gets a zero row.
    """
    out = np.zeros((pairs.shape[0], 12), dtype=np.float64)
    for k, e, (fs, ts), (fo, to) in _pair_ends(valid, pairs):
        s, o = pairs[k]
        bs, bo = boxes[s, fs].astype(np.float64), boxes[o, fo].astype(np.float64)
        ws, hs = max(bs[2] - bs[0], min_size), max(bs[3] - bs[1], min_size)
        wo, ho = max(bo[2] - bo[0], min_size), max(bo[3] - bo[1], min_size)
        out[k, 0 + e] = ((bs[0] + bs[2]) / 2 - (bo[0] + bo[2]) / 2) / wo
        out[k, 2 + e] = ((bs[1] + bs[3]) / 2 - (bo[1] + bo[3]) / 2) / ho
        out[k, 4 + e] = np.log(ws) - np.log(wo)
        out[k, 6 + e] = np.log(hs) - np.log(ho)
        out[k, 8 + e] = (np.log(ws) + np.log(hs)) - (np.log(wo) + np.log(ho))
        out[k, 10 + e] = (ts - to) / 30.0
    return out.astype(boxes.dtype)


def pair_giou_start_end_ref(
    boxes: np.ndarray, valid: np.ndarray, pairs: np.ndarray, *, plus_one: bool = False
) -> np.ndarray:
    """(P, 2): [GIoU(first box of s, first box of o) + 1, GIoU(last of s, last of o) + 1]; zero row for a member
    that never exists. Values lie in [0, 2]."""
    out = np.zeros((pairs.shape[0], 2), dtype=np.float64)
    for k, e, (fs, _), (fo, _) in _pair_ends(valid, pairs):
        s, o = pairs[k]
        out[k, e] = box_giou_ref(boxes[s, fs][None], boxes[o, fo][None], plus_one=plus_one)[0, 0] + 1.0
    return out.astype(boxes.dtype)


def _first_last_torch(valid: Any) -> tuple[Any, Any, Any]:
    """First valid index, last valid index and existence per trajectory, all (N,)."""
    import torch

    T = valid.shape[1]
    exists = valid.any(1)
    if T == 0:  # no frames: nothing exists, indices are placeholders
        zeros = torch.zeros(valid.shape[0], dtype=torch.long, device=valid.device)
        return zeros, zeros, exists
    idx = torch.arange(T, device=valid.device)
    first = torch.where(valid, idx, T).amin(1).clamp_max(max(T - 1, 0))
    last = torch.where(valid, idx, -1).amax(1).clamp_min(0)
    return first, last, exists


def pair_union_boxes_torch(boxes: Any, valid: Any, pairs: Any) -> tuple[Any, Any]:
    """Vectorised PyTorch pair_union_boxes."""
    s, o = pairs[:, 0], pairs[:, 1]
    both = valid[s] & valid[o]  # (P, T)
    union = torch_cat_minmax(boxes[s], boxes[o])  # (P, T, 4)
    return union * both[..., None].to(union.dtype), both


def torch_cat_minmax(bs: Any, bo: Any) -> Any:
    import torch

    return torch.cat([torch.minimum(bs[..., :2], bo[..., :2]), torch.maximum(bs[..., 2:], bo[..., 2:])], dim=-1)


def _end_boxes_torch(boxes: Any, valid: Any) -> tuple[Any, Any, Any, Any]:
    """(N, 2, 4) first/last boxes, (N, 2) start/exclusive-end frames, (N,) existence."""
    import torch

    first, last, exists = _first_last_torch(valid)
    n = torch.arange(boxes.shape[0], device=boxes.device)
    ends = (
        torch.stack([boxes[n, first], boxes[n, last]], dim=1)
        if boxes.shape[1]
        else boxes.new_zeros((boxes.shape[0], 2, 4))
    )
    t = torch.stack([first, last + 1], dim=1).to(torch.float64)
    return ends, t, exists, n


def pair_motion_features_torch(boxes: Any, valid: Any, pairs: Any, *, min_size: float = 1.0) -> Any:
    """Vectorised PyTorch pair_motion_features (float64 internally)."""
    import torch

    ends, t, exists, _ = _end_boxes_torch(boxes.double(), valid)
    ctr = (ends[..., :2] + ends[..., 2:]) / 2  # (N, 2, 2) centre x, y per end
    wh = (ends[..., 2:] - ends[..., :2]).clamp_min(min_size)  # (N, 2, 2)
    logwh = wh.log()
    s, o = pairs[:, 0], pairs[:, 1]
    rxy = (ctr[s] - ctr[o]) / wh[o]  # (P, 2 ends, 2 axes)
    rwh = logwh[s] - logwh[o]
    ra = logwh[s].sum(-1) - logwh[o].sum(-1)  # (P, 2)
    rt = (t[s] - t[o]) / 30.0
    out = torch.cat([rxy[..., 0], rxy[..., 1], rwh[..., 0], rwh[..., 1], ra, rt], dim=1)  # (P, 12)
    ok = (exists[s] & exists[o])[:, None]
    return torch.where(ok, out, torch.zeros((), dtype=out.dtype)).to(boxes.dtype)


def pair_giou_start_end_torch(boxes: Any, valid: Any, pairs: Any, *, plus_one: bool = False) -> Any:
    """Vectorised PyTorch pair_giou_start_end (float64 internally)."""
    import torch

    off = 1.0 if plus_one else 0.0
    ends, _, exists, _ = _end_boxes_torch(boxes.double(), valid)
    bs, bo = ends[pairs[:, 0]], ends[pairs[:, 1]]  # (P, 2, 4)
    area = lambda b: (b[..., 2] - b[..., 0] + off) * (b[..., 3] - b[..., 1] + off)  # noqa: E731
    wh = torch.minimum(bs[..., 2:], bo[..., 2:]) - torch.maximum(bs[..., :2], bo[..., :2]) + off
    inter = torch.where((wh > 0).all(-1), wh.prod(-1), torch.zeros((), dtype=wh.dtype))
    union = area(bs) + area(bo) - inter
    encl = (torch.maximum(bs[..., 2:], bo[..., 2:]) - torch.minimum(bs[..., :2], bo[..., :2]) + off).prod(-1)
    iou = (inter / union.clamp_min(1e-300)).where(union > 0, 0.0)
    giou = (iou - (encl - union) / encl.clamp_min(1e-300)).where(encl > 0, iou) + 1.0
    ok = (exists[pairs[:, 0]] & exists[pairs[:, 1]])[:, None]
    return torch.where(ok, giou, torch.zeros((), dtype=giou.dtype)).to(boxes.dtype)


def _check_device_pair_inputs(op: str, boxes: Any, valid: Any, pairs: Any) -> None:
    for name, x in (("valid", valid), ("pairs", pairs)):
        if not is_tensor(x) or x.device != boxes.device:
            raise ValueError(f"{op}: expected {name} as a tensor on {boxes.device} like boxes")
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or not boxes.dtype.is_floating_point:
        raise ValueError(f"{op}: expected boxes of shape (N, T, 4) and a float dtype, but got {tuple(boxes.shape)}")
    if tuple(valid.shape) != tuple(boxes.shape[:2]):
        raise ValueError(f"{op}: expected valid of shape (N, T) matching boxes, but got {tuple(valid.shape)}")
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"{op}: expected pairs of shape (P, 2), but got {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= boxes.shape[0]):
        raise ValueError(f"{op}: expected pairs to index trajectories in [0, {boxes.shape[0]})")


def _run_pair_op(op: str, boxes: Array, valid: Array, pairs: Array, impl: str, ref, torch_fn, **kw: Any) -> Any:
    path = _impl_for(impl, op, boxes, valid, pairs)
    as_tensor = any(is_tensor(x) for x in (boxes, valid, pairs))
    if path == "torch" and is_tensor(boxes) and boxes.device.type != "cpu":
        _check_device_pair_inputs(op, boxes, valid, pairs)  # shapes and indices only: no host round trip of boxes
        return torch_fn(boxes, valid.bool(), pairs.long(), **kw)
    b, v, p = _pair_inputs(op, boxes, valid, pairs)
    if path == "cpp":
        out = getattr(_ext.ext(), op)(
            np.ascontiguousarray(b), np.ascontiguousarray(v), np.ascontiguousarray(p), *kw.values()
        )
    elif path == "torch":
        import torch

        res = torch_fn(torch.from_numpy(b), torch.from_numpy(v), torch.from_numpy(p), **kw)
        out = tuple(r.numpy() for r in res) if isinstance(res, tuple) else res.numpy()
    else:
        out = ref(b, v, p, **kw)
    if isinstance(out, tuple):
        return tuple(like(o, as_tensor) for o in out)
    return like(out, as_tensor)


def pair_union_boxes(boxes: Array, valid: Array, pairs: Array, *, impl: str = "auto") -> tuple[Array, Array]:
    """Union box per pair and frame.

    Args:
        boxes: (N, T, 4) trajectory boxes over one window of T frames.
        valid: (N, T) bool, where each trajectory exists.
        pairs: (P, 2) int, (subject, object) indices into N.
    Returns:
        union (P, T, 4) = ``[min x1, min y1, max x2, max y2]`` where both members exist (zeros elsewhere) and
        valid (P, T) = valid[s] & valid[o].
    """
    return _run_pair_op("pair_union_boxes", boxes, valid, pairs, impl, pair_union_boxes_ref, pair_union_boxes_torch)


def pair_motion_features(
    boxes: Array, valid: Array, pairs: Array, *, min_size: float = 1.0, impl: str = "auto"
) -> Array:
    """Relative motion features (P, 12) of each pair (DESIGN §4); see :func:`pair_motion_features_ref`."""
    if not (np.isfinite(min_size) and min_size > 0):
        raise ValueError(f"pair_motion_features: expected min_size > 0, but got {min_size}")
    return _run_pair_op(
        "pair_motion_features",
        boxes,
        valid,
        pairs,
        impl,
        pair_motion_features_ref,
        pair_motion_features_torch,
        min_size=float(min_size),
    )


def pair_giou_start_end(
    boxes: Array, valid: Array, pairs: Array, *, plus_one: bool = False, impl: str = "auto"
) -> Array:
    """GIoU + 1 of each pair's first boxes and of its last boxes → (P, 2); see :func:`pair_giou_start_end_ref`."""
    return _run_pair_op(
        "pair_giou_start_end",
        boxes,
        valid,
        pairs,
        impl,
        pair_giou_start_end_ref,
        pair_giou_start_end_torch,
        plus_one=bool(plus_one),
    )


# ----------------------------------------------------------------------------------------------------------------
# viou_matrix
# ----------------------------------------------------------------------------------------------------------------

Trajectory = tuple[int, Any]  # (start_frame, boxes (T, 4))


def viou_ref(start_a: int, boxes_a: np.ndarray, start_b: int, boxes_b: np.ndarray, *, plus_one: bool = True) -> float:
    """Official vIoU (VidVRD-helper ``evaluation/common.py: viou``) of two trajectories.

    0 if the frame ranges ``[start, start + T)`` do not overlap; else the summed per-frame intersection over the
    common frames divided by (vol_a + vol_b − intersection), volumes over each whole trajectory.
    """
    off = 1.0 if plus_one else 0.0
    end_a, end_b = start_a + len(boxes_a), start_b + len(boxes_b)
    lo, hi = max(start_a, start_b), min(end_a, end_b)
    if lo >= hi:
        return 0.0
    ra = boxes_a[lo - start_a : hi - start_a].astype(np.float64)
    rb = boxes_b[lo - start_b : hi - start_b].astype(np.float64)
    iw = np.minimum(ra[:, 2], rb[:, 2]) - np.maximum(ra[:, 0], rb[:, 0]) + off
    ih = np.minimum(ra[:, 3], rb[:, 3]) - np.maximum(ra[:, 1], rb[:, 1]) + off
    overlap = float(np.sum(np.where((iw > 0) & (ih > 0), iw * ih, 0.0)))
    vol = lambda b: float(np.sum((b[:, 2] - b[:, 0] + off) * (b[:, 3] - b[:, 1] + off)))  # noqa: E731
    union = vol(boxes_a.astype(np.float64)) + vol(boxes_b.astype(np.float64)) - overlap
    return overlap / union if union > 0 else 0.0


def vpoi_ref(start_a: int, boxes_a: np.ndarray, start_b: int, boxes_b: np.ndarray, *, plus_one: bool = True) -> float:
    """vPoI of proposal a against trajectory b: Σ_t |a_t ∩ b_t| / Σ_t |a_t| over the common frames t; 0 without
    temporal overlap (DESIGN §4, label assignment of proposal pairs)."""
    off = 1.0 if plus_one else 0.0
    lo, hi = max(start_a, start_b), min(start_a + len(boxes_a), start_b + len(boxes_b))
    if lo >= hi:
        return 0.0
    ra = boxes_a[lo - start_a : hi - start_a].astype(np.float64)
    rb = boxes_b[lo - start_b : hi - start_b].astype(np.float64)
    iw = np.minimum(ra[:, 2], rb[:, 2]) - np.maximum(ra[:, 0], rb[:, 0]) + off
    ih = np.minimum(ra[:, 3], rb[:, 3]) - np.maximum(ra[:, 1], rb[:, 1]) + off
    overlap = float(np.sum(np.where((iw > 0) & (ih > 0), iw * ih, 0.0)))
    own = float(np.sum((ra[:, 2] - ra[:, 0] + off) * (ra[:, 3] - ra[:, 1] + off)))
    return overlap / own if own > 0 else 0.0


def _traj_set(trajs: Sequence[Trajectory], op: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattens trajectories once into CSR: boxes (ΣT, 4) float64, starts (K,), offsets (K + 1,)."""
    if isinstance(trajs, (str, bytes, dict)) or not isinstance(trajs, Sequence):
        raise ValueError(
            f"{op}: expected {name} to be a sequence of (start_frame, boxes) pairs, got {type(trajs).__name__}"
        )
    starts = np.empty(len(trajs), dtype=np.int64)
    arrays = []
    for i, item in enumerate(trajs):
        try:
            start, boxes = item
        except (TypeError, ValueError):
            raise ValueError(f"{op}: expected {name}[{i}] to be a (start_frame, boxes) pair") from None
        if isinstance(start, (bool, np.bool_)) or not float(start).is_integer() or start < 0:
            raise ValueError(f"{op}: expected {name}[{i}] start frame to be a non-negative integer, but got {start!r}")
        b = np.asarray(to_numpy(boxes, op, f"{name}[{i}] boxes"), dtype=np.float64)
        if b.size == 0:
            b = b.reshape(0, 4)
        check_shape(b, op, f"{name}[{i}] boxes", (None, 4), "(T, 4)")
        starts[i] = int(start)
        arrays.append(b)
    flat = np.concatenate(arrays) if arrays else np.zeros((0, 4))
    check_boxes(flat, op, f"{name} boxes")
    offsets = np.zeros(len(trajs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in arrays], out=offsets[1:])
    return flat, starts, offsets


def _pairwise_ref(fn, trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], plus_one: bool) -> np.ndarray:
    out = np.zeros((len(trajs_a), len(trajs_b)), dtype=np.float64)
    for i, (sa, ba) in enumerate(trajs_a):
        for j, (sb, bb) in enumerate(trajs_b):
            out[i, j] = fn(int(sa), np.asarray(ba), int(sb), np.asarray(bb), plus_one=plus_one)
    return out


def viou_matrix_ref(
    trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], *, plus_one: bool = True
) -> np.ndarray:
    """(A, B) official vIoU of every pair, one :func:`viou_ref` call per pair."""
    return _pairwise_ref(viou_ref, trajs_a, trajs_b, plus_one)


def vpoi_matrix_ref(
    trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], *, plus_one: bool = True
) -> np.ndarray:
    """(A, B) vPoI of every proposal in ``trajs_a`` against every trajectory in ``trajs_b`` (:func:`vpoi_ref`)."""
    return _pairwise_ref(vpoi_ref, trajs_a, trajs_b, plus_one)


def viou_matrix_torch(
    trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], *, plus_one: bool = True, chunk: int = 1 << 22
) -> Any:
    """Vectorised PyTorch vIoU: trajectories on a dense frame grid, intersections summed in row chunks."""
    return _traj_matrix_torch("viou_matrix", trajs_a, trajs_b, plus_one, chunk)


def vpoi_matrix_torch(
    trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], *, plus_one: bool = True, chunk: int = 1 << 22
) -> Any:
    """Vectorised PyTorch vPoI on the same dense frame grid as :func:`viou_matrix_torch`."""
    return _traj_matrix_torch("vpoi_matrix", trajs_a, trajs_b, plus_one, chunk)


def _traj_matrix_torch(
    op: str, trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], plus_one: bool, chunk: int
) -> Any:
    import torch

    off = 1.0 if plus_one else 0.0
    flat_a, sa, oa = _traj_set(trajs_a, op, "trajs_a")
    flat_b, sb, ob = _traj_set(trajs_b, op, "trajs_b")
    A, B = len(sa), len(sb)
    out = torch.zeros((A, B), dtype=torch.float64)
    if A == 0 or B == 0:
        return out
    t0 = int(min(sa.min(), sb.min()))
    t1 = int(max((sa + np.diff(oa)).max(), (sb + np.diff(ob)).max()))

    def dense(flat: np.ndarray, s: np.ndarray, o: np.ndarray) -> tuple[Any, Any]:
        n, lens = len(s), np.diff(o)
        grid = torch.zeros((n, max(t1 - t0, 1), 4), dtype=torch.float64)  # (K, F, 4)
        mask = torch.zeros((n, max(t1 - t0, 1)), dtype=torch.bool)
        rows = np.repeat(np.arange(n), lens)
        cols = np.arange(len(flat)) - np.repeat(o[:-1], lens) + np.repeat(s - t0, lens)
        grid[rows, cols] = torch.from_numpy(flat)
        mask[rows, cols] = True
        return grid, mask

    ga, ma = dense(flat_a, sa, oa)
    gb, mb = dense(flat_b, sb, ob)
    area_a = (ga[..., 2] - ga[..., 0] + off) * (ga[..., 3] - ga[..., 1] + off) * ma  # (A, F)
    area_b = (gb[..., 2] - gb[..., 0] + off) * (gb[..., 3] - gb[..., 1] + off) * mb  # (B, F)
    va, vb = area_a.sum(1), area_b.sum(1)
    F = ga.shape[1]
    rows = max(1, chunk // max(B * F, 1))
    for i in range(0, A, rows):
        a, m = ga[i : i + rows, None], ma[i : i + rows, None]  # (r, 1, F, 4)
        both = m & mb[None]  # (r, B, F)
        wh = torch.minimum(a[..., 2:], gb[None, ..., 2:]) - torch.maximum(a[..., :2], gb[None, ..., :2]) + off
        inter = torch.where((wh > 0).all(-1) & both, wh.prod(-1), 0.0).sum(-1)  # (r, B)
        if op == "vpoi_matrix":
            den = (area_a[i : i + rows, None] * both).sum(-1)  # a's volume over the common frames
        else:
            den = va[i : i + rows, None] + vb[None] - inter
        out[i : i + rows] = (inter / den.clamp_min(1e-300)).where(den > 0, 0.0)
    return out


def _traj_matrix(op: str, trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], plus_one: bool, impl: str):
    path = resolve_impl(impl, op, _IMPLS, fallback="torch")
    as_tensor = any(is_tensor(t[1]) for t in (*trajs_a, *trajs_b) if isinstance(t, (tuple, list)) and len(t) == 2)
    if path == "cpp":
        fa, sa, oa = _traj_set(trajs_a, op, "trajs_a")
        fb, sb, ob = _traj_set(trajs_b, op, "trajs_b")
        out = getattr(_ext.ext(), op)(fa, sa, oa, fb, sb, ob, bool(plus_one))
    elif path == "torch":
        out = _traj_matrix_torch(op, trajs_a, trajs_b, plus_one, 1 << 22).numpy()
    else:
        _traj_set(trajs_a, op, "trajs_a")  # same validation on every path
        _traj_set(trajs_b, op, "trajs_b")
        out = _pairwise_ref(viou_ref if op == "viou_matrix" else vpoi_ref, trajs_a, trajs_b, plus_one)
    return like(out, as_tensor)


def viou_matrix(
    trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], *, plus_one: bool = True, impl: str = "auto"
) -> Array:
    """Official vIoU (A, B) between two lists of trajectories ``(start_frame, boxes (T, 4))``, float64.

    Equals VidVRD-helper ``evaluation/common.py: viou`` on each pair: durations are ``[start, start + T)``,
    volumes are taken over each whole trajectory, pixels are inclusive unless ``plus_one=False``.
    """
    return _traj_matrix("viou_matrix", trajs_a, trajs_b, plus_one, impl)


def vpoi_matrix(
    trajs_a: Sequence[Trajectory], trajs_b: Sequence[Trajectory], *, plus_one: bool = True, impl: str = "auto"
) -> Array:
    """vPoI (A, B) of every proposal in ``trajs_a`` against every trajectory in ``trajs_b``, float64.

    vPoI(a, b) = Σ_t |a_t ∩ b_t| / Σ_t |a_t| over the frames t both cover (0 without overlap): how much of the
    proposal lies inside b. A proposal pair takes a relation's predicates when min(vPoI_s, vPoI_o) > 0.9.
    """
    return _traj_matrix("vpoi_matrix", trajs_a, trajs_b, plus_one, impl)
