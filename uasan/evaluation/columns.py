"""Relations as columns: one NumPy array per field instead of a Python object per box.

:class:`RelationColumns` holds the relations of many videos (predictions or ground truth) in the official format's
meaning (DESIGN §3), laid out flat::

    videos        (V,)    video ids, each once
    video_offsets (V+1,)  int64: relations of video v are rows [video_offsets[v], video_offsets[v+1])
    triplets      (U,)    distinct (subject, predicate, object) tuples
    triplet       (R,)    int64 index into triplets
    duration      (R, 2)  int64 [begin, end) frames, 0 <= begin < end
    score         (R,)    float64, finite (None for ground truth)
    box_offsets   (R+1,)  int64: relation r owns box rows [box_offsets[r], box_offsets[r+1]): its T = end - begin
                          subject boxes, then its T object boxes
    boxes         (rows, 4) float64 [x1, y1, x2, y2], finite, x2 >= x1, y2 >= y1 (inclusive pixels)

:func:`uasan.evaluation.evaluate_relations` takes it in place of either dict, and hands it to the C++ matcher with no
per-relation Python work. :meth:`RelationColumns.from_dicts` / :meth:`~RelationColumns.to_dicts` convert from / to
the official dicts; :meth:`~RelationColumns.write_json` writes the official prediction file (orjson serialises the
box arrays straight from NumPy, with the shortest round-trip text of each float64).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from uasan.evaluation._common import _boxes_array, _check_videos, _relation_list, parse_relation

__all__ = ["ColumnarRelations", "RelationColumns"]


class ColumnarRelations:
    """What the columnar evaluation reads: :class:`RelationColumns`, or a relation file read lazily
    (:class:`uasan.evaluation.files.RelationFile`). Subclasses provide ``videos, video_offsets, triplets, triplet,
    duration, score`` (the fields of :class:`RelationColumns`, with their types) and the box source below."""

    # True where the box source is a read-only file mapping whose pages the C++ matcher may drop from the resident
    # set once read (they stay in the page cache); never for other memory, whose content would be lost.
    _release_pages: bool = False

    def __len__(self) -> int:
        return int(self.triplet.shape[0])

    def _box_source(self) -> tuple[Any, np.ndarray]:
        """``(source, where)``: a (rows, 4) float64 array and the (2, R) first rows of each subject / object
        trajectory, or a relation file's bytes and the trajectories' byte offsets."""
        raise NotImplementedError

    def _locate(self, r: int) -> tuple[Any, int]:
        """(video, index in that video's relation list) of row ``r``, for messages."""
        v = int(np.searchsorted(self.video_offsets, r, side="right")) - 1
        return self.videos[v], r - int(self.video_offsets[v])

    def select(self, keep: np.ndarray) -> ColumnarRelations:
        """The relations where ``keep`` (R,) bool is true; every video stays, possibly with no relation."""
        raise NotImplementedError

    def filter(self, objects: Collection | None = None, predicates: Collection | None = None) -> ColumnarRelations:
        """The relations ``[s, p, o]`` with ``s, o`` in ``objects`` and ``p`` in ``predicates`` (``None``: no
        restriction), as :func:`uasan.evaluation.filter_groundtruth` does for dicts."""
        objs = None if objects is None else frozenset(objects)
        preds = None if predicates is None else frozenset(predicates)
        ok = np.array(
            [(objs is None or (s in objs and o in objs)) and (preds is None or p in preds)
             for s, p, o in self.triplets],
            dtype=bool,
        )  # fmt: skip
        return self.select(ok[self.triplet] if len(ok) else np.zeros(len(self), dtype=bool))


def _int64(name: str, x: Any, ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.ndim != ndim or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"RelationColumns: expected {name} to be a {ndim}-d integer array, got {arr.dtype}{arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class RelationColumns(ColumnarRelations):
    """Relations of many videos as flat arrays (layout in the module docstring); checked on construction."""

    videos: tuple
    video_offsets: np.ndarray
    triplets: tuple
    triplet: np.ndarray
    duration: np.ndarray
    score: np.ndarray | None
    box_offsets: np.ndarray
    boxes: np.ndarray
    check_boxes: InitVar[bool] = True  # False: the boxes were checked where they were read (the C++ readers)

    def __post_init__(self, check_boxes: bool) -> None:
        set_ = object.__setattr__
        set_(self, "videos", tuple(self.videos))
        set_(self, "triplets", tuple(tuple(t) for t in self.triplets))
        if len(set(self.videos)) != len(self.videos):
            raise ValueError("RelationColumns: expected each video once in videos")
        if any(len(t) != 3 for t in self.triplets):
            raise ValueError("RelationColumns: expected triplets of (subject, predicate, object)")
        off = _int64("video_offsets", self.video_offsets, 1)
        trip = _int64("triplet", self.triplet, 1)
        dur = _int64("duration", np.asarray(self.duration).reshape(-1, 2), 2)
        box_off = _int64("box_offsets", self.box_offsets, 1)
        boxes = np.ascontiguousarray(np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4))
        n = len(trip)
        if len(off) != len(self.videos) + 1 or off[0] != 0 or off[-1] != n or (np.diff(off) < 0).any():
            raise ValueError(f"RelationColumns: expected video_offsets of shape ({len(self.videos) + 1},) running "
                             f"from 0 to {n}, non-decreasing")  # fmt: skip
        if len(dur) != n or (len(box_off) != n + 1):
            raise ValueError(f"RelationColumns: expected duration ({n}, 2) and box_offsets ({n + 1},)")
        if n and ((trip < 0).any() or (trip >= len(self.triplets)).any()):
            raise ValueError("RelationColumns: expected triplet to index triplets")
        set_(self, "video_offsets", off)
        set_(self, "triplet", trip)
        set_(self, "duration", dur)
        set_(self, "box_offsets", box_off)
        set_(self, "boxes", boxes)
        bad = np.flatnonzero((dur[:, 0] < 0) | (dur[:, 1] <= dur[:, 0]))
        if bad.size:
            self._fail(bad[0], "duration", f"expected integer frames 0 <= begin < end, got {dur[bad[0]].tolist()}")
        if box_off[0] != 0 or box_off[-1] != len(boxes):
            raise ValueError(f"RelationColumns: expected box_offsets to run from 0 to the {len(boxes)} box rows")
        bad = np.flatnonzero(np.diff(box_off) != 2 * (dur[:, 1] - dur[:, 0]))
        if bad.size:
            self._fail(bad[0], "sub_traj", "expected 2 * (end - begin) box rows (subject boxes, then object boxes)")
        if self.score is not None:
            score = np.ascontiguousarray(np.asarray(self.score, dtype=np.float64))
            if score.shape != (n,):
                raise ValueError(f"RelationColumns: expected score of shape ({n},), got {score.shape}")
            bad = np.flatnonzero(~np.isfinite(score))
            if bad.size:
                self._fail(bad[0], "score", f"expected a finite number, got {score[bad[0]]!r}")
            set_(self, "score", score)
        if not check_boxes:
            return
        ok = np.isfinite(boxes).all(1) & (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
        if not ok.all():
            row = int(np.argmin(ok))
            r = int(np.searchsorted(box_off, row, side="right")) - 1
            t = int(dur[r, 1] - dur[r, 0])
            which, j = ("sub_traj", row - box_off[r]) if row - box_off[r] < t else ("obj_traj", row - box_off[r] - t)
            self._fail(r, which, f"expected finite boxes with x2 >= x1 and y2 >= y1, but box {j} is "
                                 f"{boxes[row].tolist()}")  # fmt: skip

    def _fail(self, r: int, field: str, problem: str) -> None:
        vid, i = self._locate(int(r))
        raise ValueError(f"RelationColumns: [{vid!r}][{i}] field {field!r}: {problem}")

    def _box_source(self) -> tuple[np.ndarray, np.ndarray]:
        sub = self.box_offsets[:-1]
        return self.boxes, np.stack([sub, sub + (self.duration[:, 1] - self.duration[:, 0])])

    # ---- construction and conversion -------------------------------------------------------------------------

    @classmethod
    def from_dicts(
        cls,
        data: Mapping[Any, Sequence[Mapping]],
        *,
        scores: bool,
        videos: Iterable | None = None,
        op: str = "RelationColumns.from_dicts",
    ) -> RelationColumns:
        """From the official dicts ``{video: [{triplet, duration, sub_traj, obj_traj[, score]}]}`` (scores: the
        prediction format), checked like :func:`~uasan.evaluation.evaluate_relations` checks them (messages start
        with ``op``); ``videos`` limits it to those videos (in ``data``'s order)."""
        arg = "prediction" if scores else "groundtruth"
        _check_videos(op, arg, data)
        keep = None if videos is None else set(videos)
        ids: dict[tuple, int] = {}
        vids, counts, trip, dur, score, boxes = [], [], [], [], [], []
        for vid, rels in data.items():
            if keep is not None and vid not in keep:
                continue
            rels = _relation_list(op, arg, vid, rels)
            for i, r in enumerate(rels):
                t, b, e, s, sub, obj = parse_relation(op, arg, vid, i, r, with_score=scores)
                trip.append(ids.setdefault(t, len(ids)))
                dur.append((b, e))
                score.append(s)
                boxes.append(_boxes_array(op, arg, vid, i, "sub_traj", sub))
                boxes.append(_boxes_array(op, arg, vid, i, "obj_traj", obj))
            vids.append(vid)
            counts.append(len(rels))
        lengths = np.array([e - b for b, e in dur], dtype=np.int64)
        return cls(
            videos=tuple(vids),
            video_offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
            triplets=tuple(ids),
            triplet=np.array(trip, dtype=np.int64),
            duration=np.array(dur, dtype=np.int64).reshape(-1, 2),
            score=np.array(score, dtype=np.float64) if scores else None,
            box_offsets=np.concatenate([[0], np.cumsum(2 * lengths)]).astype(np.int64),
            boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        )

    @classmethod
    def from_trajectories(
        cls,
        video: Any,
        triplets: Sequence[tuple],
        triplet: np.ndarray,
        duration: np.ndarray,
        score: np.ndarray,
        offsets: np.ndarray,
        sub_boxes: np.ndarray,
        obj_boxes: np.ndarray,
    ) -> RelationColumns:
        """One video's predictions from separate subject / object box arrays, the layout of the C++ association's
        output: relation k (of n) has ``triplets[triplet[k]]``, ``duration[k]`` (n, 2), ``score[k]``, and boxes
        ``sub_boxes[offsets[k]:offsets[k+1]]`` / ``obj_boxes[...]`` ((M, 4) each, ``offsets`` (n+1,))."""
        offsets = np.asarray(offsets, dtype=np.int64)
        lengths = np.diff(offsets)  # (n,)
        start = 2 * offsets[:-1]  # first row of relation k in the interleaved layout
        rows = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])  # (M,) row of each subject box
        boxes = np.empty((2 * int(offsets[-1]), 4), dtype=np.float64)
        boxes[rows] = sub_boxes
        boxes[rows + np.repeat(lengths, lengths)] = obj_boxes
        return cls((video,), np.array([0, len(lengths)]), triplets, triplet, duration, score, 2 * offsets, boxes)

    def to_dicts(self) -> dict[Any, list[dict[str, Any]]]:
        """The official dicts (lists of Python floats; ``score`` only for predictions)."""
        out: dict[Any, list[dict[str, Any]]] = {}
        trip = [list(t) for t in self.triplets]
        boxes = self.boxes.tolist()
        dur, off = self.duration.tolist(), self.box_offsets.tolist()
        score = None if self.score is None else self.score.tolist()
        for v, vid in enumerate(self.videos):
            rels = []
            for r in range(int(self.video_offsets[v]), int(self.video_offsets[v + 1])):
                b, e = dur[r]
                o = off[r]
                rel = {"triplet": list(trip[self.triplet[r]]), "duration": [b, e]}
                if score is not None:
                    rel["score"] = score[r]
                rel["sub_traj"] = boxes[o : o + e - b]
                rel["obj_traj"] = boxes[o + e - b : o + 2 * (e - b)]
                rels.append(rel)
            out[vid] = rels
        return out

    @classmethod
    def concat(cls, parts: Sequence[RelationColumns]) -> RelationColumns:
        """The relations of ``parts`` one after the other (videos must differ)."""
        ids: dict[tuple, int] = {}
        trip, off, box_off = [], [np.zeros(1, dtype=np.int64)], [np.zeros(1, dtype=np.int64)]
        n = rows = 0
        for p in parts:
            remap = np.array([ids.setdefault(t, len(ids)) for t in p.triplets], dtype=np.int64)
            trip.append(remap[p.triplet] if len(p.triplet) else p.triplet)
            off.append(p.video_offsets[1:] + n)
            box_off.append(p.box_offsets[1:] + rows)
            n += len(p)
            rows += len(p.boxes)
        with_score = bool(parts) and parts[0].score is not None
        if any((p.score is not None) != with_score for p in parts):
            raise ValueError("RelationColumns.concat: expected every part to have scores, or none")
        return cls(
            videos=tuple(v for p in parts for v in p.videos),
            video_offsets=np.concatenate(off),
            triplets=tuple(ids),
            triplet=np.concatenate(trip) if trip else np.zeros(0, dtype=np.int64),
            duration=np.concatenate([p.duration for p in parts]) if parts else np.zeros((0, 2), dtype=np.int64),
            score=np.concatenate([p.score for p in parts]) if with_score else None,
            box_offsets=np.concatenate(box_off),
            boxes=np.concatenate([p.boxes for p in parts]) if parts else np.zeros((0, 4)),
            check_boxes=False,  # each part was checked when it was made
        )

    def select(self, keep: np.ndarray) -> RelationColumns:
        keep = np.asarray(keep, dtype=bool)
        rows = np.flatnonzero(keep)
        lengths = 2 * (self.duration[rows, 1] - self.duration[rows, 0])
        starts = self.box_offsets[rows]
        # box rows of the kept relations: each kept relation's run [start, start + length)
        box_rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(
            lengths.sum()
        )
        counts = np.diff(np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[self.video_offsets])
        return RelationColumns(
            videos=self.videos,
            video_offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
            triplets=self.triplets,
            triplet=self.triplet[rows],
            duration=self.duration[rows],
            score=None if self.score is None else self.score[rows],
            box_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            boxes=self.boxes[box_rows],
            check_boxes=False,
        )

    def write_json(
        self, path: str | os.PathLike, version: str = "VERSION 1.0", *, extra: Mapping[str, Any] | None = None
    ) -> Path:
        """Writes the official prediction file ``{"version", "results": {video: [relation]}}`` atomically.

        Every float64 is written as its shortest round-trip text, so reading the file back gives these exact
        values; videos without relations are written with an empty list. Needs scores. ``extra``: more top-level
        fields after ``results`` (``uasan.predict`` records ``split`` and ``mode``; the official evaluator reads
        ``results`` only).
        """
        from uasan.files import atomic_write

        if self.score is None:
            raise ValueError("RelationColumns.write_json: expected predictions (with scores)")
        trip = [list(t) for t in self.triplets]
        dur, off, score, tid = self.duration.tolist(), self.box_offsets.tolist(), self.score.tolist(), self.triplet
        results = {}
        for v, vid in enumerate(self.videos):
            rels = []
            for r in range(int(self.video_offsets[v]), int(self.video_offsets[v + 1])):
                b, e = dur[r]
                o, t = off[r], e - b
                rels.append({"triplet": trip[tid[r]], "score": score[r], "duration": dur[r],
                             "sub_traj": self.boxes[o : o + t], "obj_traj": self.boxes[o + t : o + 2 * t]})  # fmt: skip
            results[vid] = rels
        if extra and ({"version", "results"} & set(extra)):
            raise ValueError("RelationColumns.write_json: extra must not hold 'version' or 'results'")
        doc = {"version": version, "results": results, **(extra or {})}
        data = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        return atomic_write(path, lambda f: f.write(data))
