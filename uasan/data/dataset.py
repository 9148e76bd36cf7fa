"""A ``torch.utils.data.Dataset`` of video segments and the collate that batches segments into one flat batch.

Each item is one segment: its trajectories (detected proposals for SGDet, ground-truth trajectories for SGCls /
PredCls), their features, all ordered pairs with their union features, and — when the annotation is read — the
labels of DESIGN §4 (:mod:`uasan.data.labels`). :func:`collate_segments` concatenates several segments into a
:class:`SegmentBatch`: trajectories are numbered globally (N_total), pairs index them globally and never cross a
segment, and the 14-d motion features of every pair come from one vectorised op call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from uasan import ops
from uasan.data._io import PathLike, bad_file
from uasan.data.annotations import Annotation, detect_dataset, read_annotation, subset_videos
from uasan.data.labels import (
    BACKGROUND,
    IGNORE,
    all_pairs,
    assign_predicate_labels,
    assign_trajectory_labels,
    combine_matches,
)
from uasan.data.layouts import open_layout
from uasan.data.proposals import MIN_LENGTH, MIN_SIZE, Proposals
from uasan.data.segments import segment_tag
from uasan.data.splits import Vocabulary, _check_split, load_split
from uasan.data.subsets import DEFAULT_VAL_FRACTION, DEFAULT_VAL_SEED

MODES = ("SGDet", "SGCls", "PredCls")


@dataclass
class Segment:
    """One dataset item (NumPy; frames relative to the segment start ``fstart``)."""

    tag: str
    video_id: str
    fstart: int
    fend: int
    boxes: np.ndarray  # (n, L, 4) float32, L = fend - fstart
    valid: np.ndarray  # (n, L) bool
    start: np.ndarray  # (n,) int64 first frame
    end: np.ndarray  # (n,) int64 exclusive end frame
    scores: np.ndarray  # (n,) float32
    index: np.ndarray  # (n,) int64 row in the proposal file
    tids: np.ndarray  # (n,) int64 ground-truth tid, -1 for detections
    classes: np.ndarray  # (n,) int64 ground-truth class id (all classes), -1 for detections
    features: np.ndarray | None  # (n, D) or (n, S, D) float32
    pairs: np.ndarray  # (P, 2) int64 local, P = n(n-1)
    union_features: np.ndarray | None  # (P, D) or (P, S, D) float32
    traj_labels: np.ndarray | None  # (n,) int64: class id, BACKGROUND (-1) or IGNORE (-100)
    pred_labels: np.ndarray | None  # (P, C_pred) float32 multi-hot
    pair_valid: np.ndarray | None  # (P,) bool


@dataclass
class SegmentBatch:
    """Several segments as one flat batch of tensors (N = all trajectories, P = all pairs, B = segments).

    Frames of ``traj_boxes`` / ``traj_start`` / ``traj_end`` are relative to each segment's start
    (``segment_frames[:, 0]``); T is the longest segment. Labels are ``None`` when the dataset reads none.
    """

    tags: list[str]  # (B,)
    video_ids: list[str]  # (B,)
    segment_frames: torch.Tensor  # (B, 2) int64 absolute [fstart, fend)
    traj_offsets: torch.Tensor  # (B + 1,) int64: segment b owns trajectories [off[b], off[b+1])
    traj_segment: torch.Tensor  # (N,) int64
    traj_boxes: torch.Tensor  # (N, T, 4) float32, zeros where absent
    traj_valid: torch.Tensor  # (N, T) bool
    traj_start: torch.Tensor  # (N,) int64
    traj_end: torch.Tensor  # (N,) int64
    traj_scores: torch.Tensor  # (N,) float32
    traj_index: torch.Tensor  # (N,) int64 row in the proposal file
    traj_tids: torch.Tensor  # (N,) int64, -1 for detections
    traj_classes: torch.Tensor  # (N,) int64 ground-truth class (PredCls input), -1 for detections
    traj_features: torch.Tensor | None  # (N, D) or (N, S, D) float32
    pairs: torch.Tensor  # (P, 2) int64 global (subject, object)
    pair_offsets: torch.Tensor  # (B + 1,) int64
    pair_segment: torch.Tensor  # (P,) int64
    union_features: torch.Tensor | None  # (P, D) or (P, S, D) float32
    motion: torch.Tensor  # (P, 14) float32: pair_motion_features (12) + pair_giou_start_end (2)
    traj_labels: torch.Tensor | None  # (N,) int64: class id, -1 background, -100 ignore
    pred_labels: torch.Tensor | None  # (P, C_pred) float32 multi-hot; all zeros = background
    pair_valid: torch.Tensor | None  # (P,) bool: False = leave the pair out of the predicate loss

    @property
    def num_segments(self) -> int:
        return len(self.tags)

    @property
    def num_trajectories(self) -> int:
        return int(self.traj_segment.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.pairs.shape[0])

    def _map(self, fn: Any) -> SegmentBatch:
        return replace(
            self, **{f.name: fn(v) for f in fields(self) if isinstance(v := getattr(self, f.name), torch.Tensor)}
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SegmentBatch:
        """A copy with every tensor on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> SegmentBatch:
        """A copy with every tensor in pinned memory (``DataLoader(pin_memory=True)`` calls this)."""
        return self._map(lambda t: t.pin_memory())


