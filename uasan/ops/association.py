"""Greedy relational association: segment-level relation predictions → video-level relations (DESIGN §4).

Semantics are those of VidVRD-II (Shang et al., "Video Visual Relation Detection via Iterative Inference",
ACM MM 2021; https://github.com/xdshang/VidVRD-II) ``common/association.py: greedy_relation_association`` with
its ``VideoRelation`` (``common/relation.py``) and ``Trajectory`` (``common/trajectory.py``) helpers, down to the
float32 cubic IoU, NumPy's pairwise summation of volumes and Python's stable-sort tie order, so that both paths
here return exactly what the original returns on the same input.

``greedy_relation_association_ref`` restates the algorithm in plain Python/NumPy; ``greedy_relation_association``
dispatches to the C++ path (``csrc/association.cpp``), which takes flat arrays built in one pass.

Both take the official dicts or, as columns, :class:`SegmentRelations` (one array per field, the boxes of every
relation in one array), and return the official dicts or, with ``output="arrays"``, :class:`AssociationArrays`
(what the C++ path computes, handed over without building a Python object per box).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

import numpy as np

from uasan import _ext
from uasan.ops import _association_io as _io
from uasan.ops._association_io import AssociationArrays, SegmentRelations
from uasan.ops._common import resolve_impl

__all__ = [
    "AssociationArrays",
    "SegmentRelations",
    "greedy_relation_association",
    "greedy_relation_association_ref",
]

# NumPy >= 2 (NEP 50) compares a float32 with a Python float in float32; NumPy 1.x compares in float64. The C++
# path is told which threshold the comparison with the float32 cubic IoU sees.
_F32_COMPARES_IN_F32 = not bool(np.float32(0.1) > 0.1)
# CPython >= 3.12 sums floats with Neumaier compensation; earlier versions add left to right.
_COMPENSATED_SUM = sum([1.0, 1e-16, 1e-16]) != 1.0


# ----------------------------------------------------------------------------------------------------------------
# Reference path
# ----------------------------------------------------------------------------------------------------------------


def _volume(boxes: np.ndarray) -> float:
    """Inclusive-pixel volume, float64, summed by np.sum (pairwise) like VidVRD-II's ``_union``."""
    return float(np.sum((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)))


