"""Evaluation from files: the official prediction file, a ground-truth JSON file or a data set's annotations,
read straight into columns by the C++ reader (``csrc/eval_json.cpp``), without a Python object per box.

* :func:`read_predictions` / :func:`read_groundtruth` read a relation file in one pass that checks the whole
  document (strict JSON, UTF-8) and every relation: the fields, the triplet, the duration, one box per frame, each box
  four finite numbers. ``lazy=True`` keeps the file's bytes (memory-mapped) and parses a trajectory's numbers only
  when the evaluation compares it; the order ``x2 >= x1, y2 >= y1`` of a box is checked when it is parsed
  (``check_boxes="all"`` parses every trajectory). The pages of a mapped file count in the process's resident set
  once read, although the page cache holds them: the C++ passes drop them from this process's mappings behind them
  (``madvise(MADV_DONTNEED)``), and the matching drops those of each video it is done with, so the resident set
  holds the columns and only a few MB of the file at a time.
* A data set root is read through its annotation files (the layouts of ``uasan.data``): one C++ call per file
  builds the ground-truth relation instances as VidVRD-helper's ``get_relation_insts``, with the checks of
  ``uasan.data.read_annotation`` (which is called for the message when a file is refused).
* :func:`evaluate_files` runs :func:`~uasan.evaluation.evaluate_relations` on them; the metrics equal the official
  pipeline's (annotations + ``get_relation_insts`` + ``json.load`` of the predictions + ``evaluate``).

Every error names the file, and for a relation the video, the relation's index and the field:
``PRED.json: results['vid'][3] field 'score': expected a finite number, got NaN``.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from uasan import _ext
from uasan.evaluation.columns import ColumnarRelations, RelationColumns

__all__ = [
    "RelationFile",
    "evaluate_files",
    "read_annotations",
    "read_files",
    "read_groundtruth",
    "read_predictions",
]

PathLike = str | os.PathLike


def _require_ext() -> Any:
    if not _ext.HAS_EXT:
        raise RuntimeError(f"reading evaluation files needs the C++ extension uasan._C ({_ext.EXT_ERROR})")
    return _ext.ext()


def _file_bytes(path: Path, what: str) -> Any:
    """The file's bytes, memory-mapped (read-only); b"" for an empty file."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None


def _format_error(exc: ValueError, path: Path, prefix: str) -> ValueError | None:
    """A message naming the file for the C++ reader's error tuples; None for other errors."""
    args = exc.args
    if not args or not isinstance(args[0], str):
        return None
    if args[0] == "uasan-json-syntax" and len(args) == 4:
        return ValueError(f"{path}: not valid JSON (line {args[1]}, column {args[2]}: {args[3]})")
    if args[0] == "uasan-json-relation" and len(args) == 5:
        _, vid, i, field, problem = args
        if vid is None:
            return ValueError(f"{path}: " + (f"field {field!r}: " if field else "") + problem)
        where = f"{prefix}[{vid!r}]" + (f"[{i}]" if i >= 0 else "") + (f" field {field!r}" if field else "")
        return ValueError(f"{path}: {where}: {problem}")
    return None  # not the reader's: e.g. "uasan-eval-box", which the caller locates


