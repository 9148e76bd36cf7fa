"""One video's ground truth, predictions and the official matching between them: what every picture draws.

:func:`load_view` reads the annotation, the category split and a prediction file, filters the ground truth to the
open-vocabulary split (:func:`uasan.evaluation.filter_groundtruth`; the predictions are not filtered, as in the
protocol) and flags every relation with :func:`uasan.evaluation.match_relations`, the evaluator's own matching,
over the top K predictions. Predicted relations carry no object identity, so their trajectories are grouped into
*tracks* (same category, mean IoU ≥ 0.7 over common frames) for consistent colours, and a track that follows a
ground-truth object (mean IoU ≥ 0.5) takes that object's colour.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uasan.data import Annotation, annotation_paths, detect_dataset, load_split, read_annotation, segments
from uasan.data.annotations import SUBSETS
from uasan.evaluation import RelationMatch, filter_groundtruth, match_relations, split_categories
from uasan.evaluation.protocol import SPLITS

# status colours shared by every picture (colour-blind safe pairs: green/orange/red/grey differ in lightness too)
HIT = "#1a9850"  # a prediction the evaluator counts as a true positive
RECALLED = "#1a9850"  # a ground truth taken by one of the top K
FALSE_POSITIVE = "#f28e2b"  # a prediction that takes no ground truth
MISSED = "#d62728"  # a ground truth none of the top K takes
STATUS_COLOR = {"hit": HIT, "recalled": RECALLED, "false_positive": FALSE_POSITIVE, "missed": MISSED}
_GT_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939")
_PRED_PALETTE = ("#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#aec7e8", "#ffbb78")
TRACK_IOU = 0.7  # predicted trajectories this similar are one track
FOLLOW_IOU = 0.5  # a track this close to a ground-truth object takes its colour


@dataclass
class Track:
    """A predicted object: the union of the top-K predictions' trajectories that cover it."""

    id: int
    category: str
    boxes: dict[int, np.ndarray]  # frame -> (4,) box, from the highest-ranked prediction covering the frame
    gt_tid: int | None = None  # the ground-truth object it follows, if any
    color: str = "#7f7f7f"

    @property
    def label(self) -> str:
        return f"{self.category} P{self.id}"


@dataclass
class VideoView:
    """Everything the pictures of one video need (see the module docstring)."""

    video_id: str
    annotation: Annotation
    split: str  # "novel", "all" or "base": the ground truth's filter
    top_k: int
    novel_predicates: frozenset
    novel_objects: frozenset
    groundtruth: list[dict[str, Any]]  # (G,) filtered ground-truth relations (evaluator format + tids)
    predictions: list[dict[str, Any]]  # (P,) every prediction of the video, file order
    match: RelationMatch  # over the top K predictions
    top: np.ndarray  # (min(K, P),) prediction indices in the evaluator's score order
    pred_tracks: np.ndarray  # (P, 2) track ids of subject and object (-1 outside the top K)
    tracks: list[Track] = field(default_factory=list)
    gt_colors: dict[int, str] = field(default_factory=dict)  # tid -> colour
    source: str = ""  # the prediction file

    @property
    def width(self) -> int:
        """The annotation's frame width; without one, enough for every box."""
        return int(self.annotation.width or 0) or _extent(self.annotation.boxes[..., 2])

    @property
    def height(self) -> int:
        """The annotation's frame height; without one, enough for every box."""
        return int(self.annotation.height or 0) or _extent(self.annotation.boxes[..., 3])

    @property
    def frame_count(self) -> int:
        return max(int(self.annotation.frame_count), self.annotation.num_frames_annotated)

    def gt_label(self, tid: int) -> str:
        return f"{self.annotation.category(tid)}#{tid}"

    def pred_status(self, i: int) -> str:
        return "hit" if self.match.pred_hit[i] else "false_positive"

    def gt_status(self, g: int) -> str:
        return "recalled" if self.match.gt_hit[g] else "missed"

    def hits(self) -> int:
        """True positives among the top K: this video's share of the R@K numerator."""
        return int(self.match.pred_hit.sum())

    def segments(self) -> list[tuple[int, int]]:
        """The protocol's 30-frame segments (stride 15); the whole video when it is shorter."""
        return segments(self.frame_count) or [(0, self.frame_count)]


