"""VidVRD / VidOR annotations: reading, the published layouts, and ground-truth relation instances.

One JSON per video (DESIGN §3): ``video_id, frame_count, fps, width, height, "subject/objects": [{tid, category}],
trajectories: [per frame: [{tid, bbox: {xmin, ymin, xmax, ymax}, generated}]], relation_instances: [{subject_tid,
object_tid, predicate, begin_fid, end_fid}]`` with exclusive end frames. ``trajectories`` may be shorter than
``frame_count``, and a frame may be ``[]``. VidOR's extra keys (``version``, ``video_path``, …) are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from uasan.data._io import PathLike, bad_file, load_json, require
from uasan.data.subsets import DEFAULT_VAL_FRACTION, DEFAULT_VAL_SEED, held_out_videos

VIDVRD_LAYOUT = "VidVRD: ROOT/train/<vid>.json and ROOT/test/<vid>.json"
VIDOR_LAYOUT = "VidOR: ROOT/annotation/training/XXXX/<vid>.json and ROOT/annotation/validation/XXXX/<vid>.json"

SUBSETS = {"vidvrd": ("train", "test"), "vidor": ("training", "validation")}
EVAL_SUBSET = {"vidvrd": "test", "vidor": "validation"}
VAL = "val"  # the held-out validation subset (uasan.data.subsets), for both data sets
_ALIASES = {
    "vidvrd": {"train": "train", "training": "train", "test": "test", "val": VAL, "validation": VAL},
    "vidor": {
        "train": "training",
        "training": "training",
        "test": "validation",
        "validation": "validation",
        "val": VAL,
    },
}


class Relation(NamedTuple):
    """One annotated relation instance; frames ``[begin, end)``."""

    subject_tid: int
    object_tid: int
    predicate: str
    begin: int
    end: int


@dataclass
class Annotation:
    """A parsed, validated video annotation.

    Trajectories are stored densely over the annotated frames: ``boxes[k, f]`` is the box of ``tids[k]`` at frame
    ``f`` where ``valid[k, f]``; ``F = len(trajectories)`` may be less than ``frame_count``.
    """

    path: str
    video_id: str
    frame_count: int
    fps: float | None
    width: int | None
    height: int | None
    tids: np.ndarray  # (K,) int64, in "subject/objects" order
    categories: tuple[str, ...]  # (K,)
    boxes: np.ndarray  # (K, F, 4) float64, [x1, y1, x2, y2]
    valid: np.ndarray  # (K, F) bool
    generated: np.ndarray  # (K, F) bool
    relations: list[Relation] = field(default_factory=list)

    @property
    def num_frames_annotated(self) -> int:
        """F: the length of the ``trajectories`` list."""
        return int(self.boxes.shape[1])

    def row(self, tid: int) -> int:
        """Row k of ``tid`` in ``tids``."""
        return int(np.flatnonzero(self.tids == tid)[0])

    def category(self, tid: int) -> str:
        """Category name of ``tid``."""
        return self.categories[self.row(tid)]

    def relation_instances(self) -> list[dict[str, Any]]:
        """Ground-truth relation instances in the evaluator's format, as VidVRD-helper's ``get_relation_insts``.

        Each: ``{"triplet": (s, p, o), "subject_tid", "object_tid", "duration": (begin, end), "sub_traj":
        [[x1, y1, x2, y2] per frame of the duration], "obj_traj": [...]}`` (triplet and duration are tuples, as in
        VidVRD-helper; a JSON round trip turns them into lists).
        """
        out = []
        for r in self.relations:
            ks, ko = self.row(r.subject_tid), self.row(r.object_tid)
            out.append(
                {
                    "triplet": (self.categories[ks], r.predicate, self.categories[ko]),
                    "subject_tid": r.subject_tid,
                    "object_tid": r.object_tid,
                    "duration": (r.begin, r.end),
                    "sub_traj": self.boxes[ks, r.begin : r.end].tolist(),
                    "obj_traj": self.boxes[ko, r.begin : r.end].tolist(),
                }
            )
        return out

    def segment_trajectories(self, fstart: int, fend: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Ground-truth trajectories inside segment ``[fstart, fend)``, in segment-relative frames.

        Returns ``rows`` (G,) (rows into ``tids``) of the objects with a box in the segment, ``starts`` (G,) and
        ``boxes`` (list of (T_g, 4)) from each object's first to its last box in the segment; a gap inside that
        span is filled by linear interpolation (the vIoU ops take contiguous trajectories).
        """
        win = self.valid[:, fstart:fend]  # (K, L)
        rows = np.flatnonzero(win.any(1))
        starts = np.zeros(len(rows), dtype=np.int64)
        boxes = []
        for g, k in enumerate(rows):  # per object (a handful), vectorised over frames
            idx = np.flatnonzero(win[k])
            first, last = int(idx[0]), int(idx[-1])
            b = self.boxes[k, fstart + first : fstart + last + 1].copy()  # (T, 4)
            if len(idx) != last - first + 1:
                t = np.arange(first, last + 1)
                src = self.boxes[k, fstart + idx]
                b = np.stack([np.interp(t, idx, src[:, c]) for c in range(4)], axis=1)
            starts[g] = first
            boxes.append(b)
        return rows, starts, boxes

    def segment_relations(self, fstart: int, fend: int, min_overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Relations active in segment ``[fstart, fend)`` and their spans clipped to it (absolute frames).

        A relation ``[b, e)`` is active when its overlap with the segment is more than ``min_overlap`` of the
        shorter of the two: with VidVRD's 15-frame annotation grid a relation that only shares half a segment
        with it (it was not labelled there) is inactive, and a short VidOR relation inside the segment is active.
        Returns ``index`` (R,) into ``relations`` and ``spans`` (R, 2).
        """
        if not self.relations:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
        be = np.array([(r.begin, r.end) for r in self.relations], dtype=np.int64)  # (R_all, 2)
        lo, hi = np.maximum(be[:, 0], fstart), np.minimum(be[:, 1], fend)
        shorter = np.minimum(be[:, 1] - be[:, 0], fend - fstart)
        active = (hi > lo) & ((hi - lo) > min_overlap * shorter)
        index = np.flatnonzero(active)
        return index, np.stack([lo[index], hi[index]], axis=1)


def read_annotation(path: PathLike) -> Annotation:
    """Reads and validates one video annotation (VidVRD or VidOR JSON; see the module docstring).

    Raises ``ValueError`` naming the file and the field for: unreadable / non-JSON file, a missing field, a box
    with ``xmax < xmin`` or ``ymax < ymin`` (or non-finite), a box of an unknown tid, two boxes of one tid in one
    frame, a relation whose tid is not an object or has no box on a frame of its duration, a duration outside
    ``[0, len(trajectories)]`` or empty, and a ``video_id`` that differs from the file name.
    """
    path = Path(path)
    raw = load_json(path, "annotation")
    if not isinstance(raw, dict):
        raise bad_file(path, "<document>", f"expected an object, got {type(raw).__name__}")
    video_id = require(raw, "video_id", path, "video_id", str)
    if video_id != path.stem:
        raise bad_file(path, "video_id", f"{video_id!r} differs from the file name {path.stem!r}")
    frame_count = require(raw, "frame_count", path, "frame_count", int)
    if frame_count < 0:
        raise bad_file(path, "frame_count", f"expected >= 0, got {frame_count}")
    fps, width, height = raw.get("fps"), raw.get("width"), raw.get("height")
    objs = require(raw, "subject/objects", path, "subject/objects", list)
    trajs = require(raw, "trajectories", path, "trajectories", list)
    rels = require(raw, "relation_instances", path, "relation_instances", list)
    if len(trajs) > frame_count:
        raise bad_file(path, "trajectories", f"has {len(trajs)} frames but frame_count is {frame_count}")

    tids, cats = [], []
    for i, o in enumerate(objs):
        tids.append(require(o, "tid", path, f"subject/objects[{i}].tid", int))
        cats.append(require(o, "category", path, f"subject/objects[{i}].category", str))
    tid_arr = np.asarray(tids, dtype=np.int64)
    if len(set(tids)) != len(tids):
        dup = next(t for t in tids if tids.count(t) > 1)
        raise bad_file(path, "subject/objects", f"tid {dup} listed twice")
    K, F = len(tids), len(trajs)

    arr = _flat_boxes(trajs, path)  # (M, 8): frame, index in frame, tid, x1, y1, x2, y2, generated
    boxes = np.zeros((K, F, 4), dtype=np.float64)
    valid = np.zeros((K, F), dtype=bool)
    generated = np.zeros((K, F), dtype=bool)
    if len(arr):
        f, j = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
        where = lambda m: f"trajectories[{f[m]}][{j[m]}]"  # noqa: E731
        tid = arr[:, 2]
        bad = np.flatnonzero(tid != np.round(tid))
        if bad.size:
            raise bad_file(path, where(bad[0]) + ".tid", f"expected an integer, got {tid[bad[0]]}")
        tid_i = tid.astype(np.int64)
        if K:
            order = np.argsort(tid_arr, kind="stable")
            row = order[np.clip(np.searchsorted(tid_arr[order], tid_i), 0, K - 1)]
            unknown = np.flatnonzero(tid_arr[row] != tid_i)
        else:
            row, unknown = np.zeros(len(tid_i), dtype=np.int64), np.arange(len(tid_i))
        if unknown.size:
            m = unknown[0]
            raise bad_file(path, where(m) + ".tid", f"tid {int(tid[m])} is not listed in subject/objects")
        b = arr[:, 3:7]
        bad = np.flatnonzero(~np.isfinite(b).all(1) | (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
        if bad.size:
            m = bad[0]
            raise bad_file(path, where(m) + ".bbox", f"expected xmin <= xmax and ymin <= ymax, got {b[m].tolist()}")
        key = f * K + row
        uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
        if (counts > 1).any():
            m = int(np.flatnonzero(key == uniq[counts > 1][0])[1])
            raise bad_file(path, where(m) + ".tid", f"tid {int(tid[m])} has two boxes in frame {f[m]}")
        boxes[row, f] = b
        valid[row, f] = True
        generated[row, f] = arr[:, 7] != 0

    relations = []
    tid_set = {t: k for k, t in enumerate(tids)}
    for i, r in enumerate(rels):
        fld = f"relation_instances[{i}]"
        st = require(r, "subject_tid", path, f"{fld}.subject_tid", int)
        ot = require(r, "object_tid", path, f"{fld}.object_tid", int)
        pred = require(r, "predicate", path, f"{fld}.predicate", str)
        b = require(r, "begin_fid", path, f"{fld}.begin_fid", int)
        e = require(r, "end_fid", path, f"{fld}.end_fid", int)
        if not 0 <= b < e <= F:
            raise bad_file(
                path, f"{fld}.begin_fid", f"expected 0 <= begin_fid < end_fid <= {F} (annotated frames), got [{b}, {e})"
            )
        for name, t in (("subject_tid", st), ("object_tid", ot)):
            if t not in tid_set:
                raise bad_file(path, f"{fld}.{name}", f"tid {t} is not listed in subject/objects")
            missing = np.flatnonzero(~valid[tid_set[t], b:e])
            if missing.size:
                raise bad_file(
                    path,
                    f"{fld}.{name}",
                    f"tid {t} has no box at frame {b + int(missing[0])} of the duration [{b}, {e})",
                )
        relations.append(Relation(st, ot, pred, b, e))

    return Annotation(
        path=os.fspath(path),
        video_id=video_id,
        frame_count=frame_count,
        fps=fps,
        width=width,
        height=height,
        tids=tid_arr,
        categories=tuple(cats),
        boxes=boxes,
        valid=valid,
        generated=generated,
        relations=relations,
    )


def _flat_boxes(trajs: list, path: Path) -> np.ndarray:
    """All boxes of ``trajectories`` as one (M, 8) float64 array; on a malformed entry, locate it and raise."""
    try:
        flat = [
            (f, j, it["tid"], bb["xmin"], bb["ymin"], bb["xmax"], bb["ymax"], it.get("generated", 0))
            for f, frame in enumerate(trajs)
            for j, it in enumerate(frame)
            for bb in (it["bbox"],)
        ]
        return np.array(flat, dtype=np.float64).reshape(-1, 8)
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    for f, frame in enumerate(trajs):  # slow path, only to name the bad field
        if not isinstance(frame, list):
            raise bad_file(path, f"trajectories[{f}]", f"expected a list of boxes, got {type(frame).__name__}")
        for j, it in enumerate(frame):
            fld = f"trajectories[{f}][{j}]"
            require(it, "tid", path, f"{fld}.tid", int)
            bb = require(it, "bbox", path, f"{fld}.bbox", dict)
            for c in ("xmin", "ymin", "xmax", "ymax"):
                require(bb, c, path, f"{fld}.bbox.{c}", (int, float))
            if not isinstance(it.get("generated", 0), (int, float)):
                raise bad_file(path, f"{fld}.generated", f"expected 0/1, got {it['generated']!r}")
    raise bad_file(path, "trajectories", "malformed")


def detect_dataset(root: PathLike) -> str:
    """``"vidvrd"`` or ``"vidor"`` from the directory layout of ``root`` (see :mod:`uasan.data`).

    VidOR: ``ROOT/annotation/{training,validation}/``; VidVRD: ``ROOT/train/`` or ``ROOT/test/``. Raises
    ``ValueError`` saying which layouts were expected when ``root`` does not exist or holds neither.
    """
    root = Path(root)
    expected = f"expected the {VIDVRD_LAYOUT} layout or the {VIDOR_LAYOUT} layout"
    if not root.exists():
        raise ValueError(f"{root}: data set root does not exist; {expected}")
    if not root.is_dir():
        raise ValueError(f"{root}: data set root is not a directory; {expected}")
    if any((root / "annotation" / s).is_dir() for s in SUBSETS["vidor"]):
        return "vidor"
    if any((root / s).is_dir() for s in SUBSETS["vidvrd"]):
        return "vidvrd"
    raise ValueError(f"{root}: no annotation directories found; {expected}")


def canonical_subset(dataset: str, subset: str | None) -> str:
    """The name of a subset: VidVRD ``train``/``test``/``val``, VidOR ``training``/``validation``/``val``.

    ``None`` is the evaluation (test) subset: VidVRD ``test``, VidOR ``validation`` (VidOR's published validation
    videos are the protocol's test set). ``val`` is always the held-out validation subset (:mod:`uasan.data.subsets`),
    never the test set. Aliases: ``train``↔``training``; VidVRD ``validation`` = ``val``; VidOR ``test`` =
    ``validation``.
    """
    if dataset not in SUBSETS:
        raise ValueError(f"expected dataset 'vidvrd' or 'vidor', got {dataset!r}")
    if subset is None:
        return EVAL_SUBSET[dataset]
    try:
        return _ALIASES[dataset][subset]
    except KeyError:
        raise ValueError(f"expected a {dataset} subset in {(*SUBSETS[dataset], VAL)}, got {subset!r}") from None


@dataclass(frozen=True)
class SubsetVideos:
    """The videos of one subset: ``videos`` = ``{vid: annotation path}`` sorted by vid.

    ``folder`` is the annotation folder they come from (``train``, ``test``, ``training``, ``validation`` or
    ``val``): held-out validation videos live in the training folder, and so do their proposal and feature files.
    """

    dataset: str
    subset: str
    folder: str
    videos: dict[str, Path]


def own_val_folder(root: PathLike, dataset: str) -> Path:
    """Where a root's own validation annotations live: ``ROOT/val`` (VidVRD layout), ``ROOT/annotation/val`` (VidOR)."""
    root = Path(root)
    return root / VAL if dataset == "vidvrd" else root / "annotation" / VAL


def subset_videos(
    root: PathLike,
    subset: str | None = None,
    dataset: str | None = None,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    val_seed: int = DEFAULT_VAL_SEED,
) -> SubsetVideos:
    """The videos of a subset, with the held-out validation split applied (see :mod:`uasan.data.subsets`).

    ``val``: the root's own validation folder when it has one, else ``val_fraction`` of the training videos chosen
    by the seeded hash; ``train``/``training``: the training videos minus those (all of them when the root has its
    own validation folder); test subsets are read as published. ``ValueError`` for an empty subset.
    """
    root = Path(root)
    dataset = dataset or detect_dataset(root)
    sub = canonical_subset(dataset, subset)
    train = SUBSETS[dataset][0]
    own_val = own_val_folder(root, dataset).is_dir()
    if sub == VAL and own_val:
        folder, videos = VAL, _annotation_files(root, dataset, VAL)
    elif sub in (VAL, train):
        folder, everything = train, _annotation_files(root, dataset, train)
        held = frozenset() if own_val else held_out_videos(everything, val_fraction, val_seed)
        videos = {v: p for v, p in everything.items() if (v in held) == (sub == VAL)}
        if not videos:
            raise ValueError(
                f"{root}: subset {sub!r} is empty: val_fraction={val_fraction} holds out {len(held)} of the "
                f"{len(everything)} training videos (and the root has no {own_val_folder(root, dataset)} folder)"
                + ("; hold some out (data.val_fraction > 0), or train without validation (train.eval_every_epoch=0)"
                   if sub == VAL else "")
            )  # fmt: skip
    else:
        folder, videos = sub, _annotation_files(root, dataset, sub)
    return SubsetVideos(dataset, sub, folder, videos)


def _annotation_files(root: Path, dataset: str, folder_name: str) -> dict[str, Path]:
    if dataset == "vidvrd":
        folder, pattern, layout = root / folder_name, "*.json", VIDVRD_LAYOUT
    else:
        folder, pattern, layout = root / "annotation" / folder_name, "*/*.json", VIDOR_LAYOUT
    files = sorted(folder.glob(pattern))
    if not files:
        raise ValueError(
            f"{folder}: no annotation files ({pattern}) for subset {folder_name!r}; expected the {layout} layout"
        )
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise ValueError(f"{p}: video id {p.stem!r} also annotated in {out[p.stem]}")
        out[p.stem] = p
    return dict(sorted(out.items()))


def annotation_paths(
    root: PathLike,
    subset: str | None = None,
    dataset: str | None = None,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    val_seed: int = DEFAULT_VAL_SEED,
) -> dict[str, Path]:
    """``{vid: path}`` of the annotation files of a subset, sorted by vid (vid = file name = ``video_id``).

    ``train`` and ``val`` apply the held-out validation split (:func:`subset_videos`).
    """
    return subset_videos(root, subset, dataset, val_fraction=val_fraction, val_seed=val_seed).videos


def load_groundtruth(
    root: PathLike,
    subset: str | None = None,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    val_seed: int = DEFAULT_VAL_SEED,
) -> dict[str, list[dict[str, Any]]]:
    """Ground-truth relation instances per video of a subset (default: test for VidVRD, validation for VidOR).

    ``{vid: [{"triplet": (s, p, o), "subject_tid", "object_tid", "duration": (b, e), "sub_traj", "obj_traj"}]}``,
    built as VidVRD-helper's ``get_relation_insts`` (see :meth:`Annotation.relation_instances`). ``val`` is the
    held-out validation subset (:func:`subset_videos`; pass the run's ``val_fraction`` / ``val_seed``).
    """
    paths = annotation_paths(root, subset, val_fraction=val_fraction, val_seed=val_seed)
    return {vid: read_annotation(p).relation_instances() for vid, p in paths.items()}
