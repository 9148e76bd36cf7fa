"""Inference protocol: a batch's scores → each segment's relations → video relations, as RePro runs it.

Per segment (RePro ``tools/eval_relation_cls.py`` + ``utils/evaluate.py: EvalFmtCvtor.to_eval_json_format``):

1. Trajectories take their class and score: SGDet / SGCls the argmax of the object probabilities and its
   probability among the object classes (RePro's max softmax; a background argmax drops the trajectory: its pairs
   are no candidates, DESIGN §6); PredCls the ground-truth class with score 1.
2. Every ordered pair (s, o), s ≠ o, keeps its ``pred_topk`` highest-scored target predicates (``torch.topk`` in
   RePro; here a stable sort, so ties go to the lower predicate id). Candidates are ordered pair-major, then rank.
3. Triplet score ``product`` = p · s · o (the default, UASAN's released evaluation) or ``mean`` = (p + s + o) / 3
   (RePro's; not monotone after the association, see :class:`uasan.config.InferConfig`).
4. The ``topk_per_segment`` best candidates (RePro: a non-stable ``argsort``; here stable, ties in candidate
   order), *then* those whose subject and object share no frame are dropped, so a segment keeps at most that many.
5. A relation spans the common frames of its subject and object (``duration``), both trajectories cut to them.

Per video, :func:`uasan.ops.greedy_relation_association` (VidVRD-II's greedy association, RePro's parameters by
default: linkage 0.5, no NMS, top 200 in and out) links the segments' relations into video relations.

Two equivalent outputs: :func:`candidate_dicts` builds the official segment dicts (the reference path), and
:class:`VideoColumns` gathers the same relations as arrays, associates each video with array input and output, and
gives :class:`~uasan.evaluation.RelationColumns`, which the evaluator and ``write_json`` take without a Python
object per box.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from uasan import ops
from uasan.config import InferConfig
from uasan.data import SegmentBatch, Vocabulary
from uasan.evaluation import RelationColumns

__all__ = [
    "Candidates",
    "association_options",
    "VideoColumns",
    "candidate_dicts",
    "object_labels",
    "segment_candidates",
    "segment_groundtruth",
    "split_classification",
]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenated ranges ``[starts[i], starts[i] + lengths[i])`` as one (sum(lengths),) int64 array."""
    first = (np.cumsum(lengths) - lengths).astype(np.int64)  # (n,) where range i starts in the output
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def object_labels(batch: SegmentBatch, obj_probs: torch.Tensor, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(N,) class id (−1 = background / none) and (N,) score of every trajectory; ``obj_probs`` (N, C_obj + 1).

    PredCls: the ground-truth class, score 1. SGDet / SGCls: the argmax of ``obj_probs``, −1 when that is the
    background column; the score is the class's probability among the object classes, ``p_c / (1 − p_bg)``: the
    softmax over the object classes alone, RePro's score (its classifier has no background class)."""
    if mode == "PredCls":
        labels = batch.traj_classes.numpy()
        return labels, np.where(labels >= 0, 1.0, 0.0)
    probs = obj_probs.detach().float().cpu().numpy().astype(np.float64)  # (N, C_obj + 1)
    best = probs.argmax(1) if probs.size else np.zeros(len(probs), dtype=np.int64)
    classes = 1.0 - probs[:, -1]  # (N,) probability mass of the object classes
    top = probs[np.arange(len(probs)), best]
    scores = np.divide(top, classes, out=np.zeros_like(top), where=classes > 0)
    return np.where(best == probs.shape[1] - 1, -1, best), scores


@dataclass(frozen=True)
class Candidates:
    """The relations every segment of a batch keeps, segment after segment, each segment's in rank order.
    Frames are relative to the segment's start."""

    segment_offsets: np.ndarray  # (B + 1,) int64: segment b owns rows [off[b], off[b + 1])
    subject: np.ndarray  # (R,) int64 trajectory (row of the batch)
    object: np.ndarray  # (R,) int64
    subject_label: np.ndarray  # (R,) int64 object class id
    object_label: np.ndarray  # (R,) int64
    predicate: np.ndarray  # (R,) int64 predicate id (vocabulary order)
    score: np.ndarray  # (R,) float64 triplet score
    begin: np.ndarray  # (R,) int64 first common frame of subject and object
    end: np.ndarray  # (R,) int64 exclusive end of the common frames

    def __len__(self) -> int:
        return int(self.score.shape[0])


def _merge(p: np.ndarray, s: np.ndarray, o: np.ndarray, how: str) -> np.ndarray:
    """Triplet scores (P, k) of predicate scores p (P, k) and subject / object scores s, o (P, 1)."""
    if how == "mean":
        return (p + s + o) / 3.0
    if how == "product":
        return p * s * o
    raise ValueError(f"infer.triplet_score: expected 'mean' or 'product', got {how!r}")


def segment_candidates(
    batch: SegmentBatch,
    obj_probs: torch.Tensor,
    pred_probs: torch.Tensor,
    mode: str,
    predicate_ids: np.ndarray,
    infer: InferConfig,
) -> Candidates:
    """Steps 1–4 of the module docstring for every segment of ``batch``: ``obj_probs`` (N, C_obj + 1) object
    probabilities (last column background), ``pred_probs`` (P, C_pred) predicate scores, ``predicate_ids`` the
    target predicates (novel or all)."""
    labels, obj_scores = object_labels(batch, obj_probs, mode)  # (N,), (N,)
    pairs = batch.pairs.numpy()  # (P, 2)
    predicate_ids = np.asarray(predicate_ids, dtype=np.int64)
    probs = pred_probs.detach().float().cpu().numpy()[:, predicate_ids].astype(np.float64)  # (P, C_t)
    starts, ends = batch.traj_start.numpy(), batch.traj_end.numpy()
    poff = batch.pair_offsets.numpy()
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("s", "o", "p", "score")}
    counts = [0]
    for b in range(batch.num_segments):
        lo, hi = int(poff[b]), int(poff[b + 1])
        s, o = pairs[lo:hi, 0], pairs[lo:hi, 1]
        idx = np.flatnonzero((labels[s] >= 0) & (labels[o] >= 0) & (s != o))  # pairs without a background member
        if idx.size == 0 or probs.shape[1] == 0:
            counts.append(0)
            continue
        p = probs[lo + idx]  # (P_b, C_t)
        k = min(infer.pred_topk, p.shape[1])
        rank = np.argsort(-p, axis=1, kind="stable")[:, :k]  # (P_b, k): each pair's top-k predicates
        ss, os_ = obj_scores[s[idx]][:, None], obj_scores[o[idx]][:, None]  # (P_b, 1)
        merged = _merge(np.take_along_axis(p, rank, 1), ss, os_, infer.triplet_score).ravel()  # (P_b * k,) pair-major
        top = np.argsort(-merged, kind="stable")[: infer.topk_per_segment]
        row, j = np.divmod(top, k)
        si, oi = s[idx[row]], o[idx[row]]
        keep = np.maximum(starts[si], starts[oi]) < np.minimum(ends[si], ends[oi])  # after the top-k, as RePro
        cols["s"].append(si[keep])
        cols["o"].append(oi[keep])
        cols["p"].append(predicate_ids[rank[row, j]][keep])
        cols["score"].append(merged[top][keep])
        counts.append(int(keep.sum()))

    def cat(key: str, dtype: type) -> np.ndarray:
        return np.concatenate(cols[key]).astype(dtype) if cols[key] else np.zeros(0, dtype=dtype)

    s, o = cat("s", np.int64), cat("o", np.int64)
    return Candidates(
        segment_offsets=np.cumsum(counts, dtype=np.int64),
        subject=s,
        object=o,
        subject_label=labels[s].astype(np.int64),
        object_label=labels[o].astype(np.int64),
        predicate=cat("p", np.int64),
        score=cat("score", np.float64),
        begin=np.maximum(starts[s], starts[o]).astype(np.int64),
        end=np.minimum(ends[s], ends[o]).astype(np.int64),
    )