def plural(n: int, word: str) -> str:
    """``"1 hit"``, ``"2 hits"``: a count with its noun."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _extent(coords: np.ndarray) -> int:
    """Pixels needed to show every coordinate (inclusive pixels), at least 16."""
    return max(int(np.ceil(coords.max(initial=0))) + 1, 16)


def _aligned_iou(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> float:
    """Mean IoU (inclusive pixels) over the frames both have; 0 without a common frame."""
    common = sorted(a.keys() & b.keys())
    if not common:
        return 0.0
    x = np.stack([a[f] for f in common])  # (T, 4)
    y = np.stack([b[f] for f in common])  # (T, 4)
    iw = np.minimum(x[:, 2], y[:, 2]) - np.maximum(x[:, 0], y[:, 0]) + 1
    ih = np.minimum(x[:, 3], y[:, 3]) - np.maximum(x[:, 1], y[:, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0] + 1) * (z[:, 3] - z[:, 1] + 1)  # noqa: E731
    return float(np.mean(inter / np.maximum(area(x) + area(y) - inter, 1e-9)))


def _traj(begin: int, boxes: Any) -> dict[int, np.ndarray]:
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return {begin + t: arr[t] for t in range(len(arr))}


def build_tracks(view: VideoView) -> None:
    """Groups the top-K predictions' trajectories into tracks and colours tracks and ground-truth objects."""
    ann = view.annotation
    view.gt_colors = {int(t): _GT_PALETTE[k % len(_GT_PALETTE)] for k, t in enumerate(ann.tids)}
    gt_trajs = {int(t): {int(f): ann.boxes[k, f] for f in np.flatnonzero(ann.valid[k])} for k, t in enumerate(ann.tids)}
    tracks: list[Track] = []
    pred_tracks = np.full((len(view.predictions), 2), -1, dtype=np.int64)
    for i in view.top:
        r = view.predictions[i]
        for side, (cat, key) in enumerate(((r["triplet"][0], "sub_traj"), (r["triplet"][2], "obj_traj"))):
            traj = _traj(int(r["duration"][0]), r[key])
            best = next((t for t in tracks if t.category == cat and _aligned_iou(t.boxes, traj) >= TRACK_IOU), None)
            if best is None:
                best = Track(len(tracks), cat, {})
                tracks.append(best)
            for f, b in traj.items():
                best.boxes.setdefault(f, b)
            pred_tracks[i, side] = best.id
    for t in tracks:
        ious = {tid: _aligned_iou(t.boxes, g) for tid, g in gt_trajs.items()}
        tid = max(ious, key=ious.get, default=None)
        if tid is not None and ious[tid] >= FOLLOW_IOU:
            t.gt_tid, t.color = tid, view.gt_colors[tid]
        else:
            t.color = _PRED_PALETTE[t.id % len(_PRED_PALETTE)]
    view.tracks, view.pred_tracks = tracks, pred_tracks


# ----------------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------------


def _annotated(root: Path) -> dict[str, Path]:
    """``{vid: annotation path}`` over every subset of the data set under ``root``."""
    dataset = detect_dataset(root)
    known: dict[str, Path] = {}
    for subset in SUBSETS[dataset]:
        try:
            known.update(annotation_paths(root, subset, dataset))
        except ValueError:  # a subset folder that is absent or empty
            continue
    return known


def _load_split(root: Path, split_file: str | os.PathLike | None) -> dict[str, Any]:
    if split_file is not None:
        return load_split(split_file)
    own = root / "splits.json"
    return load_split(own if own.is_file() else detect_dataset(root))


