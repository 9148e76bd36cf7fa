"""Segment trajectories: detections → class-agnostic Seq-NMS tracklets, and ground-truth trajectories, as proposals.

Detected (the RePro / VidVRD-II recipe): per 30-frame segment, the detections of its frames go through
``uasan.ops.seq_nms`` (link IoU 0.5; suppression IoU 0.3, the op's and VidVRD-II ``seq_nms``'s default; VidVRD-II's
``object_tracklet_proposal.py`` runs it class-aware with 0.7, ``class_aware=True, suppress_iou=0.7`` here, without
its gap filling). Every track is kept when it has at least ``MIN_LENGTH`` (15) boxes and its largest box width and
largest height (x2 − x1, y2 − y1) are at least ``MIN_SIZE`` (5) pixels: RePro's filter, the one
:func:`uasan.data.read_proposals` applies. Entries follow Seq-NMS's emission order; ``score`` is the track's
Seq-NMS score (``rescore`` as the op), ``label`` the majority label of its boxes when the detections have labels.

Ground truth: every annotated object with a box in the segment, from its first to its last box there (gaps
interpolated, :meth:`uasan.data.Annotation.segment_trajectories`), in the annotation's object order, with
``score`` −1, ``label`` and ``class`` its category and ``tid`` its track id (the synthetic world writes the same).
Boxes are rounded to 0.01 px.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from uasan import ops
from uasan.data import Annotation
from uasan.data.proposals import MIN_LENGTH, MIN_SIZE
from uasan.extract.detections import Detections

__all__ = ["dump_proposals", "gt_tracklets", "segment_tracklets"]


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd) + 0.0  # + 0.0 turns -0.0 into 0.0


def _boxes_json(b: np.ndarray) -> list[list[float]]:
    return [[_r(v) for v in row] for row in np.asarray(b, dtype=np.float64)]


def segment_tracklets(
    dets: Detections,
    fstart: int,
    fend: int,
    *,
    link_iou: float = 0.5,
    suppress_iou: float = 0.3,
    class_aware: bool = False,
    rescore: str = "none",
    min_length: int = MIN_LENGTH,
    min_size: float = MIN_SIZE,
    max_tracklets: int | None = None,
    impl: str = "auto",
) -> list[dict[str, Any]]:
    """Proposals of segment ``[fstart, fend)`` (frames relative to ``fstart``) from a video's detections.

    Returns the RePro proposal list ``[{fstart, score, bboxes, label?}]`` (see the module docstring for the
    recipe); ``max_tracklets`` keeps the first that many after filtering (Seq-NMS's order, best first).
    """
    if max_tracklets is not None and max_tracklets < 1:
        raise ValueError(f"max_tracklets: expected None or >= 1, got {max_tracklets}")
    boxes, scores, codes, names = dets.window(fstart, fend)  # (L, B, 4), (L, B), (L, B) | None
    if boxes.shape[1] == 0:
        return []
    tracks = ops.seq_nms(
        boxes,
        scores,
        codes if class_aware else None,
        link_iou=link_iou,
        suppress_iou=suppress_iou,
        rescore=rescore,
        impl=impl,
    )
    out: list[dict[str, Any]] = []
    for tr in tracks:
        idx = np.asarray(tr.box_indices, dtype=np.int64)  # (T,)
        frames = np.arange(tr.start_frame, tr.start_frame + len(idx))
        b = boxes[frames, idx]  # (T, 4)
        if len(idx) < min_length:
            continue
        if (b[:, 2] - b[:, 0]).max() < min_size or (b[:, 3] - b[:, 1]).max() < min_size:
            continue
        entry: dict[str, Any] = {"fstart": int(tr.start_frame), "score": _r(tr.score, 4), "bboxes": _boxes_json(b)}
        if codes is not None:
            entry["label"] = names[int(np.bincount(codes[frames, idx]).argmax())]  # majority; ties: first name
        out.append(entry)
        if max_tracklets is not None and len(out) >= max_tracklets:
            break
    return out


def gt_tracklets(ann: Annotation, fstart: int, fend: int) -> list[dict[str, Any]]:
    """Ground-truth proposals of segment ``[fstart, fend)``: ``[{fstart, score: -1, bboxes, label, class, tid}]``."""
    rows, starts, boxes = ann.segment_trajectories(fstart, fend)
    return [
        {
            "fstart": int(s),
            "score": -1.0,
            "bboxes": _boxes_json(b),
            "label": ann.categories[k],
            "class": ann.categories[k],
            "tid": int(ann.tids[k]),
        }
        for k, s, b in zip(rows.tolist(), starts.tolist(), boxes, strict=True)
    ]


def dump_proposals(entries: list[dict[str, Any]]) -> str:
    """The proposal file text (compact, sorted keys: the same entries give the same bytes)."""
    return json.dumps(entries, sort_keys=True, separators=(",", ":")) + "\n"
