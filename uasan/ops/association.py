"""Greedy relational association: segment-level relation predictions → video-level relations (DESIGN §4).

Semantics are those of VidVRD-II (Shang et al., "Video Visual Relation Detection via Iterative Inference",
ACM MM 2021; https://github.com/xdshang/VidVRD-II) ``common/association.py: greedy_relation_association`` with
its ``VideoRelation`` (``common/relation.py``) and ``Trajectory`` (``common/trajectory.py``) helpers, down to the
float32 cubic IoU, NumPy's pairwise summation of volumes and Python's stable-sort tie order, so that both paths
here return exactly what the original returns on the same input.

``greedy_relation_association_ref`` restates the algorithm in plain Python/NumPy; ``greedy_relation_association``
dispatches to the C++ path (``csrc/association.cpp``), which takes flat arrays built in one pass.
"""

from __future__ import annotations

import gc
import math
import numbers
from collections.abc import Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, NoReturn

import numpy as np

from uasan import _ext
from uasan.ops._common import check_boxes, resolve_impl

__all__ = ["greedy_relation_association", "greedy_relation_association_ref"]

_OP = "greedy_relation_association"

# Frame numbers stay below 2**53 so that they are exact as float64 (np.interp) and never overflow int64.
_MAX_FRAME = 2**53

# NumPy >= 2 (NEP 50) compares a float32 with a Python float in float32; NumPy 1.x compares in float64. The C++
# path is told which threshold the comparison with the float32 cubic IoU sees.
_F32_COMPARES_IN_F32 = not bool(np.float32(0.1) > 0.1)
# CPython >= 3.12 sums floats with Neumaier compensation; earlier versions add left to right.
_COMPENSATED_SUM = sum([1.0, 1e-16, 1e-16]) != 1.0


# ----------------------------------------------------------------------------------------------------------------
# Argument checks shared by both paths
# ----------------------------------------------------------------------------------------------------------------


def _fail(msg: str) -> NoReturn:
    raise ValueError(f"{_OP}: {msg}")


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_params(linkage_threshold, inference_topk, association_topk, nms, temporal_tolerance) -> tuple:
    reals = (("linkage_threshold", linkage_threshold), ("nms", nms), ("temporal_tolerance", temporal_tolerance))
    for name, value in reals:
        if not _is_real(value) or not math.isfinite(value):
            _fail(f"expected {name} to be a finite real number, but got {value!r}")
    for name, value in (("inference_topk", inference_topk), ("association_topk", association_topk)):
        if not _is_int(value) or value <= 0:
            _fail(f"expected {name} to be a positive integer, but got {value!r}")
    return float(linkage_threshold), int(inference_topk), int(association_topk), float(nms), float(temporal_tolerance)


def _frame(x: Any, what: str) -> int:
    if not _is_int(x) or not 0 <= x < _MAX_FRAME:
        _fail(f"expected {what} to hold integer frame numbers in [0, 2**53), but got {x!r}")
    return int(x)


def _span(rel: Mapping, field: str, where: str) -> tuple[int, int]:
    value = rel[field]
    what = f"{where}[{field!r}]"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        _fail(f"expected {what} to be [begin, end], two integer frame numbers, but got {value!r}")
    b, e = _frame(value[0], what), _frame(value[1], what)
    if b >= e:
        _fail(f"expected {what} to be [begin, end) with begin < end, but got {[b, e]}")
    return b, e


class _Parsed(NamedTuple):
    """A checked segment relation: where it is, the dict itself and its parsed fields."""

    segment: str  # "relation_groups[(fstart, fend)]"
    index: int  # position in its segment's list
    relation: Mapping
    triplet_id: int  # interned triplet: equal ids <=> equal triplets
    score: float
    sub_span: tuple[int, int]
    obj_span: tuple[int, int]

    @property
    def where(self) -> str:
        return f"{self.segment}[{self.index}]"


def _parse_relation_checked(rel: Any, where: str, triplet_ids: dict) -> tuple:
    """Checks the structure of one segment relation (not its box values); returns (triplet id, score, spans)."""
    if not isinstance(rel, Mapping):
        _fail(f"expected {where} to be a dict, but got {type(rel).__name__}")
    has_sub, has_obj = "sub_duration" in rel, "obj_duration" in rel
    required = ("triplet", "score", "sub_traj", "obj_traj") + (("duration",) if not (has_sub or has_obj) else ())
    for field in required:
        if field not in rel:
            _fail(f"{where} is missing the field {field!r}")
    if has_sub != has_obj:
        given = "sub_duration" if has_sub else "obj_duration"
        _fail(f"{where} has {given} but not the other one; give both sub_duration and obj_duration or neither")
    triplet = rel["triplet"]
    if not isinstance(triplet, (list, tuple)) or len(triplet) != 3:
        _fail(f"expected {where}['triplet'] to be [subject, predicate, object], but got {triplet!r}")
    try:
        tid = triplet_ids.setdefault(tuple(triplet), len(triplet_ids))
    except TypeError:
        _fail(f"expected {where}['triplet'] to hold hashable labels, but got {triplet!r}")
    score = rel["score"]
    if not _is_real(score) or not math.isfinite(score):
        _fail(f"expected {where}['score'] to be a finite real number, but got {score!r}")
    if has_sub:
        sub_span, obj_span = _span(rel, "sub_duration", where), _span(rel, "obj_duration", where)
    else:
        sub_span = obj_span = _span(rel, "duration", where)
    for field, (b, e), dur in (("sub_traj", sub_span, "sub_duration"), ("obj_traj", obj_span, "obj_duration")):
        traj = rel[field]
        if isinstance(traj, (str, bytes)) or not hasattr(traj, "__len__"):
            _fail(f"expected {where}[{field!r}] to be a list of [x1, y1, x2, y2] boxes, but got {type(traj).__name__}")
        dur = dur if has_sub else "duration"
        if len(traj) != e - b:
            _fail(f"{where}[{field!r}] has {len(traj)} boxes but its {dur} [{b}, {e}) spans {e - b} frames")
    return tid, float(score), sub_span, obj_span