class SegmentDataset(Dataset):
    """Segments of one subset of a VidVRD / VidOR data set, read through a data layout (:mod:`uasan.data.layouts`).

    Args:
        root: data set root (the annotations). subset: ``train``/``val``/``test`` (VidVRD), ``training``/``val``/
            ``validation`` (VidOR; ``validation`` is VidOR's published evaluation set), aliases ok. ``val`` is the
            held-out validation subset (``val_fraction`` of the training videos, or the root's own ``val`` folder)
            and ``train`` excludes it (:func:`~uasan.data.annotations.subset_videos`).
        split: category split: bundled name, JSON path or dict; default ``ROOT/splits.json`` if present, else
            the bundled split of the detected data set.
        mode: ``"SGDet"`` reads the ``proposals``, ``features`` and ``union_features`` kinds; ``"SGCls"`` and
            ``"PredCls"`` the ``gt_proposals``, ``gt_features`` and ``gt_union_features`` kinds.
        layout: ``"auto"`` (detected from the folders), ``"uasan"``, ``"repro"`` or ``"uasan-public"``.
        paths: ``{kind: folder or [folders]}`` overriding where a kind lives (``data.proposals`` etc.; also
            ``video2seg`` files for RePro's VidOR release); unset kinds use the layout's defaults under ``root``.
        union_segment_mean: read UASAN's segment-level union features as its code does (one mean per segment,
            repeated for every pair); off by default, and start-up stops with the way out instead.
        label_split: categories that keep their labels, ``"base"``/``"novel"``/``"all"`` or an
            ``(objects, predicates)`` pair. A relation is inside it when its predicate and both its objects are.
        outside_split: what becomes of annotations outside ``label_split``. ``"background"`` (default, the
            open-vocabulary protocol as RePro runs it: the trainer never sees them) drops them before matching, so
            a proposal / pair that matches only them is background. ``"ignore"`` keeps them for matching and marks
            what they match IGNORE (trajectories) or ``pair_valid = False`` (pairs).
        labels: read the annotation and assign labels. features / union_features: read those arrays.
        filter: proposal filter (default: on for SGDet, off for ground-truth trajectories, as RePro).

    The items are the segments of the subset's annotated videos that have proposals, in (vid, fstart) order. Every
    folder the items need is checked at construction. Files are located only through ``self.layout``
    (:meth:`files` names them per item). The dataset pickles without its caches, so DataLoader workers work.
    """

    def __init__(
        self,
        root: PathLike,
        subset: str = "train",
        split: str | PathLike | dict[str, Any] | None = None,
        mode: str = "SGDet",
        *,
        layout: str = "auto",
        paths: Mapping[str, Any] | None = None,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        val_seed: int = DEFAULT_VAL_SEED,
        union_segment_mean: bool = False,
        label_split: str | tuple[str, str] = "base",
        outside_split: str = "background",
        labels: bool = True,
        features: bool = True,
        union_features: bool = True,
        filter: bool | None = None,  # noqa: A002
        min_length: int = MIN_LENGTH,
        min_size: float = MIN_SIZE,
        viou_threshold: float = 0.5,
        vpoi_threshold: float = 0.9,
        min_overlap: float = 0.5,
        cache_size: int = 16,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"SegmentDataset: expected mode in {MODES}, got {mode!r}")
        self.root = Path(root)
        self.dataset = detect_dataset(self.root)
        self.videos = subset_videos(self.root, subset, self.dataset, val_fraction=val_fraction, val_seed=val_seed)
        self.subset = self.videos.subset
        self.mode = mode
        if split is None:
            split = self.root / "splits.json" if (self.root / "splits.json").exists() else self.dataset
        if isinstance(split, dict):
            _check_split(split, "<split dict>")
            self.split = split
        else:
            self.split = load_split(split)
        self.vocab = Vocabulary.from_split(self.split)
        obj_split, pred_split = (label_split, label_split) if isinstance(label_split, str) else label_split
        self.object_in_split = self.vocab.object_mask(obj_split)  # (C_obj,) bool
        self.predicate_in_split = self.vocab.predicate_mask(pred_split)  # (C_pred,) bool
        if outside_split not in ("background", "ignore"):
            raise ValueError(f"SegmentDataset: expected outside_split 'background' or 'ignore', got {outside_split!r}")
        self.outside_split = outside_split
        self.labels, self.features, self.union_features = labels, features, union_features
        self.filter = (mode == "SGDet") if filter is None else filter
        self.min_length, self.min_size = min_length, min_size
        self.viou_threshold, self.vpoi_threshold, self.min_overlap = viou_threshold, vpoi_threshold, min_overlap
        self.cache_size = cache_size
        self.annotation_paths = self.videos.videos
        self.layout = open_layout(
            self.root,
            self.videos,
            mode,
            layout,
            paths,
            features=features,
            union_features=union_features,
            union_segment_mean=union_segment_mean,
        )
        self.index: list[tuple[str, int, int]] = self.layout.segments()
        with_segments = {vid for vid, _, _ in self.index}
        # annotated videos without proposals: not items (uasan.data.checks warns with counts)
        self.skipped_videos: list[str] = [vid for vid in self.videos.videos if vid not in with_segments]
        self._cache: OrderedDict[str, Annotation] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def tag(self, i: int) -> str:
        """Segment tag of item i."""
        return segment_tag(*self.index[i])

    def files(self, i: int) -> dict[str, Path]:
        """``{kind: file}`` that item i is read from (proposals, and the feature kinds this dataset reads).

        For RePro's VidOR release these are per-video files (the segment is one key / one row range in them).
        """
        roles = ("proposals",) + ("features",) * self.features + ("union_features",) * self.union_features
        return self.layout.files(*self.index[i], roles=roles)

    def annotation(self, vid: str) -> Annotation:
        """The parsed annotation of ``vid`` (an LRU cache of ``cache_size`` videos per process)."""
        if vid in self._cache:
            self._cache.move_to_end(vid)
            return self._cache[vid]
        ann = read_annotation(self.annotation_paths[vid])
        self._cache[vid] = ann
        while len(self._cache) > max(self.cache_size, 1):
            self._cache.popitem(last=False)
        return ann

    def proposal_file(self, i: int) -> Path:
        """The file holding item i's proposals (a per-video file in RePro's VidOR layout)."""
        return self.layout.proposal_file(*self.index[i])

    def feature_file(self, i: int, union: bool = False) -> Path:
        """The file holding item i's trajectory (or, with ``union``, union) features; ValueError when there is none."""
        return (self.layout.union_file if union else self.layout.feature_file)(*self.index[i])

    def __getitem__(self, i: int) -> Segment:
        vid, fs, fe = self.index[i]
        tag = segment_tag(vid, fs, fe)
        L = fe - fs
        gt = self.mode != "SGDet"
        prop = self.layout.read_proposals(
            vid, fs, fe, filter=self.filter, min_length=self.min_length, min_size=self.min_size, gt=gt,
            segment_length=L,
        )  # fmt: skip
        n = len(prop)
        boxes, valid = prop.padded(L)  # (n, L, 4), (n, L)
        pairs = all_pairs(n)  # (P, 2)
        feats = self.layout.features(vid, fs, fe, prop) if self.features else None  # (n, [S,] D)
        union = self.layout.union_features(vid, fs, fe, prop) if self.union_features else None  # (P, [S,] D)

        ids = self.vocab.object_ids
        classes = np.full(n, -1, dtype=np.int64)
        if gt:
            for k, c in enumerate(prop.category or []):
                if c not in ids:
                    where = f"{prop.field}[{prop.index[k]}].class"
                    raise bad_file(prop.path, where, f"{c!r} is not an object of the split")
                classes[k] = ids[c]
        traj_labels = pred_labels = pair_valid = None
        if self.labels:
            traj_labels, pred_labels, pair_valid = self._labels(vid, fs, fe, prop, pairs, classes)
        return Segment(
            tag=tag,
            video_id=vid,
            fstart=fs,
            fend=fe,
            boxes=boxes,
            valid=valid,
            start=prop.fstart.copy(),
            end=prop.fend,
            scores=prop.score,
            index=prop.index,
            tids=prop.tid if prop.tid is not None else np.full(n, -1, dtype=np.int64),
            classes=classes,
            features=feats,
            pairs=pairs,
            union_features=union,
            traj_labels=traj_labels,
            pred_labels=pred_labels,
            pair_valid=pair_valid,
        )

    def _object_label(self, class_ids: np.ndarray) -> np.ndarray:
        """Class ids → labels restricted to the label split (BACKGROUND or IGNORE outside it, per outside_split)."""
        if len(class_ids) == 0:
            return np.zeros(0, dtype=np.int64)
        outside = IGNORE if self.outside_split == "ignore" else BACKGROUND
        return np.where(self.object_in_split[class_ids], class_ids, outside).astype(np.int64)

    def _labels(
        self, vid: str, fs: int, fe: int, prop: Proposals, pairs: np.ndarray, classes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ann = self.annotation(vid)
        obj_ids, pred_ids = self.vocab.object_ids, self.vocab.predicate_ids
        ann_cls = np.empty(len(ann.tids), dtype=np.int64)  # (K,) class id per annotated object
        for k, c in enumerate(ann.categories):
            if c not in obj_ids:
                raise bad_file(ann.path, f"subject/objects[{k}].category", f"{c!r} is not an object of the split")
            ann_cls[k] = obj_ids[c]

        ridx, spans = ann.segment_relations(fs, fe, self.min_overlap)  # (R,), (R, 2) absolute
        rels = [ann.relations[r] for r in ridx]
        rs = np.array([ann.row(r.subject_tid) for r in rels], dtype=np.int64)  # (R,) rows
        ro = np.array([ann.row(r.object_tid) for r in rels], dtype=np.int64)
        rp = np.empty(len(rels), dtype=np.int64)
        for j, r in enumerate(rels):
            if r.predicate not in pred_ids:
                raise bad_file(
                    ann.path,
                    f"relation_instances[{ridx[j]}].predicate",
                    f"{r.predicate!r} is not a predicate of the split",
                )
            rp[j] = pred_ids[r.predicate]
        if len(rels):
            objs_in = self.object_in_split[ann_cls[rs]] & self.object_in_split[ann_cls[ro]]
            in_split = self.predicate_in_split[rp] & objs_in
            rp = np.where(in_split, rp, -1)
            if self.outside_split == "background":  # out-of-split relations are never seen
                spans, rs, ro, rp = spans[in_split], rs[in_split], ro[in_split], rp[in_split]
        groups = np.unique(np.stack([rs, ro], 1), axis=0, return_inverse=True)[1].reshape(-1) if len(rs) else rs
        C = len(self.vocab.predicates)

        if self.mode == "SGDet":
            rows, starts, gt_boxes = ann.segment_trajectories(fs, fe)
            if self.outside_split == "background":  # out-of-split objects are never seen
                seen = self.object_in_split[ann_cls[rows]]
                rows, starts, gt_boxes = rows[seen], starts[seen], [b for b, k in zip(gt_boxes, seen, strict=True) if k]
            traj_labels = assign_trajectory_labels(
                prop.trajectories(),
                list(zip(starts.tolist(), gt_boxes, strict=True)),
                self._object_label(ann_cls[rows]),
                threshold=self.viou_threshold,
            )
            sub = [(int(lo - fs), ann.boxes[k, lo:hi]) for k, (lo, hi) in zip(rs, spans, strict=True)]
            obj = [(int(lo - fs), ann.boxes[k, lo:hi]) for k, (lo, hi) in zip(ro, spans, strict=True)]
            pred_labels, pair_valid = assign_predicate_labels(
                prop.trajectories(), pairs, sub, obj, rp, C, rel_groups=groups, threshold=self.vpoi_threshold
            )
        else:  # ground-truth trajectories: labels by identity (tid), no geometry
            traj_labels = self._object_label(classes)
            tid = prop.tid if prop.tid is not None else np.zeros(0, dtype=np.int64)
            st, ot = ann.tids[rs], ann.tids[ro]  # (R,)
            hit = (tid[pairs[:, 0]][:, None] == st[None]) & (tid[pairs[:, 1]][:, None] == ot[None])  # (P, R)
            pred_labels, pair_valid = combine_matches(hit.astype(np.float64), hit, groups, rp, C)
        return traj_labels, pred_labels, pair_valid


def _cat_rows(arrays: list[np.ndarray | None], what: str, tags: list[str]) -> np.ndarray | None:
    """Concatenates per-segment arrays along rows, checking the trailing shapes agree (empty segments adapt)."""
    present = [a is not None for a in arrays]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(f"collate_segments: {what} present for some segments but not others")
    full = [a for a in arrays if a.shape[0] > 0]  # type: ignore[union-attr]
    tail = full[0].shape[1:] if full else arrays[0].shape[1:]  # type: ignore[union-attr]
    for a, t in zip(arrays, tags, strict=True):
        if a.shape[0] > 0 and a.shape[1:] != tail:  # type: ignore[union-attr]
            raise ValueError(
                f"collate_segments: expected {what} of shape (n, {', '.join(map(str, tail))}) in every segment, "
                f"but segment {t} has {a.shape}"  # type: ignore[union-attr]
            )
    return np.concatenate([a if a.shape[0] else a.reshape((0, *tail)) for a in arrays])  # type: ignore[union-attr]


def collate_segments(items: Sequence[Segment]) -> SegmentBatch:
    """Batches segments into one :class:`SegmentBatch` (trajectories concatenated, pairs made global).

    Motion features (P, 14) = ``ops.pair_motion_features`` (12) ‖ ``ops.pair_giou_start_end`` (2), one call each
    for the whole batch on the (N, T, 4) box grid.
    """
    items = list(items)
    tags = [it.tag for it in items]
    B = len(items)
    n = np.array([len(it.start) for it in items], dtype=np.int64)  # (B,)
    p = np.array([len(it.pairs) for it in items], dtype=np.int64)  # (B,)
    traj_off = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(n, out=traj_off[1:])
    pair_off = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(p, out=pair_off[1:])
    N, T = int(traj_off[-1]), max((it.boxes.shape[1] for it in items), default=0)

    boxes = np.zeros((N, T, 4), dtype=np.float32)  # (N, T, 4)
    valid = np.zeros((N, T), dtype=bool)  # (N, T)
    for b, it in enumerate(items):  # per segment (slices), not per box
        L = it.boxes.shape[1]
        boxes[traj_off[b] : traj_off[b + 1], :L] = it.boxes
        valid[traj_off[b] : traj_off[b + 1], :L] = it.valid
    pairs = np.concatenate([it.pairs for it in items] or [np.zeros((0, 2), dtype=np.int64)])
    pairs = pairs.reshape(-1, 2) + np.repeat(traj_off[:-1], p)[:, None]  # (P, 2) global
    motion = np.concatenate(
        [ops.pair_motion_features(boxes, valid, pairs), ops.pair_giou_start_end(boxes, valid, pairs)], axis=1
    ).astype(np.float32)  # (P, 14)

    def cat(name: str, dtype: Any) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(it, name), dtype=dtype) for it in items] or [np.zeros(0, dtype)])

    def opt(name: str) -> torch.Tensor | None:
        out = _cat_rows([getattr(it, name) for it in items], name, tags)
        return None if out is None else torch.from_numpy(np.ascontiguousarray(out))

    t = torch.from_numpy
    return SegmentBatch(
        tags=tags,
        video_ids=[it.video_id for it in items],
        segment_frames=t(np.array([[it.fstart, it.fend] for it in items], dtype=np.int64).reshape(B, 2)),
        traj_offsets=t(traj_off),
        traj_segment=t(np.repeat(np.arange(B, dtype=np.int64), n)),
        traj_boxes=t(boxes),
        traj_valid=t(valid),
        traj_start=t(cat("start", np.int64)),
        traj_end=t(cat("end", np.int64)),
        traj_scores=t(cat("scores", np.float32)),
        traj_index=t(cat("index", np.int64)),
        traj_tids=t(cat("tids", np.int64)),
        traj_classes=t(cat("classes", np.int64)),
        traj_features=opt("features"),
        pairs=t(np.ascontiguousarray(pairs, dtype=np.int64)),
        pair_offsets=t(pair_off),
        pair_segment=t(np.repeat(np.arange(B, dtype=np.int64), p)),
        union_features=opt("union_features"),
        motion=t(motion),
        traj_labels=opt("traj_labels"),
        pred_labels=opt("pred_labels"),
        pair_valid=opt("pair_valid"),
    )
