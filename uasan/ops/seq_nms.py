"""Seq-NMS: class-agnostic trajectory generation from per-frame detections.

Default semantics are those of VidVRD-II ``video_object_detection/seq_nms.py`` (Shang et al.; Seq-NMS after
Han et al., "Seq-NMS for Video Object Detection", 2016), track for track, index for index, ties included:

1. **Links.** Box ``i`` of frame ``f`` links to box ``j`` of frame ``f + 1`` when their IoU is ``>= link_iou``
   (and, when ``labels`` are given, their labels are equal). The IoU is that of VidVRD-II
   ``compute_overlap.pyx``: intersection width and height must both be strictly positive, else the IoU is 0;
   continuous pixels (width = x2 − x1) unless ``plus_one=True``. Links are computed once and never change
   (``suppress="zero"``).
2. **Dynamic programming** from the last frame back: ``best[f, i] = score[f, i] + max_j best[f + 1, j]`` over
   the boxes ``j`` that box ``i`` links to (the first maximal ``j`` on ties), or ``score[f, i]`` when it links to
   none.
3. **Roots.** A path may start at any box of frame 0, and at a box of a later frame only when no box of the
   previous frame links to it. The best path is the root with the largest ``best`` — the first frame wins ties,
   then the first box — provided that value is strictly above 0.
4. **Stop** when there is no such root or its path has length 1; else **emit**
   ``Track(start_frame, box_indices, score)`` with ``score`` the path's summed (current) score.
5. **Suppress**: in every frame of the path, every box whose IoU with the path box is ``>= suppress_iou``
   (the path box included) gets score 0; links stay, so later paths may run through suppressed boxes. Repeat.

Options beyond VidVRD-II:

* ``rescore``: which score a track reports. ``"none"`` (default): the summed score of step 4, VidVRD-II.
  ``"avg"`` / ``"max"`` (Han et al. 2016 rescoring): the mean (sum in frame order divided by the length) /
  the maximum of the *input* scores of the track's boxes, i.e. the scores given to the op, before any
  suppression. Rescoring changes only the reported score: the path boxes are suppressed right after, so the
  selection of later tracks is the same for every ``rescore``.
* ``suppress="remove"`` (Han et al.): suppressed boxes leave the graph instead of dropping to score 0: they no
  longer link, are never roots and are never part of a path; a box whose only incoming links came from removed
  boxes becomes a root.

Inputs. ``boxes`` (F, B, 4) ``[x1, y1, x2, y2]``, ``scores`` (F, B), ``labels`` None or (F, B) integers; NumPy
arrays or CPU tensors. A score of −inf marks an absent box: it never links, is never suppressed to 0 and never
appears in a track, and its coordinates are ignored (they may be anything, NaN included). Ragged per-frame lists
(``boxes`` a list of F arrays (B_f, 4), ``scores`` F arrays (B_f,), ``labels`` likewise) are padded once to that
form; ``box_indices`` are indices within the frame in both forms. Boxes are compared in float64 and scores are
summed in float64 whatever the input dtype (VidVRD-II casts boxes to float64 but sums scores in their own dtype).

Two deliberate differences from VidVRD-II, neither visible on its valid inputs: empty inputs (F = 0 or B = 0)
return ``[]`` where VidVRD-II raises, and a path box is always suppressed even when its IoU with itself is not 1
(zero-area boxes, which can only be linked with ``link_iou=0``, or areas overflowing float64); there VidVRD-II
can select the same path forever.

Paths: ``seq_nms_ref`` is the reference, a plain re-statement of the steps above (NumPy for the IoU matrices,
Python loops for the rest). ``seq_nms(..., impl="cpp")`` is ``csrc/seq_nms.cpp``: links as CSR built once, the
DP over flat arrays re-run only on the frames a suppression can change, the GIL released. ``impl="torch"`` is
the reference too (this op has no tensor path).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from uasan import _ext
from uasan.ops._common import check_shape, float_array, int_array, resolve_impl, shape_str

__all__ = ["Track", "seq_nms", "seq_nms_ref"]

_OP = "seq_nms"
_IMPLS = ("cpp", "ref", "torch")
_RESCORE = ("none", "avg", "max")
_SUPPRESS = ("zero", "remove")


class Track(NamedTuple):
    """One Seq-NMS trajectory: frames ``[start_frame, start_frame + len(box_indices))``, one box index per frame
    (the index within its frame), and its score (see ``rescore``)."""

    start_frame: int
    box_indices: np.ndarray  # (T,) int64
    score: float


# ----------------------------------------------------------------------------------------------------------------
# Input checks and conversion (shared by both paths)
# ----------------------------------------------------------------------------------------------------------------


def _check_options(link_iou: Any, suppress_iou: Any, rescore: Any, suppress: Any, plus_one: Any) -> tuple[float, float]:
    thresholds = []
    for name, value in (("link_iou", link_iou), ("suppress_iou", suppress_iou)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValueError(f"{_OP}: expected {name} to be a number in [0, 1], but got {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{_OP}: expected {name} in [0, 1], but got {value!r}")
        thresholds.append(float(value))
    if not isinstance(rescore, str) or rescore not in _RESCORE:
        raise ValueError(f"{_OP}: expected rescore to be one of {_RESCORE}, but got {rescore!r}")
    if not isinstance(suppress, str) or suppress not in _SUPPRESS:
        raise ValueError(f"{_OP}: expected suppress to be one of {_SUPPRESS}, but got {suppress!r}")
    if not isinstance(plus_one, (bool, np.bool_)):
        raise ValueError(f"{_OP}: expected plus_one to be a bool, but got {plus_one!r}")
    return thresholds[0], thresholds[1]


def _frame_count(seq: Any, name: str, frames: int) -> None:
    try:
        n = len(seq)
    except TypeError:
        raise ValueError(
            f"{_OP}: expected {name} to be a sequence of {frames} per-frame arrays like boxes, "
            f"but got {type(seq).__name__}"
        ) from None
    if n != frames:
        raise ValueError(f"{_OP}: expected {name} to hold F = {frames} frames like boxes, but got {n}")


def _vector(x: Any, name: str, size: int, frame: int, integer: bool) -> np.ndarray:
    arr = int_array(x, _OP, name) if integer else float_array(x, _OP, name)
    check_shape(arr, _OP, name, (size,), f"({size},) matching boxes[{frame}]")
    return arr


def _from_frames(boxes: Any, scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pads ragged per-frame lists to (F, B_max, 4) boxes, (F, B_max) scores (−inf = absent) and labels."""
    frames = len(boxes)
    _frame_count(scores, "scores", frames)
    if labels is not None:
        _frame_count(labels, "labels", frames)
    per_frame = []
    for f in range(frames):
        b = float_array(boxes[f], _OP, f"boxes[{f}]")
        if b.ndim == 1 and b.size == 0:  # an empty frame written as []
            b = b.reshape(0, 4)
        check_shape(b, _OP, f"boxes[{f}]", (None, 4), f"(B_{f}, 4)")
        s = _vector(scores[f], f"scores[{f}]", b.shape[0], f, integer=False)
        lab = None if labels is None else _vector(labels[f], f"labels[{f}]", b.shape[0], f, integer=True)
        per_frame.append((b, s, lab))
    width = max((b.shape[0] for b, _, _ in per_frame), default=0)
    boxes_p = np.zeros((frames, width, 4), dtype=np.float64)
    scores_p = np.full((frames, width), -np.inf, dtype=np.float64)
    labels_p = None if labels is None else np.zeros((frames, width), dtype=np.int64)
    for f, (b, s, lab) in enumerate(per_frame):
        boxes_p[f, : len(b)] = b
        scores_p[f, : len(s)] = s
        if labels_p is not None:
            labels_p[f, : len(lab)] = lab
    return boxes_p, scores_p, labels_p