def _segments(batch: SegmentBatch, cand: Candidates) -> Iterator[tuple[int, str, int, int, int, int]]:
    """(b, video, fstart, fend, first row, end row) of every segment of the batch."""
    off = cand.segment_offsets.tolist()
    for b, (vid, (fs, fe)) in enumerate(zip(batch.video_ids, batch.segment_frames.tolist(), strict=True)):
        yield b, vid, fs, fe, off[b], off[b + 1]


def candidate_dicts(
    batch: SegmentBatch, cand: Candidates, vocab: Vocabulary
) -> dict[str, dict[tuple[int, int], list[dict[str, Any]]]]:
    """The official segment relations ``{vid: {(fstart, fend): [{triplet, score, duration, sub_traj, obj_traj}]}}``
    (absolute frames; both trajectories over the common span, as RePro hands them to the association)."""
    boxes = batch.traj_boxes.numpy()  # (N, T, 4)
    out: dict[str, dict[tuple[int, int], list[dict[str, Any]]]] = {}
    for _, vid, fs, fe, lo, hi in _segments(batch, cand):
        rels = out.setdefault(vid, {}).setdefault((fs, fe), [])
        for r in range(lo, hi):
            b, e = int(cand.begin[r]), int(cand.end[r])
            rels.append(
                {
                    "triplet": [
                        vocab.objects[cand.subject_label[r]],
                        vocab.predicates[cand.predicate[r]],
                        vocab.objects[cand.object_label[r]],
                    ],
                    "score": float(cand.score[r]),
                    "duration": [fs + b, fs + e],
                    "sub_traj": boxes[cand.subject[r], b:e].tolist(),
                    "obj_traj": boxes[cand.object[r], b:e].tolist(),
                }
            )
    return out


