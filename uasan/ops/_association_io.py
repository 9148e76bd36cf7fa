"""Inputs and outputs of :func:`uasan.ops.greedy_relation_association`: the official dicts and the columns.

* The dict input ``{(fstart, fend): [relation]}``: its checks (shared by the C++ and the reference path) and its
  selection (segments by start frame, each segment's top ``inference_topk`` relations by score, both stable like
  VidVRD-II's Python sorts).
* The columns: :class:`SegmentRelations` in, :class:`AssociationArrays` out; the checks and the same selection on
  the columns, and the conversions to the official dicts (which the reference path works on).

Nothing here imports the rest of the op (no import circle).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, NoReturn

import numpy as np

from uasan.ops._common import check_boxes

OP = "greedy_relation_association"

# Frame numbers stay below 2**53 so that they are exact as float64 (np.interp) and never overflow int64.
MAX_FRAME = 2**53


# ----------------------------------------------------------------------------------------------------------------
# The dict input: checks shared by both paths, and the selection
# ----------------------------------------------------------------------------------------------------------------


def fail(msg: str) -> NoReturn:
    raise ValueError(f"{OP}: {msg}")


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_params(linkage_threshold, inference_topk, association_topk, nms, temporal_tolerance) -> tuple:
    reals = (("linkage_threshold", linkage_threshold), ("nms", nms), ("temporal_tolerance", temporal_tolerance))
    for name, value in reals:
        if not _is_real(value) or not math.isfinite(value):
            fail(f"expected {name} to be a finite real number, but got {value!r}")
    for name, value in (("inference_topk", inference_topk), ("association_topk", association_topk)):
        if not _is_int(value) or value <= 0:
            fail(f"expected {name} to be a positive integer, but got {value!r}")
    return float(linkage_threshold), int(inference_topk), int(association_topk), float(nms), float(temporal_tolerance)


def _frame(x: Any, what: str) -> int:
    if not _is_int(x) or not 0 <= x < MAX_FRAME:
        fail(f"expected {what} to hold integer frame numbers in [0, 2**53), but got {x!r}")
    return int(x)


def _span(rel: Mapping, field: str, where: str) -> tuple[int, int]:
    value = rel[field]
    what = f"{where}[{field!r}]"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        fail(f"expected {what} to be [begin, end], two integer frame numbers, but got {value!r}")
    b, e = _frame(value[0], what), _frame(value[1], what)
    if b >= e:
        fail(f"expected {what} to be [begin, end) with begin < end, but got {[b, e]}")
    return b, e


class Parsed(NamedTuple):
    """A checked segment relation: where it is, the dict itself and its parsed fields."""

    segment: str  # "relation_groups[(fstart, fend)]"
    index: int  # position in its segment's list
    row: int  # position in the order relation_groups lists its relations (AssociationArrays.origin)
    relation: Mapping
    triplet_id: int  # interned triplet: equal ids <=> equal triplets
    score: float
    sub_span: tuple[int, int]
    obj_span: tuple[int, int]

    @property
    def where(self) -> str:
        return f"{self.segment}[{self.index}]"


def parse_relation_checked(rel: Any, where: str, triplet_ids: dict) -> tuple:
    """Checks the structure of one segment relation (not its box values); returns (triplet id, score, spans)."""
    if not isinstance(rel, Mapping):
        fail(f"expected {where} to be a dict, but got {type(rel).__name__}")
    has_sub, has_obj = "sub_duration" in rel, "obj_duration" in rel
    required = ("triplet", "score", "sub_traj", "obj_traj") + (("duration",) if not (has_sub or has_obj) else ())
    for field in required:
        if field not in rel:
            fail(f"{where} is missing the field {field!r}")
    if has_sub != has_obj:
        given = "sub_duration" if has_sub else "obj_duration"
        fail(f"{where} has {given} but not the other one; give both sub_duration and obj_duration or neither")
    triplet = rel["triplet"]
    if not isinstance(triplet, (list, tuple)) or len(triplet) != 3:
        fail(f"expected {where}['triplet'] to be [subject, predicate, object], but got {triplet!r}")
    try:
        tid = triplet_ids.setdefault(tuple(triplet), len(triplet_ids))
    except TypeError:
        fail(f"expected {where}['triplet'] to hold hashable labels, but got {triplet!r}")
    score = rel["score"]
    if not _is_real(score) or not math.isfinite(score):
        fail(f"expected {where}['score'] to be a finite real number, but got {score!r}")
    if has_sub:
        sub_span, obj_span = _span(rel, "sub_duration", where), _span(rel, "obj_duration", where)
    else:
        sub_span = obj_span = _span(rel, "duration", where)
    for field, (b, e), dur in (("sub_traj", sub_span, "sub_duration"), ("obj_traj", obj_span, "obj_duration")):
        traj = rel[field]
        if isinstance(traj, (str, bytes)) or not hasattr(traj, "__len__"):
            fail(f"expected {where}[{field!r}] to be a list of [x1, y1, x2, y2] boxes, but got {type(traj).__name__}")
        dur = dur if has_sub else "duration"
        if len(traj) != e - b:
            fail(f"{where}[{field!r}] has {len(traj)} boxes but its {dur} [{b}, {e}) spans {e - b} frames")
    return tid, float(score), sub_span, obj_span


def parse_relation(rel: Any, segment: str, j: int, triplet_ids: dict) -> tuple:
    """parse_relation_checked with a fast path for the common, valid case: a dict with Python-typed fields."""
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
            if type(b) is int and type(e) is int and 0 <= b < e < MAX_FRAME and len(sub) == e - b == len(obj):
                try:
                    tid = triplet_ids.setdefault(tuple(triplet), len(triplet_ids))
                except TypeError:  # an unhashable label: the checked path names it
                    pass
                else:
                    return tid, score, (b, e), (b, e)
    return parse_relation_checked(rel, f"{segment}[{j}]", triplet_ids)


def select_dicts(relation_groups: Any, inference_topk: int) -> tuple[list[list[Parsed]], tuple]:
    """Checks relation_groups and returns its segments in processing order (by start frame, stable), each as the
    list of its top ``inference_topk`` relations by score (stable, descending), and the distinct triplets (as
    tuples, in order of appearance: ``Parsed.triplet_id`` indexes them)."""
    if not isinstance(relation_groups, Mapping):
        fail(
            "expected relation_groups to be a dict mapping (fstart, fend) to lists of relations, or SegmentRelations, "
            f"but got {type(relation_groups).__name__}"
        )
    triplet_ids: dict = {}
    segments = []
    row = 0
    for key, rels in relation_groups.items():
        if not isinstance(key, tuple) or len(key) != 2 or not all(_is_int(k) for k in key):
            fail(f"expected relation_groups keys to be (fstart, fend) integer pairs, but got {key!r}")
        fstart, fend = int(key[0]), int(key[1])
        if not 0 <= fstart < fend:
            fail(f"expected relation_groups keys (fstart, fend) with 0 <= fstart < fend, but got {(fstart, fend)}")
        seg = f"relation_groups[({fstart}, {fend})]"
        if not isinstance(rels, (list, tuple)):
            fail(f"expected {seg} to be a list of relations, but got {type(rels).__name__}")
        parsed = [Parsed(seg, j, row + j, rel, *parse_relation(rel, seg, j, triplet_ids)) for j, rel in enumerate(rels)]
        row += len(rels)
        parsed.sort(key=attrgetter("score"), reverse=True)
        segments.append((fstart, parsed[:inference_topk]))
    segments.sort(key=itemgetter(0))
    return [rels for _, rels in segments], tuple(triplet_ids)


def traj_boxes(traj: Any, what: str, length: int) -> np.ndarray:
    """One trajectory's boxes as a checked float64 (length, 4) array."""
    try:
        boxes = np.asarray(traj, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        fail(f"expected {what} to be a list of [x1, y1, x2, y2] boxes, but could not read it as numbers ({exc})")
    if boxes.shape != (length, 4):
        fail(f"expected {what} of shape ({length}, 4), but got {boxes.shape}")
    check_boxes(boxes, OP, what)
    return boxes


# ----------------------------------------------------------------------------------------------------------------
# The columns: SegmentRelations in, AssociationArrays out
# ----------------------------------------------------------------------------------------------------------------


class SegmentRelations(NamedTuple):
    """One video's segment relations as flat arrays (the columnar input of the association).

    Relation ``r`` (of R) belongs to the segment ``s`` with ``segment_offsets[s] <= r < segment_offsets[s + 1]``;
    its subject and its object both span ``duration[r]`` (the official prediction format), and it owns the box rows
    ``[box_offsets[r], box_offsets[r] + 2 T)`` with ``T = end - begin``: its ``T`` subject boxes, then its ``T``
    object boxes (the layout of :class:`uasan.evaluation.RelationColumns`).
    """

    segments: np.ndarray  # (S, 2) int64 [fstart, fend), each segment once
    segment_offsets: np.ndarray  # (S + 1,) int64, 0 .. R, non-decreasing
    triplet: np.ndarray  # (R,) int64 triplet id: equal ids <=> equal triplets
    score: np.ndarray  # (R,) float64, finite
    duration: np.ndarray  # (R, 2) int64 [begin, end), 0 <= begin < end
    boxes: np.ndarray  # (2 * sum(T), 4) float64 [x1, y1, x2, y2], finite, x2 >= x1, y2 >= y1
    triplets: Sequence | None = None  # optional: triplets[id] = (subject, predicate, object); dict output needs it

    @property
    def box_offsets(self) -> np.ndarray:
        """(R + 1,) first box row of each relation (and the total)."""
        lengths = 2 * (self.duration[:, 1] - self.duration[:, 0])
        return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    @classmethod
    def from_groups(cls, groups: Mapping) -> SegmentRelations:
        """The columns of the official dict input ``{(fstart, fend): [relation]}`` whose relations each carry one
        ``duration`` (the inverse of :func:`to_groups`): rows in the order the dict lists them, triplets interned in
        that order (``triplets`` holds them). Unchecked: :func:`check_relations` runs where the columns are used."""
        ids: dict = {}
        segments, counts, trip, score, dur, boxes = [], [0], [], [], [], []
        for key, rels in groups.items():
            segments.append(key)
            counts.append(len(rels))
            for r in rels:
                trip.append(ids.setdefault(tuple(r["triplet"]), len(ids)))
                score.append(r["score"])
                dur.append(r["duration"])
                boxes += [np.asarray(r[f], dtype=np.float64).reshape(-1, 4) for f in ("sub_traj", "obj_traj")]
        return cls(
            segments=np.array(segments, dtype=np.int64).reshape(-1, 2),
            segment_offsets=np.cumsum(counts),
            triplet=np.array(trip, dtype=np.int64),
            score=np.array(score, dtype=np.float64),
            duration=np.array(dur, dtype=np.int64).reshape(-1, 2),
            boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
            triplets=tuple(ids),
        )


class AssociationArrays(NamedTuple):
    """Video relations as arrays, highest score first: relation ``k`` (of n) started from the input relation
    ``origin[k]`` (its row in the input: for dicts, the position in the order ``relation_groups`` lists them), has
    ``triplet[k]``, ``score[k]``, frames ``duration[k]`` and the boxes ``sub_boxes[offsets[k]:offsets[k + 1]]`` /
    ``obj_boxes[...]``, one per frame."""

    origin: np.ndarray  # (n,) int64
    triplet: np.ndarray  # (n,) int64 id (SegmentRelations' ids; for dicts an index into `triplets`)
    score: np.ndarray  # (n,) float64
    duration: np.ndarray  # (n, 2) int64 [begin, end)
    offsets: np.ndarray  # (n + 1,) int64
    sub_boxes: np.ndarray  # (M, 4) float64
    obj_boxes: np.ndarray  # (M, 4) float64
    triplets: tuple | None = None  # the triplet of each id (dict input: the distinct triplets as tuples) or None

    def to_dicts(self) -> list[dict]:
        """The official prediction dicts ``[{triplet, score, duration, sub_traj, obj_traj}]`` (Python floats)."""
        if self.triplets is None:
            fail("the dict output needs the triplets of the ids (SegmentRelations.triplets)")
        sub, obj, off = self.sub_boxes.tolist(), self.obj_boxes.tolist(), self.offsets.tolist()
        names = self.triplets
        return [
            {
                "triplet": list(names[t]),
                "score": s,
                "duration": d,
                "sub_traj": sub[off[k] : off[k + 1]],
                "obj_traj": obj[off[k] : off[k + 1]],
            }
            for k, (t, s, d) in enumerate(
                zip(self.triplet.tolist(), self.score.tolist(), self.duration.tolist(), strict=True)
            )
        ]


def _array(x: Any, name: str, dtype: type, shape: tuple) -> np.ndarray:
    """``x`` as a contiguous array of ``dtype`` and ``shape`` (-1: any size); integer fields must hold integers."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        fail(f"expected relations.{name} to be an array, but could not read it ({exc})")
    if arr.size == 0 and arr.ndim == len(shape):
        arr = arr.astype(dtype)
    kind_ok = arr.dtype.kind in "iu" if dtype is np.int64 else arr.dtype.kind in "iuf"
    want = "(" + ", ".join("n" if s < 0 else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    if not kind_ok or arr.ndim != len(shape) or any(s >= 0 and s != a for s, a in zip(shape, arr.shape, strict=True)):
        kind = "an integer" if dtype is np.int64 else "a real"
        fail(f"expected relations.{name} to be {kind} array of shape {want}, but got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_relations(rel: Any) -> SegmentRelations:
    """The columnar input checked and normalised (int64 / float64, contiguous); ``ValueError`` naming the field
    and, for a relation, its row."""
    if not isinstance(rel, SegmentRelations):
        fail(f"expected relations to be a SegmentRelations, but got {type(rel).__name__}")
    segments = _array(rel.segments, "segments", np.int64, (-1, 2))
    offsets = _array(rel.segment_offsets, "segment_offsets", np.int64, (len(segments) + 1,))
    triplet = _array(rel.triplet, "triplet", np.int64, (-1,))
    n = len(triplet)
    score = _array(rel.score, "score", np.float64, (n,))
    duration = _array(rel.duration, "duration", np.int64, (n, 2))
    if ((segments[:, 0] < 0) | (segments[:, 1] <= segments[:, 0])).any():
        fail("expected relations.segments to hold [fstart, fend) with 0 <= fstart < fend")
    if len({(int(a), int(b)) for a, b in segments}) != len(segments):
        fail("expected each segment once in relations.segments")
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        fail(f"expected relations.segment_offsets to run from 0 to {n} (the relations), non-decreasing")
    bad = np.flatnonzero(~np.isfinite(score))
    if bad.size:
        fail(f"expected relations.score to be finite, but row {bad[0]} is {float(score[bad[0]])!r}")
    bad = np.flatnonzero((duration[:, 0] < 0) | (duration[:, 1] <= duration[:, 0]) | (duration[:, 1] >= MAX_FRAME))
    if bad.size:
        fail(f"expected relations.duration [begin, end) with 0 <= begin < end, but row {bad[0]} is "
             f"{duration[bad[0]].tolist()}")  # fmt: skip
    rows = int(2 * (duration[:, 1] - duration[:, 0]).sum())
    boxes = _array(rel.boxes, "boxes", np.float64, (rows, 4))
    ordered = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])  # (rows,); False where a NaN is
    if not (np.isfinite(boxes).all() and ordered.all()):  # whole-array reductions first: the common case is fast
        row = int(np.argmin(np.isfinite(boxes).all(1) & ordered))
        r = int(np.searchsorted(rel._replace(duration=duration).box_offsets, row, side="right")) - 1
        fail(f"expected relations.boxes to be finite with x2 >= x1 and y2 >= y1, but box row {row} (relation {r}) "
             f"is {boxes[row].tolist()}")  # fmt: skip
    triplets = rel.triplets
    if triplets is not None:
        triplets = tuple(tuple(t) for t in triplets)
        if n and (triplet.min() < 0 or triplet.max() >= len(triplets)):
            fail(f"expected relations.triplet to index relations.triplets ({len(triplets)} entries)")
    return SegmentRelations(segments, offsets, triplet, score, duration, boxes, triplets)


def select_rows(rel: SegmentRelations, inference_topk: int) -> tuple[np.ndarray, np.ndarray]:
    """The relations the association visits, in its order: ``(rows (R',), segment_offsets (S + 1,))``. Segments in
    a stable sort by start frame, each segment's rows in a stable descending sort by score cut to
    ``inference_topk`` (Python's ``sort(key=..., reverse=True)`` keeps equal keys in input order, as here)."""
    order = np.argsort(rel.segments[:, 0], kind="stable")
    parts, counts = [], [0]
    for s in order.tolist():
        lo, hi = int(rel.segment_offsets[s]), int(rel.segment_offsets[s + 1])
        top = lo + np.argsort(-rel.score[lo:hi], kind="stable")[:inference_topk]
        parts.append(top)
        counts.append(len(top))
    rows = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    return rows, np.cumsum(counts, dtype=np.int64)


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenated index ranges ``[starts[i], starts[i] + lengths[i])``, (sum(lengths),) int64."""
    lengths = np.asarray(lengths, dtype=np.int64)
    first = np.cumsum(lengths) - lengths  # where range i starts in the output
    return np.repeat(np.asarray(starts, dtype=np.int64) - first, lengths) + np.arange(int(lengths.sum()))


def to_groups(rel: SegmentRelations) -> dict:
    """The official dict input ``{(fstart, fend): [relation]}`` of checked columns (for the reference path).
    Segments and relations keep the input order, so the dict's relation order is the row order. Without a triplet
    table the triplet of id ``t`` is written ``(t, t, t)`` (equal ids <=> equal triplets still holds)."""
    names = rel.triplets
    off, dur = rel.box_offsets.tolist(), rel.duration.tolist()
    groups: dict = {}
    for s, (fs, fe) in enumerate(rel.segments.tolist()):
        rels = []
        for r in range(int(rel.segment_offsets[s]), int(rel.segment_offsets[s + 1])):
            t = int(rel.triplet[r])
            (b, e), o = dur[r], off[r]
            rels.append({
                "triplet": list(names[t]) if names is not None else [t, t, t],
                "score": float(rel.score[r]),
                "duration": [b, e],
                "sub_traj": rel.boxes[o : o + e - b].tolist(),
                "obj_traj": rel.boxes[o + e - b : o + 2 * (e - b)].tolist(),
            })  # fmt: skip
        groups[(fs, fe)] = rels
    return groups