def _intersection(a: np.ndarray, b: np.ndarray) -> np.float32:
    """Intersection volume of aligned boxes like VidVRD-II's ``_intersect``: float32 coordinates and areas,
    accumulated frame by frame in float32 (cumsum, not the pairwise np.sum)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    w = (np.minimum(a[:, 2], b[:, 2]) + np.float32(1) - np.maximum(a[:, 0], b[:, 0])).clip(min=0)
    h = (np.minimum(a[:, 3], b[:, 3]) + np.float32(1) - np.maximum(a[:, 1], b[:, 1])).clip(min=0)
    return np.cumsum(w * h, dtype=np.float32)[-1]


class _Trajectory:
    """Boxes (T, 4) float64 over frames [start, end)."""

    __slots__ = ("start", "end", "boxes")

    def __init__(self, start: int, end: int, boxes: np.ndarray):
        self.start, self.end, self.boxes = start, end, boxes

    def during(self, start: int, end: int) -> np.ndarray:
        return self.boxes[start - self.start : end - self.start]

    def cubic_iou(self, other: _Trajectory, temporal_tolerance: float) -> np.float32 | float:
        """``Trajectory.cubic_intersection``: cubic IoU over the common frames; across a gap shorter than the
        tolerance, the IoU of the two boundary boxes; else 0.0. The ratio is rounded to float32."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        if start < end:
            a, b = self.during(start, end), other.during(start, end)
        elif start - end < temporal_tolerance:
            a, b = (self.boxes[-1:], other.boxes[:1]) if self.end <= other.start else (self.boxes[:1], other.boxes[-1:])
        else:
            return 0.0
        inter = float(_intersection(a, b))
        return np.float32(inter / max(_volume(a) + _volume(b) - inter, 1e-8))

    def enclose(self, other: _Trajectory) -> float:
        """``Trajectory.cubic_enclose``: intersection over the common frames / ``other``'s whole volume."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        if start >= end:
            return 0.0
        return float(_intersection(self.during(start, end), other.during(start, end))) / max(_volume(other.boxes), 1e-8)

    def join(self, other: _Trajectory) -> _Trajectory:
        """``Trajectory.join``: the mean box where both exist, either box where one exists, and across a gap
        the linear interpolation (np.interp) between the last box before and the first box after it."""
        start, end = min(self.start, other.start), max(self.end, other.end)
        boxes = np.empty((end - start, 4))
        boxes[self.start - start : self.end - start] = self.boxes
        boxes[other.start - start : other.end - start] = other.boxes
        lo, hi = max(self.start, other.start), min(self.end, other.end)
        if lo < hi:
            boxes[lo - start : hi - start] = (self.during(lo, hi) + other.during(lo, hi)) / 2
        elif hi < lo:
            first, second = (self, other) if self.end <= other.start else (other, self)
            frames = np.arange(first.end, second.start)
            for c in range(4):
                boxes[frames - start, c] = np.interp(
                    frames, [first.end - 1, second.start], [first.boxes[-1, c], second.boxes[0, c]]
                )
        return _Trajectory(start, end, boxes)


class _Relation:
    """A video relation under construction (``VideoRelation``): its triplet, the segment relation it started
    from, subject/object trajectories and the confidences of the segment relations merged into it."""

    __slots__ = ("triplet_id", "first", "sub", "obj", "confs")

    def __init__(self, triplet_id: int, first: _io.Parsed, sub: _Trajectory, obj: _Trajectory, score: float):
        self.triplet_id, self.first, self.sub, self.obj, self.confs = triplet_id, first, sub, obj, [score]

    def score(self) -> float:
        return sum(self.confs)

    def links(self, other: _Relation, threshold: float, temporal_tolerance: float) -> bool:
        """``VideoRelation.overlap``: subject cubic IoU > threshold, then object cubic IoU > threshold."""
        return (
            self.sub.cubic_iou(other.sub, temporal_tolerance) > threshold
            and self.obj.cubic_iou(other.obj, temporal_tolerance) > threshold
        )

    def encloses(self, other: _Relation, threshold: float) -> bool:
        return self.sub.enclose(other.sub) > threshold and self.obj.enclose(other.obj) > threshold

    def extend(self, other: _Relation) -> None:
        self.sub = self.sub.join(other.sub)
        self.obj = self.obj.join(other.obj)
        self.confs.append(other.score())

    def span(self) -> tuple[int, int]:
        """The common span of subject and object."""
        return max(self.sub.start, self.obj.start), min(self.sub.end, self.obj.end)

    def serialize(self) -> dict | None:
        """The prediction over the common span of subject and object; None when it is <= 1 frame."""
        start, end = self.span()
        if end - start <= 1:
            return None
        return {
            "triplet": list(self.first.relation["triplet"]),
            "score": float(self.score()),
            "duration": [start, end],
            "sub_traj": self.sub.during(start, end).tolist(),
            "obj_traj": self.obj.during(start, end).tolist(),
        }


def _checked_boxes(p: _io.Parsed) -> tuple[np.ndarray, np.ndarray]:
    """The subject and object boxes of a segment relation as checked float64 (T, 4) arrays."""
    (sb, se), (ob, oe) = p.sub_span, p.obj_span
    sub = _io.traj_boxes(p.relation["sub_traj"], f"{p.where}['sub_traj']", se - sb)
    obj = _io.traj_boxes(p.relation["obj_traj"], f"{p.where}['obj_traj']", oe - ob)
    return sub, obj


def _relation(p: _io.Parsed) -> _Relation:
    sub, obj = _checked_boxes(p)
    return _Relation(p.triplet_id, p, _Trajectory(*p.sub_span, sub), _Trajectory(*p.obj_span, obj), p.score)


def _check_output(output: Any) -> str:
    if output not in ("dicts", "arrays"):
        _io.fail(f"expected output to be 'dicts' or 'arrays', but got {output!r}")
    return output


def _associate_ref(relation_groups: Any, params: tuple) -> tuple[list[tuple[_Relation, dict]], tuple]:
    """The reference algorithm: ([(video relation, its official dict)] in output order, the distinct triplets)."""
    threshold, inference_topk, association_topk, nms, temporal_tolerance = params
    segments, triplets = _io.select_dicts(relation_groups, inference_topk)

    video_relations: list[_Relation] = []
    previous: list[_Relation] = []  # extended or created by the previous segment
    for segment in segments:
        previous.sort(key=_Relation.score, reverse=True)
        current = []
        for parsed in segment:
            this = _relation(parsed)
            match = next(
                (
                    r
                    for r in previous
                    if r.triplet_id == this.triplet_id and r.links(this, threshold, temporal_tolerance)
                ),
                None,
            )
            if match is None:
                video_relations.append(this)
                current.append(this)
            else:
                match.extend(this)
                previous.remove(match)
                current.append(match)
        previous = current

    results = [(r, out) for r in video_relations if (out := r.serialize()) is not None]
    results.sort(key=lambda item: item[1]["score"], reverse=True)
    results = results[:association_topk]
    if nms < 1:
        kept: list[tuple[_Relation, dict]] = []
        for r, out in results:
            if not any(k.triplet_id == r.triplet_id and k.encloses(r, nms) for k, _ in kept):
                kept.append((r, out))
        results = kept
    return results, triplets


def _ref_arrays(results: list[tuple[_Relation, dict]], triplets: tuple) -> AssociationArrays:
    """The reference's video relations as :class:`AssociationArrays`, built from its trajectories."""
    spans = [r.span() for r, _ in results]
    lengths = [e - b for b, e in spans]
    sub = [r.sub.during(*sp) for (r, _), sp in zip(results, spans, strict=True)]
    obj = [r.obj.during(*sp) for (r, _), sp in zip(results, spans, strict=True)]
    return AssociationArrays(
        origin=np.array([r.first.row for r, _ in results], dtype=np.int64),
        triplet=np.array([r.triplet_id for r, _ in results], dtype=np.int64),
        score=np.array([out["score"] for _, out in results], dtype=np.float64),
        duration=np.array(spans, dtype=np.int64).reshape(-1, 2),
        offsets=np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
        sub_boxes=np.concatenate(sub) if sub else np.zeros((0, 4)),
        obj_boxes=np.concatenate(obj) if obj else np.zeros((0, 4)),
        triplets=triplets,
    )


