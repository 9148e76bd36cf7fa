"""Which image crops a segment needs, deduplicated: trajectory boxes and pair union boxes on K sampled frames.

Definitions (the reference path :func:`uasan.extract.features.segment_features_ref` uses the same ones):

* **Sampled frames** of a trajectory: K frames evenly spread over the frames where it exists, positions
  ``rint(j (m − 1) / (K − 1))``, j = 0..K−1, among its m frames (all m when m <= K; the middle one when K = 1).
  Of a pair (s, o): the same over the frames where both exist; a pair that never co-occurs has no crop and
  a zero feature row.
* **Union box** of a pair at a frame: ``uasan.ops.pair_union_boxes`` (min x1, min y1, max x2, max y2).
* **Crop rectangle** of a box: pixels ``[floor(x1), ceil(x2)) × [floor(y1), ceil(y2))`` clipped to the frame, at
  least one pixel each way (continuous pixel convention).
* **Square padding**: the crop centred on a square canvas of side max(h, w) filled with the image processor's mean
  colour (zero after normalisation), so that the processor's resize / centre crop never cuts an elongated box.

Deduplication: two requests with the same frame and the same crop rectangle are the same pixels and give the same
feature, so a segment computes each distinct (frame, rectangle) once: a trajectory's crop of a frame once, the
union crop of (s, o) and of (o, s) once (the union box is symmetric), and any coincidence between them once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uasan import ops
from uasan.data import all_pairs

__all__ = ["SegmentPlan", "crop_rects", "pad_to_square", "plan_segment", "sample_positions", "take_crop"]


def sample_positions(valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """K sampled frames per row of ``valid`` (R, L) bool (see the module docstring).

    Returns ``frames`` (R, K) int64 (frame indices into L) and ``ok`` (R, K) bool (False where a row has fewer
    than K frames, or none).
    """
    if k < 1:
        raise ValueError(f"sample_positions: expected k >= 1 frames per trajectory, got {k}")
    valid = np.asarray(valid, dtype=bool)
    R, L = valid.shape
    m = valid.sum(1)  # (R,)
    order = np.argsort(~valid, axis=1, kind="stable")  # (R, L): each row's valid frames first, in order
    j = np.arange(k)[None, :]  # (1, K)
    if k == 1:
        pos = ((m - 1) // 2)[:, None].repeat(1, axis=1)
    else:
        pos = np.rint(j * (np.maximum(m, 1) - 1)[:, None] / (k - 1)).astype(np.int64)  # (R, K)
    few = (m < k)[:, None]
    pos = np.where(few, np.minimum(j, np.maximum(m - 1, 0)[:, None]), pos)
    ok = j < m[:, None]
    frames = np.take_along_axis(order, np.clip(pos, 0, max(L - 1, 0)), axis=1) if L else np.zeros((R, k), np.int64)
    return frames.astype(np.int64), ok


def crop_rects(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Integer crop rectangles (..., 4) ``[x1, y1, x2, y2)`` of float boxes (..., 4), clipped to the frame."""
    b = np.asarray(boxes, dtype=np.float64)
    x1 = np.clip(np.floor(b[..., 0]), 0, width - 1)
    y1 = np.clip(np.floor(b[..., 1]), 0, height - 1)
    x2 = np.clip(np.ceil(b[..., 2]), x1 + 1, width)
    y2 = np.clip(np.ceil(b[..., 3]), y1 + 1, height)
    return np.stack([x1, y1, x2, y2], axis=-1).astype(np.int64)


def pad_to_square(crop: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 → (s, s, 3), s = max(h, w), the crop centred on a ``fill``-coloured canvas."""
    h, w = crop.shape[:2]
    s = max(h, w)
    if h == w:
        return crop.copy()  # never a view: a crop must not keep its whole frame alive
    out = np.empty((s, s, 3), dtype=np.uint8)
    out[:] = fill
    top, left = (s - h) // 2, (s - w) // 2
    out[top : top + h, left : left + w] = crop
    return out


def take_crop(frame: np.ndarray, rect: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The square-padded crop of ``rect`` [x1, y1, x2, y2) from an (H, W, 3) uint8 frame."""
    x1, y1, x2, y2 = (int(v) for v in rect)
    return pad_to_square(frame[y1:y2, x1:x2], fill)


@dataclass
class SegmentPlan:
    """The deduplicated crops of one segment and how they average into its feature rows.

    Targets: rows ``0..n-1`` are the trajectories, rows ``n + r`` the ordered pairs in the data layer's row-major
    order (``uasan.data.all_pairs``). Crops are sorted by (frame, rectangle), so the order is deterministic.
    """

    n: int  # trajectories
    num_pairs: int  # P = n (n - 1)
    frames: np.ndarray  # (C,) int64 absolute frame of each crop, non-decreasing
    rects: np.ndarray  # (C, 4) int64 crop rectangles
    entry_crop: np.ndarray  # (E,) int64 crop of each (target, sampled frame), sorted by crop then target
    entry_target: np.ndarray  # (E,) int64
    counts: np.ndarray  # (n + P,) int64 sampled frames per target (0: a pair that never co-occurs)

    @property
    def num_crops(self) -> int:
        return len(self.frames)

    @property
    def num_requests(self) -> int:
        """Crops a direct computation would run (every target × its sampled frames, no sharing)."""
        return len(self.entry_crop)


def plan_segment(
    boxes: np.ndarray, valid: np.ndarray, fstart: int, width: int, height: int, k: int = 8, *, impl: str = "auto"
) -> SegmentPlan:
    """Plans the crops of a segment from its trajectories ``boxes`` (n, L, 4) / ``valid`` (n, L) on the segment's
    frame grid (frame ``fstart + t``); ``width`` × ``height`` is the video's frame size."""
    boxes = np.asarray(boxes, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    n, L = valid.shape
    pairs = all_pairs(n)  # (P, 2)
    union, both = ops.pair_union_boxes(boxes, valid, pairs, impl=impl)  # (P, L, 4), (P, L)
    union = np.asarray(union, dtype=np.float64).reshape(len(pairs), L, 4)
    both = np.asarray(both, dtype=bool).reshape(len(pairs), L)
    all_boxes = np.concatenate([boxes, union])  # (n + P, L, 4)
    t, ok = sample_positions(np.concatenate([valid, both]), k)  # (n + P, K)
    target = np.repeat(np.arange(n + len(pairs), dtype=np.int64), k).reshape(-1, k)[ok]  # (E,)
    tt = t[ok]  # (E,) frame within the segment
    rect = crop_rects(all_boxes[target, tt], width, height)  # (E, 4)
    key = np.concatenate([(tt + fstart)[:, None], rect], axis=1)  # (E, 5)
    if len(key):
        uniq, crop = np.unique(key, axis=0, return_inverse=True)  # sorted by frame, then rectangle
        crop = crop.reshape(-1)
    else:
        uniq, crop = np.zeros((0, 5), np.int64), np.zeros(0, np.int64)
    order = np.lexsort((target, crop))  # by crop, then target
    return SegmentPlan(
        n=n,
        num_pairs=len(pairs),
        frames=uniq[:, 0].astype(np.int64),
        rects=uniq[:, 1:].astype(np.int64),
        entry_crop=crop[order].astype(np.int64),
        entry_target=target[order],
        counts=ok.sum(1).astype(np.int64),
    )