def _parse_relation(rel: Any, segment: str, j: int, triplet_ids: dict) -> tuple:
    """_parse_relation_checked with a fast path for the common, valid case: a dict with Python-typed fields."""
    if type(rel) is dict and "sub_duration" not in rel and "obj_duration" not in rel:
        triplet, score, dur = rel.get("triplet"), rel.get("score"), rel.get("duration")
        sub, obj = rel.get("sub_traj"), rel.get("obj_traj")
        if (
            type(triplet) in (list, tuple)
            and len(triplet) == 3
            and type(score) is float
            and math.isfinite(score)
            and type(dur) in (list, tuple)
            and len(dur) == 2
            and type(sub) in (list, tuple)
            and type(obj) in (list, tuple)
        ):
            b, e = dur
            if type(b) is int and type(e) is int and 0 <= b < e < _MAX_FRAME and len(sub) == e - b == len(obj):
                try:
                    tid = triplet_ids.setdefault(tuple(triplet), len(triplet_ids))
                except TypeError:  # an unhashable label: the checked path names it
                    pass
                else:
                    return tid, score, (b, e), (b, e)
    return _parse_relation_checked(rel, f"{segment}[{j}]", triplet_ids)


def _select(relation_groups: Any, inference_topk: int) -> list[list[_Parsed]]:
    """Checks relation_groups and returns its segments in processing order (by start frame, stable), each as the
    list of its top ``inference_topk`` relations by score (stable, descending)."""
    if not isinstance(relation_groups, Mapping):
        _fail(
            "expected relation_groups to be a dict mapping (fstart, fend) to lists of relations, "
            f"but got {type(relation_groups).__name__}"
        )
    triplet_ids: dict = {}
    segments = []
    for key, rels in relation_groups.items():
        if not isinstance(key, tuple) or len(key) != 2 or not all(_is_int(k) for k in key):
            _fail(f"expected relation_groups keys to be (fstart, fend) integer pairs, but got {key!r}")
        fstart, fend = int(key[0]), int(key[1])
        if not 0 <= fstart < fend:
            _fail(f"expected relation_groups keys (fstart, fend) with 0 <= fstart < fend, but got {(fstart, fend)}")
        seg = f"relation_groups[({fstart}, {fend})]"
        if not isinstance(rels, (list, tuple)):
            _fail(f"expected {seg} to be a list of relations, but got {type(rels).__name__}")
        parsed = [_Parsed(seg, j, rel, *_parse_relation(rel, seg, j, triplet_ids)) for j, rel in enumerate(rels)]
        parsed.sort(key=attrgetter("score"), reverse=True)
        segments.append((fstart, parsed[:inference_topk]))
    segments.sort(key=itemgetter(0))
    return [rels for _, rels in segments]