def greedy_relation_association_ref(
    relation_groups: Mapping | SegmentRelations,
    *,
    linkage_threshold: float = 0.5,
    inference_topk: int = 200,
    association_topk: int = 200,
    nms: float = 1.0,
    temporal_tolerance: float = 30,
    output: str = "dicts",
) -> list[dict] | AssociationArrays:
    """Greedy relational association, reference path (VidVRD-II ``greedy_relation_association``).

    Args:
        relation_groups: ``{(fstart, fend): [relation, ...]}`` with each segment relation a dict
            ``{"triplet": [s, p, o], "score", "duration": [b, e), "sub_traj": [[x1, y1, x2, y2] per frame],
            "obj_traj"}``; with ``"sub_duration"`` and ``"obj_duration"`` the trajectories follow those instead.
            Or the same as columns: :class:`SegmentRelations` (one video; relation rows grouped by segment).
        linkage_threshold: two relations link when their subjects' and then their objects' cubic IoU (inclusive
            pixels, float32) is ``> linkage_threshold``.
        inference_topk: relations kept per segment (highest scores first).
        association_topk: video relations returned.
        nms: when ``< 1``, a video relation is dropped if a higher-scored one of the same triplet encloses its
            subject and its object by more than ``nms`` (``cubic_enclose``).
        temporal_tolerance: trajectories ``g`` frames apart (``g < temporal_tolerance``) link on the IoU of their
            boundary boxes.
        output: ``"dicts"`` (the official format) or ``"arrays"`` (:class:`AssociationArrays`).

    Algorithm: segments are visited by start frame. Each keeps its top ``inference_topk`` relations by score
    (stable sort, descending). The video relations extended or created by the previous segment are sorted by
    their score (sum of their confidences, stable, descending); each new relation, in score order, extends the
    first of them with the same triplet that links to it (trajectories joined: mean over the overlap,
    interpolation across a gap; its confidence appended), which then leaves that list; otherwise it starts a new
    video relation. Finally every video relation is cut to the common span of its subject and object (dropped if
    that is <= 1 frame), sorted by score (stable), cut to ``association_topk`` and, if ``nms < 1``, greedily
    suppressed.

    Returns:
        ``[{"triplet", "score", "duration", "sub_traj", "obj_traj"}]`` in the official prediction format, highest
        score first, or the same as :class:`AssociationArrays`. Raises ``ValueError`` naming the offending argument
        and relation.
    """
    output = _check_output(output)
    params = _io.check_params(linkage_threshold, inference_topk, association_topk, nms, temporal_tolerance)
    if isinstance(relation_groups, SegmentRelations):
        rel = _io.check_relations(relation_groups)
        if output == "dicts" and rel.triplets is None:
            _io.fail("the dict output needs relations.triplets (the triplet of each id)")
        out = _ref_arrays(*_associate_ref(_io.to_groups(rel), params))
        out = out._replace(triplet=rel.triplet[out.origin], triplets=rel.triplets)
        return out.to_dicts() if output == "dicts" else out
    results, triplets = _associate_ref(relation_groups, params)
    return [out for _, out in results] if output == "dicts" else _ref_arrays(results, triplets)