def _prepare(boxes: Any, scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated, C-contiguous float64 boxes (F, B, 4), float64 scores (F, B) and int64 labels (F, B) or None."""
    if isinstance(boxes, (list, tuple)):
        b, s, lab = _from_frames(boxes, scores, labels)
    else:
        b = float_array(boxes, _OP, "boxes")
        check_shape(b, _OP, "boxes", (None, None, 4), "(F, B, 4)")
        fb = b.shape[:2]
        s = float_array(scores, _OP, "scores")
        check_shape(s, _OP, "scores", fb, f"(F, B) = {shape_str(fb)} matching boxes")
        lab = None
        if labels is not None:
            lab = int_array(labels, _OP, "labels")
            check_shape(lab, _OP, "labels", fb, f"(F, B) = {shape_str(fb)} matching boxes")
    b = np.ascontiguousarray(b, dtype=np.float64)
    s = np.ascontiguousarray(s, dtype=np.float64)
    lab = None if lab is None else np.ascontiguousarray(lab, dtype=np.int64)

    def where(mask: np.ndarray) -> str:
        f, i = np.argwhere(mask)[0]
        return f"frame {f}, box {i}"

    if np.isnan(s).any():
        raise ValueError(f"{_OP}: expected scores without NaN, but got NaN at {where(np.isnan(s))}")
    if (s == np.inf).any():
        raise ValueError(
            f"{_OP}: expected finite scores (-inf marks an absent box), but got inf at {where(s == np.inf)}"
        )
    present = s > -np.inf
    bad = present & ~np.isfinite(b).all(axis=-1)
    if bad.any():
        f, i = np.argwhere(bad)[0]
        raise ValueError(
            f"{_OP}: expected boxes to hold finite coordinates, but the box at frame {f}, box {i} is {b[f, i].tolist()}"
        )
    with np.errstate(invalid="ignore"):
        bad = present & ((b[..., 2] < b[..., 0]) | (b[..., 3] < b[..., 1]))
    if bad.any():
        f, i = np.argwhere(bad)[0]
        raise ValueError(
            f"{_OP}: expected boxes with x2 >= x1 and y2 >= y1, but the box at frame {f}, box {i} is {b[f, i].tolist()}"
        )
    return b, s, lab


# ----------------------------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------------------------


def _overlaps(a: np.ndarray, b: np.ndarray, off: float) -> np.ndarray:
    """IoU (N, M) of a (N, 4) against b (M, 4) with the arithmetic of VidVRD-II ``compute_overlap.pyx``:
    0 unless the intersection's width and height are both > 0; union = (area_a + area_b) − intersection."""
    with np.errstate(all="ignore"):  # huge coordinates overflow exactly as in the C++ path
        area_a = (a[:, 2] - a[:, 0] + off) * (a[:, 3] - a[:, 1] + off)
        area_b = (b[:, 2] - b[:, 0] + off) * (b[:, 3] - b[:, 1] + off)
        iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + off
        ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + off
        inter = iw * ih
        iou = inter / ((area_a[:, None] + area_b[None, :]) - inter)
    return np.where((iw > 0) & (ih > 0), iou, 0.0)


def _seq_nms_python(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray | None,
    link_iou: float,
    suppress_iou: float,
    rescore: str,
    suppress: str,
    plus_one: bool,
) -> list[Track]:
    frames, width = scores.shape
    tracks: list[Track] = []
    if frames < 2 or width == 0:
        return tracks
    off = 1.0 if plus_one else 0.0
    alive = scores > -np.inf  # present and not removed
    boxes = np.where(alive[..., None], boxes, 0.0)  # absent boxes' coordinates are ignored
    current = scores.copy()  # scores after suppression

    # Step 1: links[f][i] = the boxes of frame f + 1 that box i of frame f links to, ascending.
    links = []
    for f in range(frames - 1):
        linked = (_overlaps(boxes[f], boxes[f + 1], off) >= link_iou) & alive[f][:, None] & alive[f + 1][None, :]
        if labels is not None:
            linked &= labels[f][:, None] == labels[f + 1][None, :]
        links.append([np.flatnonzero(row).tolist() for row in linked])

    while True:
        # Step 2: best[f, i] = maximum summed score of a path starting at box i of frame f; nxt = its next box.
        best = np.full((frames, width), -np.inf)
        nxt = np.full((frames, width), -1, dtype=np.int64)
        for f in reversed(range(frames)):
            for i in range(width):
                if not alive[f, i]:
                    continue
                targets = [j for j in links[f][i] if alive[f + 1, j]] if f + 1 < frames else []
                if targets:
                    j = max(targets, key=best[f + 1].__getitem__)  # max() keeps the first maximal item
                    best[f, i] = current[f, i] + best[f + 1, j]
                    nxt[f, i] = j
                else:
                    best[f, i] = current[f, i]

        # Step 3: roots are the boxes of frame 0 and the boxes no alive box of the previous frame links to.
        has_incoming = np.zeros((frames, width), dtype=bool)
        for f in range(frames - 1):
            for i in range(width):
                if alive[f, i]:
                    has_incoming[f + 1, links[f][i]] = True
        start, best_score = None, 0.0
        for f in range(frames):
            roots = [i for i in range(width) if alive[f, i] and not has_incoming[f, i]]
            if roots:
                i = max(roots, key=best[f].__getitem__)
                if best[f, i] > best_score:  # strict: an earlier frame wins a tie
                    start, best_score = (f, i), best[f, i]

        # Step 4: stop, or emit the path.
        if start is None:
            break
        f0, i = start
        path = [i]
        while nxt[f0 + len(path) - 1, path[-1]] >= 0:
            path.append(int(nxt[f0 + len(path) - 1, path[-1]]))
        if len(path) <= 1:
            break
        inputs = [scores[f0 + t, p] for t, p in enumerate(path)]
        if rescore == "avg":
            score = sum(inputs) / len(path)
        elif rescore == "max":
            score = max(inputs)
        else:
            score = best_score
        tracks.append(Track(f0, np.array(path, dtype=np.int64), float(score)))

        # Step 5: suppress the path boxes and their same-frame neighbours.
        for t, p in enumerate(path):
            f = f0 + t
            hit = (_overlaps(boxes[f, p][None], boxes[f], off)[0] >= suppress_iou) & alive[f]
            hit[p] = True
            if suppress == "zero":
                current[f, hit] = 0.0
            else:
                alive[f, hit] = False
    return tracks


def seq_nms_ref(
    boxes: Any,
    scores: Any,
    labels: Any = None,
    *,
    link_iou: float = 0.5,
    suppress_iou: float = 0.3,
    rescore: str = "none",
    suppress: str = "zero",
    plus_one: bool = False,
) -> list[Track]:
    """Seq-NMS reference: a plain re-statement of VidVRD-II ``video_object_detection/seq_nms.py``.

    Links adjacent-frame boxes with IoU >= ``link_iou`` (equal labels if given), finds the maximum-sum path by
    dynamic programming from the last frame back, emits it, sets the score of every same-frame box with IoU >=
    ``suppress_iou`` to a path box to 0 (``suppress="remove"``: drops it from the graph), and repeats until the
    best path has length <= 1 or score <= 0. See the module docstring for the exact rules (ties, roots, options).

    Args:
        boxes: (F, B, 4) ``[x1, y1, x2, y2]``, or a list of F arrays (B_f, 4).
        scores: (F, B) with −inf for absent boxes, or a list of F arrays (B_f,).
        labels: None, or (F, B) / a list of F arrays (B_f,) of integers; only equal labels link.
        link_iou, suppress_iou: thresholds in [0, 1].
        rescore: ``"none"`` (summed score), ``"avg"`` or ``"max"`` (of the boxes' input scores).
        suppress: ``"zero"`` or ``"remove"``.
        plus_one: inclusive pixels (width = x2 − x1 + 1) for both IoUs.

    Returns:
        The tracks in the order they were found.
    """
    thresholds = _check_options(link_iou, suppress_iou, rescore, suppress, plus_one)
    b, s, lab = _prepare(boxes, scores, labels)
    return _seq_nms_python(b, s, lab, *thresholds, rescore, suppress, bool(plus_one))


def seq_nms(
    boxes: Any,
    scores: Any,
    labels: Any = None,
    *,
    link_iou: float = 0.5,
    suppress_iou: float = 0.3,
    rescore: str = "none",
    suppress: str = "zero",
    plus_one: bool = False,
    impl: str = "auto",
) -> list[Track]:
    """Seq-NMS trajectories from per-frame detections; same arguments and result as :func:`seq_nms_ref`.

    ``impl``: ``"auto"`` (C++ when the extension is built, else the reference), ``"cpp"``, ``"ref"`` or
    ``"torch"`` (the reference: this op has no tensor path).
    """
    path = resolve_impl(impl, _OP, _IMPLS, fallback="ref")
    link, supp = _check_options(link_iou, suppress_iou, rescore, suppress, plus_one)
    b, s, lab = _prepare(boxes, scores, labels)
    if path != "cpp":
        return _seq_nms_python(b, s, lab, link, supp, rescore, suppress, bool(plus_one))
    starts, lengths, indices, track_scores = _ext.ext().seq_nms(
        b, s, lab, link, supp, rescore, suppress, bool(plus_one)
    )
    per_track = np.split(indices, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return [
        Track(start, idx, score)
        for start, idx, score in zip(starts.tolist(), per_track, track_scores.tolist(), strict=True)
    ]