def _traj_boxes(traj: Any, what: str, length: int) -> np.ndarray:
    """One trajectory's boxes as a checked float64 (length, 4) array."""
    try:
        boxes = np.asarray(traj, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        _fail(f"expected {what} to be a list of [x1, y1, x2, y2] boxes, but could not read it as numbers ({exc})")
    if boxes.shape != (length, 4):
        _fail(f"expected {what} of shape ({length}, 4), but got {boxes.shape}")
    check_boxes(boxes, _OP, what)
    return boxes


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

    def __init__(self, triplet_id: int, first: Mapping, sub: _Trajectory, obj: _Trajectory, score: float):
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

    def serialize(self) -> dict | None:
        """The prediction over the common span of subject and object; None when it is <= 1 frame."""
        start, end = max(self.sub.start, self.obj.start), min(self.sub.end, self.obj.end)
        if end - start <= 1:
            return None
        return {
            "triplet": list(self.first["triplet"]),
            "score": float(self.score()),
            "duration": [start, end],
            "sub_traj": self.sub.during(start, end).tolist(),
            "obj_traj": self.obj.during(start, end).tolist(),
        }


def _checked_boxes(p: _Parsed) -> tuple[np.ndarray, np.ndarray]:
    """The subject and object boxes of a segment relation as checked float64 (T, 4) arrays."""
    (sb, se), (ob, oe) = p.sub_span, p.obj_span
    sub = _traj_boxes(p.relation["sub_traj"], f"{p.where}['sub_traj']", se - sb)
    obj = _traj_boxes(p.relation["obj_traj"], f"{p.where}['obj_traj']", oe - ob)
    return sub, obj


def _relation(p: _Parsed) -> _Relation:
    sub, obj = _checked_boxes(p)
    return _Relation(p.triplet_id, p.relation, _Trajectory(*p.sub_span, sub), _Trajectory(*p.obj_span, obj), p.score)


def greedy_relation_association_ref(
    relation_groups: Mapping,
    *,
    linkage_threshold: float = 0.5,
    inference_topk: int = 200,
    association_topk: int = 200,
    nms: float = 1.0,
    temporal_tolerance: float = 30,
) -> list[dict]:
    """Greedy relational association, reference path (VidVRD-II ``greedy_relation_association``).

    Args:
        relation_groups: ``{(fstart, fend): [relation, ...]}`` with each segment relation a dict
            ``{"triplet": [s, p, o], "score", "duration": [b, e), "sub_traj": [[x1, y1, x2, y2] per frame],
            "obj_traj"}``; with ``"sub_duration"`` and ``"obj_duration"`` the trajectories follow those instead.
        linkage_threshold: two relations link when their subjects' and then their objects' cubic IoU (inclusive
            pixels, float32) is ``> linkage_threshold``.
        inference_topk: relations kept per segment (highest scores first).
        association_topk: video relations returned.
        nms: when ``< 1``, a video relation is dropped if a higher-scored one of the same triplet encloses its
            subject and its object by more than ``nms`` (``cubic_enclose``).
        temporal_tolerance: trajectories ``g`` frames apart (``g < temporal_tolerance``) link on the IoU of their
            boundary boxes.

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
        score first. Raises ``ValueError`` naming the offending argument and relation.
    """
    threshold, inference_topk, association_topk, nms, temporal_tolerance = _check_params(
        linkage_threshold, inference_topk, association_topk, nms, temporal_tolerance
    )
    segments = _select(relation_groups, inference_topk)

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
    return [out for _, out in results]


# ----------------------------------------------------------------------------------------------------------------
# C++ path
# ----------------------------------------------------------------------------------------------------------------


def _flat_boxes(selected: list[_Parsed], total: int) -> np.ndarray:
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
        _fail("expected the trajectories to hold [x1, y1, x2, y2] boxes")  # not reached: the loop names the culprit
    return boxes


def _greedy_cpp(relation_groups, linkage_threshold, inference_topk, association_topk, nms, temporal_tolerance):
    threshold, inference_topk, association_topk, nms, temporal_tolerance = _check_params(
        linkage_threshold, inference_topk, association_topk, nms, temporal_tolerance
    )
    if _F32_COMPARES_IN_F32:
        with np.errstate(over="ignore"):
            threshold_f32 = float(np.float32(threshold))
    else:
        threshold_f32 = threshold
    # Only acyclic lists, tuples and dicts are built below, hundreds of thousands of them for a long video; the
    # cyclic garbage collector would rescan every live object (the input included) several times meanwhile.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        segments = _select(relation_groups, inference_topk)
        selected = [p for segment in segments for p in segment]
        n = len(selected)
        segment_offsets = np.cumsum([0] + [len(s) for s in segments], dtype=np.int64)
        triplets = np.fromiter((p.triplet_id for p in selected), dtype=np.int64, count=n)
        scores = np.fromiter((p.score for p in selected), dtype=np.float64, count=n)
        spans = np.array([(*p.sub_span, *p.obj_span) for p in selected], dtype=np.int64).reshape(n, 4)
        box_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum((spans[:, 1] - spans[:, 0]) + (spans[:, 3] - spans[:, 2]), out=box_offsets[1:])
        boxes = _flat_boxes(selected, int(box_offsets[-1]))

        origin, score, duration, offsets, sub_boxes, obj_boxes = _ext.ext().greedy_relation_association(
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


def greedy_relation_association(
    relation_groups: Mapping,
    *,
    linkage_threshold: float = 0.5,
    inference_topk: int = 200,
    association_topk: int = 200,
    nms: float = 1.0,
    temporal_tolerance: float = 30,
    impl: str = "auto",
) -> list[dict]:
    """Greedy relational association of segment relations into video relations (see
    :func:`greedy_relation_association_ref` for the arguments and the algorithm).

    ``impl``: ``"auto"`` (C++ when the extension is built), ``"cpp"``, or ``"ref"`` / ``"torch"`` (both the
    pure-Python reference). Every path returns exactly VidVRD-II's output on the same input.
    """
    path = resolve_impl(impl, _OP, ("cpp", "ref", "torch"), fallback="ref")
    if path == "cpp":
        return _greedy_cpp(
            relation_groups, linkage_threshold, inference_topk, association_topk, nms, temporal_tolerance
        )
    return greedy_relation_association_ref(
        relation_groups,
        linkage_threshold=linkage_threshold,
        inference_topk=inference_topk,
        association_topk=association_topk,
        nms=nms,
        temporal_tolerance=temporal_tolerance,
    )