def load_predictions(path: str | os.PathLike, root: Path) -> dict[str, list]:
    """The ``results`` of an official prediction file whose videos are all annotated under ``root``."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ValueError(f"--predictions: cannot read {path} ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--predictions: {path} is not a JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(f"--predictions: {path} has no 'results' object (video id -> predicted relations)")
    return data["results"]


def load_view(
    data_root: str | os.PathLike,
    predictions: str | os.PathLike | dict[str, list],
    video: str,
    *,
    split: str = "all",
    top_k: int = 50,
    split_file: str | os.PathLike | None = None,
    viou_threshold: float = 0.5,
) -> VideoView:
    """Reads and matches one video (see the module docstring).

    Args:
        data_root: the data set root (``uasan.data`` layout; the synthetic world's included).
        predictions: a prediction file in the official format, or its ``results`` mapping.
        video: the video id; it must be annotated under ``data_root``.
        split: ``"novel"``, ``"all"`` or ``"base"``: the ground truth's open-vocabulary filter.
        top_k: the predictions considered, as ``R@K`` considers them.
        split_file: category split JSON; default ``ROOT/splits.json``, else the data set's bundled split.
        viou_threshold: the matching's threshold.

    Raises ``ValueError`` naming the command-line argument: an unknown ``--video``; a ``--predictions`` file that is
    unreadable, names videos not annotated under the root or categories outside the split's vocabulary (predictions
    for another data set), or holds a malformed relation; a bad ``--split`` or ``--top``.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise ValueError(f"--data-root: {root} is not a directory")
    if split not in SPLITS:
        raise ValueError(f"--split: expected one of {SPLITS}, got {split!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"--top: expected a positive integer, got {top_k!r}")
    known = _annotated(root)
    if video not in known:
        some = ", ".join(repr(v) for v in list(known)[:5]) + (", ..." if len(known) > 5 else "")
        raise ValueError(f"--video: {video!r} is not annotated under {root} ({len(known)} videos: {some})")
    ann = read_annotation(known[video])
    split_data = _load_split(root, split_file)
    source = "<results>" if isinstance(predictions, dict) else os.fspath(predictions)
    results = predictions if isinstance(predictions, dict) else load_predictions(predictions, root)
    _check_results(results, root, source, set(known), split_data, ann)

    objects, preds = split_categories(split_data, split)
    gt = filter_groundtruth({video: ann.relation_instances()}, objects, preds)[video]
    pred = list(results.get(video, []))
    try:
        match = match_relations(gt, pred, viou_threshold, top_k=int(top_k), video=video)
    except ValueError as exc:  # name the file: "match_relations: prediction['vid'][3] field 'score': ..."
        raise ValueError(f"--predictions: {source}: {str(exc).replace('match_relations: ', '')}") from None
    view = VideoView(
        video_id=video,
        annotation=ann,
        split=split,
        top_k=int(top_k),
        novel_predicates=frozenset(split_data["predicates"]["novel"]),
        novel_objects=frozenset(split_data["objects"]["novel"]),
        groundtruth=gt,
        predictions=pred,
        match=match,
        top=np.argsort(match.rank, kind="stable")[: int(top_k)],
        pred_tracks=np.zeros((len(pred), 2), dtype=np.int64),
        source=source,
    )
    build_tracks(view)
    return view


def _check_results(
    results: dict, root: Path, source: str, annotated: set[str], split: dict[str, Any], ann: Annotation
) -> None:
    """Predictions of this data set: every video annotated under the root, every category in its vocabulary."""
    unknown = [v for v in results if v not in annotated]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ValueError(
            f"--predictions: {source} field 'results' names video {unknown[0]!r}{more}, which is not annotated under "
            f"{root} (predictions for another data set?)"
        )
    objects = set(split["objects"]["base"]) | set(split["objects"]["novel"]) | set(ann.categories)
    predicates = set(split["predicates"]["base"]) | set(split["predicates"]["novel"])
    predicates |= {r.predicate for r in ann.relations}
    for vid, rels in results.items():
        if not isinstance(rels, (list, tuple)):
            raise ValueError(f"--predictions: {source} results[{vid!r}]: expected a list of relations")
        for i, r in enumerate(rels):
            trip = r.get("triplet") if isinstance(r, dict) else None
            where = f"--predictions: {source} results[{vid!r}][{i}] field 'triplet'"
            if not isinstance(trip, (list, tuple)) or len(trip) != 3 or not all(isinstance(x, str) for x in trip):
                raise ValueError(f"{where}: expected [subject, predicate, object] names, got {trip!r}")
            for name, vocab in zip(trip, (objects, predicates, objects), strict=True):
                if name not in vocab:
                    raise ValueError(
                        f"{where}: {name!r} is not in the vocabulary of {root} (predictions for another data set "
                        "or vocabulary?)"
                    )