class RelationFile(ColumnarRelations):
    """A relation file read lazily: the columns of :class:`~uasan.evaluation.RelationColumns` except the boxes,
    which stay in the file's (memory-mapped) bytes until :func:`~uasan.evaluation.evaluate_relations` compares
    them or :meth:`to_columns` parses them all. Made by :func:`read_predictions` / :func:`read_groundtruth`."""

    def __init__(self, path: Path, buffer: Any, prefix: str, videos: tuple, video_offsets: np.ndarray,
                 triplets: tuple, triplet: np.ndarray, duration: np.ndarray, score: np.ndarray | None,
                 traj_pos: np.ndarray, index: np.ndarray) -> None:  # fmt: skip
        self.path, self._buffer, self._prefix = path, buffer, prefix
        # only the read-only mapping of _file_bytes may have its pages dropped (other memory would be lost)
        self._release_pages = isinstance(buffer, mmap.mmap)
        self.videos, self.video_offsets, self.triplets = videos, video_offsets, triplets
        self.triplet, self.duration, self.score = triplet, duration, score
        self._traj_pos, self._index = traj_pos, index  # (2, R) byte offsets; (R,) index in the video's list
        # a prediction file's top-level string fields besides "results" ("version"; uasan.predict's "split", "mode")
        self.header: dict[str, str] = {}

    def _box_source(self) -> tuple[Any, np.ndarray]:
        return self._buffer, self._traj_pos

    def _locate(self, r: int) -> tuple[Any, int]:
        return super()._locate(r)[0], int(self._index[r])

    def select(self, keep: np.ndarray) -> RelationFile:
        keep = np.asarray(keep, dtype=bool)
        counts = np.diff(np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[self.video_offsets])
        return RelationFile(
            self.path, self._buffer, self._prefix, self.videos, np.concatenate([[0], np.cumsum(counts)]),
            self.triplets, self.triplet[keep], self.duration[keep], None if self.score is None else self.score[keep],
            self._traj_pos[:, keep], self._index[keep],
        )  # fmt: skip

    def to_columns(self) -> RelationColumns:
        """Every box parsed and checked: the in-memory :class:`~uasan.evaluation.RelationColumns`."""
        C = _require_ext()
        length = np.ascontiguousarray(self.duration[:, 1] - self.duration[:, 0])
        try:
            box_offsets, boxes = C.relation_file_boxes(
                self._buffer, np.ascontiguousarray(self._traj_pos), length, release_pages=self._release_pages
            )
        except ValueError as exc:
            if not (len(exc.args) == 5 and exc.args[0] == "uasan-eval-box"):
                raise
            vid, i = self._locate(int(exc.args[2]))
            field = ("sub_traj", "obj_traj")[exc.args[3]]
            raise ValueError(f"{self.path}: {self._prefix}[{vid!r}][{i}] field {field!r}: {exc.args[4]}") from None
        return RelationColumns(self.videos, self.video_offsets, self.triplets, self.triplet, self.duration,
                               self.score, box_offsets, boxes, check_boxes=False)  # fmt: skip


def _read_relation_file(path: PathLike, predictions: bool, lazy: bool) -> RelationFile | RelationColumns:
    path = Path(path)
    what, prefix = ("prediction", "results") if predictions else ("ground-truth", "")
    buffer = _file_bytes(path, what)
    try:
        videos, offsets, triplets, triplet, begin, length, score, pos, header = _require_ext().read_relation_file(
            buffer, predictions, release_pages=isinstance(buffer, mmap.mmap)
        )
    except ValueError as exc:
        err = _format_error(exc, path, prefix)
        if err is None:
            raise
        raise err from None
    index = np.arange(len(triplet), dtype=np.int64) - np.repeat(offsets[:-1], np.diff(offsets))
    duration = np.stack([begin, begin + length], axis=1)
    score = score if predictions else None
    rel = RelationFile(
        path, buffer, prefix, tuple(videos), offsets, tuple(triplets), triplet, duration, score, pos, index
    )
    rel.header = header
    return rel if lazy else rel.to_columns()


def read_predictions(path: PathLike, *, lazy: bool = False) -> RelationColumns | RelationFile:
    """The official prediction file ``{"version", "results": {video: [{triplet, score, duration, sub_traj,
    obj_traj}]}}`` as columns (``lazy``: a :class:`RelationFile` whose boxes are parsed on use). Raises
    ``ValueError`` naming the file, and for a bad relation ``results[video][i]`` and the field."""
    return _read_relation_file(path, True, lazy)


def read_groundtruth(
    source: PathLike, subset: str | None = None, *, lazy: bool = False, **layout: Any
) -> RelationColumns | RelationFile:
    """Ground truth from a JSON file ``{video: [{triplet, duration, sub_traj, obj_traj, ...}]}`` or from a data set
    root's annotations (:func:`read_annotations`; ``subset`` and ``layout`` options such as ``val_fraction`` are
    passed on; the default subset is the evaluation one: VidVRD test, VidOR validation)."""
    if os.path.isdir(source):
        return read_annotations(source, subset, **layout)
    return _read_relation_file(source, False, lazy)