# ----------------------------------------------------------------------------------------------------------------
# C++ path
# ----------------------------------------------------------------------------------------------------------------


def _flat_boxes(selected: list[_io.Parsed], total: int) -> np.ndarray:
    """Every selected relation's subject then object boxes as one checked (total, 4) float64 array, read in one
    pass: by the extension's reader for lists of Python floats, else by a single np.asarray over the flattened
    list. On any problem, re-checks relation by relation to name the first offending one, in the reference's
    order."""
    trajs = []
    for p in selected:
        trajs.append(p.relation["sub_traj"])
        trajs.append(p.relation["obj_traj"])
    boxes = _ext.ext().association_read_boxes(trajs, total)
    if boxes is not None:
        return boxes
    flat = [box for traj in trajs for box in traj]
    try:
        boxes = np.asarray(flat, dtype=np.float64).reshape(-1, 4) if flat else np.zeros((0, 4))
        ok = len(boxes) == len(flat) == total and bool(np.isfinite(boxes).all())
        ok = ok and not ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        for p in selected:
            _checked_boxes(p)
        _io.fail("expected the trajectories to hold [x1, y1, x2, y2] boxes")  # not reached: the loop names the culprit
    return boxes


def _run_cpp(segment_offsets, triplets, scores, spans, box_offsets, boxes, params) -> tuple[np.ndarray, ...]:
    """The C++ association on flat arrays in processing order: (origin, score, duration, offsets, sub, obj)."""
    threshold, _, association_topk, nms, temporal_tolerance = params
    if _F32_COMPARES_IN_F32:
        with np.errstate(over="ignore"):
            threshold_f32 = float(np.float32(threshold))
    else:
        threshold_f32 = threshold
    return _ext.ext().greedy_relation_association(
        segment_offsets,
        triplets,
        scores,
        spans,
        box_offsets,
        boxes,
        threshold,
        threshold_f32,
        temporal_tolerance,
        min(association_topk, 2**62),
        nms,
        _COMPENSATED_SUM,
    )