def association_options(infer: InferConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`uasan.ops.greedy_relation_association` that the ``infer`` section sets."""
    return {
        "linkage_threshold": infer.association_linkage,
        "inference_topk": infer.topk_per_segment,
        "association_topk": infer.association_topk,
        "nms": infer.association_nms,
    }


class VideoColumns:
    """Gathers one target split's candidates as columns and associates each video once all its segments are in.

    Segments must come video after video (the datasets list them in (video, fstart) order). Triplets are coded as
    one int64 ``(s · C_pred + p) · C_obj + o``. :meth:`result` gives every video's relations as one
    :class:`~uasan.evaluation.RelationColumns` (videos in arrival order, each with its relations, possibly none).
    """

    def __init__(self, vocab: Vocabulary, infer: InferConfig):
        self.vocab, self.infer = vocab, infer
        self._done: list[RelationColumns] = []
        self._seen: set[str] = set()
        self._video: str | None = None
        self._parts: list[tuple] = []

    def add(self, batch: SegmentBatch, cand: Candidates) -> None:
        boxes = batch.traj_boxes.numpy()  # (N, T, 4) float32
        n_pred, n_obj = len(self.vocab.predicates), len(self.vocab.objects)
        code = (cand.subject_label * n_pred + cand.predicate) * n_obj + cand.object_label  # (R,)
        for _, vid, fs, fe, lo, hi in _segments(batch, cand):
            if vid != self._video:
                self._finish()
                if vid in self._seen:
                    raise ValueError(f"VideoColumns: the segments of video {vid!r} do not come one after the other")
                self._video = vid
                self._seen.add(vid)
            b, e = cand.begin[lo:hi], cand.end[lo:hi]
            length = e - b  # (R_b,)
            frames = _ranges(b, length)  # (M,) frame of every box
            rows = _ranges(2 * (np.cumsum(length) - length), length)  # subject rows of each relation
            seg_boxes = np.empty((2 * int(length.sum()), 4), dtype=np.float64)  # per relation: T subject, T object
            seg_boxes[rows] = boxes[np.repeat(cand.subject[lo:hi], length), frames]
            seg_boxes[rows + np.repeat(length, length)] = boxes[np.repeat(cand.object[lo:hi], length), frames]
            self._parts.append((fs, fe, code[lo:hi], cand.score[lo:hi], np.stack([fs + b, fs + e], 1), seg_boxes))

    def _finish(self) -> None:
        if self._video is None:
            return
        parts, vid = self._parts, self._video
        self._parts, self._video = [], None
        rel = ops.SegmentRelations(
            segments=np.array([(p[0], p[1]) for p in parts], dtype=np.int64).reshape(-1, 2),
            segment_offsets=np.cumsum([0] + [len(p[2]) for p in parts], dtype=np.int64),
            triplet=np.concatenate([p[2] for p in parts]),
            score=np.concatenate([p[3] for p in parts]),
            duration=np.concatenate([p[4] for p in parts]).reshape(-1, 2),
            boxes=np.concatenate([p[5] for p in parts]),
        )
        out = ops.greedy_relation_association(rel, **association_options(self.infer), output="arrays")
        codes, index = np.unique(out.triplet, return_inverse=True)
        n_pred, n_obj = len(self.vocab.predicates), len(self.vocab.objects)
        names = tuple(
            (self.vocab.objects[c // (n_pred * n_obj)], self.vocab.predicates[(c // n_obj) % n_pred],
             self.vocab.objects[c % n_obj])
            for c in codes.tolist()
        )  # fmt: skip
        self._done.append(
            RelationColumns.from_trajectories(
                vid, names, index.reshape(-1), out.duration, out.score, out.offsets, out.sub_boxes, out.obj_boxes
            )
        )

    def result(self) -> RelationColumns:
        """Every video's relations (call once, after the last :meth:`add`)."""
        self._finish()
        if not self._done:  # no segment at all: still predictions (with scores), of no video
            z = np.zeros(0, dtype=np.int64)
            return RelationColumns(
                (), np.zeros(1, np.int64), (), z, z.reshape(0, 2), np.zeros(0), np.zeros(1, np.int64), np.zeros((0, 4))
            )
        return RelationColumns.concat(self._done)


def split_classification(obj_probs: torch.Tensor, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory classification with one split's classifier: the softmax over the classes of ``mask`` (C_obj,)
    alone, no background. With ``obj_probs`` (N, C_obj + 1) = softmax(logits), renormalising the split's columns
    equals the softmax of the split's logits. Returns (N,) score (max probability) and (N,) class id (argmax)."""
    cols = np.flatnonzero(mask)
    p = obj_probs.numpy()[:, cols].astype(np.float64)  # (N, C_split)
    total = p.sum(1, keepdims=True)
    p = np.divide(p, total, out=np.zeros_like(p), where=total > 0)  # all-zero rows (underflow) score 0
    best = p.argmax(1) if p.shape[1] else np.zeros(len(p), dtype=np.int64)
    score = p.max(1) if p.shape[1] else np.zeros(len(p))
    return score, cols[best] if len(cols) else best


def segment_groundtruth(annotation: Any, fstart: int, fend: int, classes: Collection[str]) -> list[dict[str, Any]]:
    """A segment's ground-truth trajectories as RePro's trajectory evaluation builds them
    (``dataset_vidvrd_v2.VidVRDTrajDataset.get_anno``): every annotated object (``subject/objects`` order) with a box
    in ``[fstart, fend)`` whose category is in ``classes``, as ``{fstart (segment-relative frame of its first box),
    bboxes, class}``, its boxes in frame order; frames without a box are skipped, not filled (RePro appends the
    boxes it finds, so a gap shortens the trajectory). ``annotation``: a :class:`uasan.data.Annotation`."""
    valid = annotation.valid[:, fstart:fend]  # (K, <= fend - fstart): the annotation may end before the segment
    out = []
    for k, category in enumerate(annotation.categories):
        frames = np.flatnonzero(valid[k])
        if frames.size and category in classes:
            out.append({"fstart": int(frames[0]), "bboxes": annotation.boxes[k, fstart + frames], "class": category})
    return out
