"""Trajectory overlap: vIoU (the official evaluator's) and vPoI of two trajectories, and their (A, B) matrices.

A trajectory is ``(start_frame, boxes (T, 4))`` covering frames ``[start, start + T)``. Paths and dispatch as in
:mod:`uasan.ops.boxes` (C++ in ``csrc/boxes.cpp``); the matrices are float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from uasan import _ext
from uasan.ops._common import Array, check_boxes, check_shape, is_tensor, like, resolve_impl, to_numpy

_IMPLS = ("cpp", "torch", "ref")

Trajectory = tuple[int, Any]  # (start_frame, boxes (T, 4))


def _overlap(start_a: int, boxes_a: np.ndarray, start_b: int, boxes_b: np.ndarray, off: float):
    """Σ_t |a_t ∩ b_t| over the frames t both trajectories cover, and a's boxes (float64) on those frames; None
    without temporal overlap."""
    lo, hi = max(start_a, start_b), min(start_a + len(boxes_a), start_b + len(boxes_b))
    if lo >= hi:
        return None
    ra = boxes_a[lo - start_a : hi - start_a].astype(np.float64)
    rb = boxes_b[lo - start_b : hi - start_b].astype(np.float64)
    iw = np.minimum(ra[:, 2], rb[:, 2]) - np.maximum(ra[:, 0], rb[:, 0]) + off
    ih = np.minimum(ra[:, 3], rb[:, 3]) - np.maximum(ra[:, 1], rb[:, 1]) + off
    return float(np.sum(np.where((iw > 0) & (ih > 0), iw * ih, 0.0))), ra


def _volume(boxes: np.ndarray, off: float) -> float:
    """Σ_t |b_t| over the given boxes (T, 4)."""
    b = boxes.astype(np.float64)
    return float(np.sum((b[:, 2] - b[:, 0] + off) * (b[:, 3] - b[:, 1] + off)))


def viou_ref(start_a: int, boxes_a: np.ndarray, start_b: int, boxes_b: np.ndarray, *, plus_one: bool = True) -> float:
    """Official vIoU (VidVRD-helper ``evaluation/common.py: viou``) of two trajectories.

    0 if the frame ranges ``[start, start + T)`` do not overlap; else the summed per-frame intersection over the
    common frames divided by (vol_a + vol_b − intersection), volumes over each whole trajectory.
    """
    off = 1.0 if plus_one else 0.0
    common = _overlap(start_a, boxes_a, start_b, boxes_b, off)
    if common is None:
        return 0.0
    overlap = common[0]
    union = _volume(boxes_a, off) + _volume(boxes_b, off) - overlap
    return overlap / union if union > 0 else 0.0


def vpoi_ref(start_a: int, boxes_a: np.ndarray, start_b: int, boxes_b: np.ndarray, *, plus_one: bool = True) -> float:
    """vPoI of proposal a against trajectory b: Σ_t |a_t ∩ b_t| / Σ_t |a_t| over the common frames t; 0 without
    temporal overlap (DESIGN §4, label assignment of proposal pairs)."""
    off = 1.0 if plus_one else 0.0
    common = _overlap(start_a, boxes_a, start_b, boxes_b, off)
    if common is None:
        return 0.0
    overlap, ra = common
    own = _volume(ra, off)
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