def _greedy_cpp(relation_groups: Mapping, params: tuple, output: str) -> list[dict] | AssociationArrays:
    # Only acyclic lists, tuples and dicts are built below, hundreds of thousands of them for a long video; the
    # cyclic garbage collector would rescan every live object (the input included) several times meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        segments, triplet_table = _io.select_dicts(relation_groups, params[1])
        selected = [p for segment in segments for p in segment]
        n = len(selected)
        segment_offsets = np.cumsum([0] + [len(s) for s in segments], dtype=np.int64)
        triplets = np.fromiter((p.triplet_id for p in selected), dtype=np.int64, count=n)
        scores = np.fromiter((p.score for p in selected), dtype=np.float64, count=n)
        spans = np.array([(*p.sub_span, *p.obj_span) for p in selected], dtype=np.int64).reshape(n, 4)
        box_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum((spans[:, 1] - spans[:, 0]) + (spans[:, 3] - spans[:, 2]), out=box_offsets[1:])
        boxes = _flat_boxes(selected, int(box_offsets[-1]))

        origin, score, duration, offsets, sub_boxes, obj_boxes = _run_cpp(
            segment_offsets, triplets, scores, spans, box_offsets, boxes, params
        )
        if output == "arrays":
            rows = np.fromiter((p.row for p in selected), dtype=np.int64, count=n)
            return AssociationArrays(
                rows[origin], triplets[origin], score, duration, offsets, sub_boxes, obj_boxes, triplet_table
            )
        sub_list, obj_list, offsets = sub_boxes.tolist(), obj_boxes.tolist(), offsets.tolist()
        return [
            {
                "triplet": list(selected[o].relation["triplet"]),
                "score": s,
                "duration": d,
                "sub_traj": sub_list[offsets[k] : offsets[k + 1]],
                "obj_traj": obj_list[offsets[k] : offsets[k + 1]],
            }
            for k, (o, s, d) in enumerate(zip(origin.tolist(), score.tolist(), duration.tolist(), strict=True))
        ]
    finally:
        if gc_was_enabled:
            gc.enable()


def _greedy_cpp_arrays(relations: SegmentRelations, params: tuple) -> AssociationArrays:
    """The C++ path on columns: the selection and the box gather are NumPy, with no Python object per relation."""
    rel = _io.check_relations(relations)
    rows, segment_offsets = _io.select_rows(rel, params[1])  # (R',), (S + 1,)
    duration = rel.duration[rows]  # (R', 2)
    if len(rows) == len(rel.triplet) and (rows == np.arange(len(rows))).all():  # in order already, nothing cut
        boxes, box_offsets = rel.boxes, rel.box_offsets
    else:
        lengths = 2 * (duration[:, 1] - duration[:, 0])  # subject + object boxes of each relation
        boxes = rel.boxes[_io.ranges(rel.box_offsets[rows], lengths)]
        box_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    triplets = rel.triplet[rows]
    origin, score, dur, offsets, sub_boxes, obj_boxes = _run_cpp(
        segment_offsets, triplets, rel.score[rows], np.concatenate([duration, duration], axis=1), box_offsets,
        boxes, params,
    )  # fmt: skip
    return AssociationArrays(rows[origin], triplets[origin], score, dur, offsets, sub_boxes, obj_boxes, rel.triplets)


def greedy_relation_association(
    relation_groups: Mapping | SegmentRelations,
    *,
    linkage_threshold: float = 0.5,
    inference_topk: int = 200,
    association_topk: int = 200,
    nms: float = 1.0,
    temporal_tolerance: float = 30,
    impl: str = "auto",
    output: str = "dicts",
) -> list[dict] | AssociationArrays:
    """Greedy relational association of segment relations into video relations (see
    :func:`greedy_relation_association_ref` for the arguments and the algorithm).

    ``relation_groups``: the official dicts, or :class:`SegmentRelations` (columns). ``output``: ``"dicts"`` (the
    official format; from columns it needs ``SegmentRelations.triplets``) or ``"arrays"``
    (:class:`AssociationArrays`, without a Python object per box). ``impl``: ``"auto"`` (C++ when the extension is
    built), ``"cpp"``, or ``"ref"`` / ``"torch"`` (both the pure-Python reference). Every path returns exactly
    VidVRD-II's output on the same input.
    """
    path = resolve_impl(impl, _io.OP, ("cpp", "ref", "torch"), fallback="ref")
    kwargs = {
        "linkage_threshold": linkage_threshold,
        "inference_topk": inference_topk,
        "association_topk": association_topk,
        "nms": nms,
        "temporal_tolerance": temporal_tolerance,
    }
    if path != "cpp":
        return greedy_relation_association_ref(relation_groups, **kwargs, output=output)
    output = _check_output(output)
    params = _io.check_params(**kwargs)
    if isinstance(relation_groups, SegmentRelations):
        if output == "dicts" and relation_groups.triplets is None:
            _io.fail("the dict output needs relations.triplets (the triplet of each id)")
        out = _greedy_cpp_arrays(relation_groups, params)
        return out.to_dicts() if output == "dicts" else out
    return _greedy_cpp(relation_groups, params, output)
