"""Pair ops over the trajectories of one segment window: union boxes, relative motion features, GIoU of the first
and of the last boxes.

Inputs: boxes (N, T, 4) over a window of T frames, valid (N, T) where each trajectory exists, pairs (P, 2) of
(subject, object) indices into N. Paths and dispatch as in :mod:`uasan.ops.boxes` (C++ in ``csrc/boxes.cpp``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uasan import _ext
from uasan.ops._common import (
    Array,
    bool_array,
    check_boxes,
    check_shape,
    float_array,
    int_array,
    is_tensor,
    like,
    resolve_impl_for_inputs,
)
from uasan.ops.boxes import box_giou_ref, box_terms_torch, giou_from_terms_torch

_IMPLS = ("cpp", "torch", "ref")


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

    ends, _, exists, _ = _end_boxes_torch(boxes.double(), valid)
    bs, bo = ends[pairs[:, 0]], ends[pairs[:, 1]]  # (P, 2, 4)
    giou = giou_from_terms_torch(*box_terms_torch(bs, bo, plus_one)) + 1.0  # (P, 2)
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
    path = resolve_impl_for_inputs(impl, op, _IMPLS, boxes, valid, pairs)
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