def _annotation(C: Any, vid: str, path: Path) -> tuple:
    """One annotation file -> (triplets, triplet, begin, length, box_offsets, boxes) of its relation instances."""
    try:
        video_id, triplets, triplet, begin, length, _, _, box_offsets, boxes = C.read_annotation_file(path.read_bytes())
        if video_id != vid:
            raise ValueError("video_id differs from the file name")
        return triplets, triplet, begin, length, box_offsets, boxes
    except (OSError, ValueError):
        # The data package's reader names the problem; if it accepts the file after all, its result is used.
        from uasan.data.annotations import read_annotation

        c = RelationColumns.from_dicts({vid: read_annotation(path).relation_instances()}, scores=False)
        return c.triplets, c.triplet, c.duration[:, 0], c.duration[:, 1] - c.duration[:, 0], c.box_offsets, c.boxes


def _merge(videos: list, parts: list[tuple]) -> RelationColumns:
    """One RelationColumns from the per-file parts of :func:`_annotation` (checked where they were read)."""
    ids: dict[tuple, int] = {}
    trip, box_off, rows = [], [np.zeros(1, dtype=np.int64)], 0
    for triplets, triplet, _, _, offsets, boxes in parts:
        remap = np.array([ids.setdefault(tuple(t), len(ids)) for t in triplets], dtype=np.int64)
        trip.append(remap[triplet] if len(triplet) else np.zeros(0, dtype=np.int64))
        box_off.append(offsets[1:] + rows)
        rows += len(boxes)
    begin = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    length = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return RelationColumns(
        videos=tuple(videos),
        video_offsets=np.concatenate([[0], np.cumsum([len(p[1]) for p in parts], dtype=np.int64)]),
        triplets=tuple(ids),
        triplet=np.concatenate(trip) if trip else np.zeros(0, dtype=np.int64),
        duration=np.stack([begin, begin + length], axis=1),
        score=None,
        box_offsets=np.concatenate(box_off),
        boxes=np.concatenate([p[5] for p in parts]) if parts else np.zeros((0, 4)),
        check_boxes=False,
    )


def _evaluation_files(root: Path, subset: str | None) -> dict[str, Path] | None:
    """``{vid: path}`` of the published evaluation subset (VidVRD ``test/*.json``, VidOR
    ``annotation/validation/*/*.json``), found without importing :mod:`uasan.data` (whose package import loads
    torch: seconds, and hundreds of MB); None for any other subset or layout, which the data package resolves."""
    vidor = root / "annotation"
    if (vidor / "training").is_dir() or (vidor / "validation").is_dir():
        folder, pattern, names = vidor / "validation", "*/*.json", (None, "validation", "test")
    elif (root / "train").is_dir() or (root / "test").is_dir():
        folder, pattern, names = root / "test", "*.json", (None, "test")
    else:
        return None
    if subset not in names:
        return None
    files = sorted(folder.glob(pattern))
    out = {p.stem: p for p in files}
    return dict(sorted(out.items())) if files and len(out) == len(files) else None


def read_annotations(
    root: PathLike, subset: str | None = None, *, workers: int | None = None, **layout: Any
) -> RelationColumns:
    """Ground-truth relation instances of a data set root's subset, as VidVRD-helper's ``get_relation_insts``
    builds them, in the order of ``uasan.data.annotation_paths`` (which finds the files of the other subsets;
    ``layout``: its ``val_fraction`` / ``val_seed``). Files are parsed on ``workers`` threads (default: up to 4;
    the C++ reader releases the GIL)."""
    C = _require_ext()
    paths = None if layout else _evaluation_files(Path(root), subset)
    if paths is None:
        from uasan.data.annotations import annotation_paths

        paths = annotation_paths(root, subset, **layout)
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda item: _annotation(C, *item), paths.items()))
    return _merge(list(paths), parts)


def read_files(
    groundtruth: PathLike | ColumnarRelations, predictions: PathLike | ColumnarRelations, subset: str | None = None
) -> tuple[ColumnarRelations, ColumnarRelations]:
    """``(ground truth, predictions)`` read lazily (:func:`read_groundtruth`, :func:`read_predictions`), the ground
    truth on a second thread while the prediction file is indexed (both readers release the GIL); columns already
    read pass through. A bad ground truth is reported first."""
    if isinstance(groundtruth, ColumnarRelations):
        pred = predictions if isinstance(predictions, ColumnarRelations) else read_predictions(predictions, lazy=True)
        return groundtruth, pred
    with ThreadPoolExecutor(max_workers=1) as pool:
        gt_future = pool.submit(read_groundtruth, groundtruth, subset, lazy=True)
        try:
            pred = (
                predictions if isinstance(predictions, ColumnarRelations) else read_predictions(predictions, lazy=True)
            )
        except ValueError:
            gt_future.result()  # its error first
            raise
        return gt_future.result(), pred


def evaluate_files(
    groundtruth: PathLike | ColumnarRelations,
    predictions: PathLike | ColumnarRelations,
    *,
    subset: str | None = None,
    objects: Collection | None = None,
    predicates: Collection | None = None,
    viou_threshold: float = 0.5,
    det_nreturns: Sequence[int] = (50, 100),
    tag_nreturns: Sequence[int] = (1, 5, 10),
    per_video: bool = False,
    check_boxes: str = "used",
    unknown_videos: str = "error",
) -> dict[str, Any]:
    """Official relation detection and tagging metrics of a prediction file against a ground truth.

    Args:
        groundtruth: a data set root (its ``subset`` annotations, default the evaluation subset), a ground-truth
            JSON file ``{video: [relation]}``, or columns already read (:func:`read_groundtruth`), so that several
            splits are evaluated with one read.
        predictions: the official prediction JSON file, or columns already read (:func:`read_predictions`).
        objects, predicates: restrict the ground truth to a split (as :func:`~uasan.evaluation.filter_groundtruth`;
            :func:`~uasan.evaluation.split_categories` gives them for ``"novel"`` / ``"base"``).
        viou_threshold, det_nreturns, tag_nreturns, per_video: as :func:`~uasan.evaluation.evaluate_relations`.
        check_boxes: ``"used"`` (default) parses the numbers of the trajectories the matching compares and checks
            their order there; ``"all"`` parses and checks every box of the evaluated videos. The file's structure
            (fields, box counts, four finite numbers per box) is always checked everywhere.
        unknown_videos: ``"error"`` (default) refuses predictions for a video absent from the ground truth (a
            prediction file of another subset), ``"ignore"`` skips them as the official evaluator does.

    Returns ``{"mAP", "R@50", "R@100", "P@1", "P@5", "P@10"}`` (and ``"per_video"``), equal to the official
    pipeline's on the same files. Raises ``ValueError`` naming the file, the video, the relation and the field.
    """
    from uasan.evaluation.relations import evaluate_relations

    if unknown_videos not in ("error", "ignore"):
        raise ValueError(f"evaluate_files: expected unknown_videos 'error' or 'ignore', got {unknown_videos!r}")
    gt, pred = read_files(groundtruth, predictions, subset)
    pred_name = str(getattr(pred, "path", "predictions"))
    if unknown_videos == "error":
        known = set(gt.videos)
        unknown = [vid for vid in pred.videos if vid not in known]
        if unknown:
            more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
            raise ValueError(f"{pred_name}: field 'results' names video {unknown[0]!r}{more}, not in the ground truth")
    if objects is not None or predicates is not None:
        gt = gt.filter(objects, predicates)
    try:
        return evaluate_relations(gt, pred, viou_threshold, det_nreturns, tag_nreturns, per_video,
                                  check_boxes=check_boxes)  # fmt: skip
    except ValueError as exc:
        msg = str(exc)
        for arg, side, name in (("prediction", pred, "results"), ("groundtruth", gt, "")):
            head = f"evaluate_relations: {arg}"
            if msg.startswith(head) and isinstance(side, RelationFile):
                raise ValueError(f"{side.path}: {name}{msg[len(head) :]}") from None
        raise
