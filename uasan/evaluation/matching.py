"""Per-relation outcome of the official matching: which prediction is a hit, which ground truth is recalled.

The metrics of :mod:`uasan.evaluation.relations` only count hits; a picture of one video needs the flags behind the
counts. :func:`match_relations` returns them from the evaluator's own matching (the C++ matcher, which reports which
ground truth each prediction took, or ``greedy_match_ref``, its reference), so that a prediction drawn as a hit is
one the evaluator counts:
predictions in a stable descending sort by score, each takes the not yet matched ground truth of the same triplet
with the largest ``min(vIoU_s, vIoU_o) >= viou_threshold`` (DESIGN §5). Greedy matching in score order makes the
flags of the top K predictions independent of the predictions below them, so the hits among the top K are the
video's ``R@K`` numerator.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from uasan import _ext
from uasan.evaluation._common import Relation, _boxes_array, _check_options, _relation_list, parse_relation
from uasan.evaluation.columns import RelationColumns
from uasan.evaluation.relations import greedy_match_ref

__all__ = ["RelationMatch", "match_relations"]


class RelationMatch(NamedTuple):
    """Outcome of :func:`match_relations`; every array is in the input order of its relations."""

    pred_hit: np.ndarray  # (P,) bool: a true positive (only the considered top K can be)
    gt_hit: np.ndarray  # (G,) bool: recalled by one of the considered predictions
    pred_gt: np.ndarray  # (P,) int64: index of the ground truth the prediction took, -1 if none
    rank: np.ndarray  # (P,) int64: position in the evaluator's score order, 0 = highest score


def match_relations(
    groundtruth: Sequence[Relation],
    prediction: Sequence[Relation],
    viou_threshold: float = 0.5,
    top_k: int | None = None,
    *,
    video: Any = "<video>",
    impl: str = "auto",
) -> RelationMatch:
    """The official relation-detection matching of one video (VidVRD-helper ``eval_detection_scores``).

    Args:
        groundtruth: the video's ground-truth relations ``{triplet, duration, sub_traj, obj_traj}`` (already
            filtered to a split, if any: :func:`uasan.evaluation.filter_groundtruth`).
        prediction: the video's predicted relations, the same fields plus ``score``.
        viou_threshold: the minimum ``min(vIoU_s, vIoU_o)`` of a hit (0.5 in the protocol).
        top_k: consider only the first ``top_k`` predictions in score order (``None``: all). The others are not
            hits and recall nothing, so ``pred_hit.sum()`` equals the true positives ``R@top_k`` counts.
        video: the video id used in error messages.
        impl: ``"auto"`` (C++ when built), ``"cpp"`` or ``"ref"`` (``greedy_match_ref``); the same flags.

    Returns:
        :class:`RelationMatch` ``(pred_hit, gt_hit, pred_gt, rank)``.

    Raises ``ValueError`` naming ``groundtruth[video][i]`` or ``prediction[video][i]`` and the field for a malformed
    relation (the evaluator's own checks), and naming ``top_k`` when it is not a non-negative integer.
    """
    op = "match_relations"
    thr, _, _ = _check_options(op, viou_threshold, (), ())
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0):
        raise ValueError(f"{op}: expected top_k to be None or a non-negative integer, but got {top_k!r}")
    if impl not in ("auto", "cpp", "ref"):
        raise ValueError(f"{op}: expected impl to be one of ('auto', 'cpp', 'ref'), but got {impl!r}")
    if impl == "ref" or (impl == "auto" and not _ext.HAS_EXT):
        return _match_ref(op, groundtruth, prediction, thr, top_k, video)
    from uasan.evaluation.tables import evaluate_tables

    gt = RelationColumns.from_dicts({video: _relation_list(op, "groundtruth", video, groundtruth)}, scores=False, op=op)
    pred = RelationColumns.from_dicts({video: _relation_list(op, "prediction", video, prediction)}, scores=True, op=op)
    taken = evaluate_tables(op, gt, pred, thr, (), (), all_boxes=True, with_match=True).match  # (P,) input order
    # Greedy matching in score order: the top K's flags do not depend on the predictions below them.
    rank = np.empty(len(pred), dtype=np.int64)
    rank[np.argsort(-pred.score, kind="stable")] = np.arange(len(pred))  # Python's stable reverse sort
    pred_gt = np.where(rank < (len(pred) if top_k is None else int(top_k)), taken, -1)
    gt_hit = np.zeros(len(gt), dtype=bool)
    gt_hit[pred_gt[pred_gt >= 0]] = True
    return RelationMatch(pred_gt >= 0, gt_hit, pred_gt, rank)


def _match_ref(
    op: str, groundtruth: Sequence[Relation], prediction: Sequence[Relation], thr: float, top_k: int | None, video: Any
) -> RelationMatch:
    gts = []
    for i, r in enumerate(_relation_list(op, "groundtruth", video, groundtruth)):
        t, b, _, _, sub, obj = parse_relation(op, "groundtruth", video, i, r, with_score=False)
        gts.append((t, b, _boxes_array(op, "groundtruth", video, i, "sub_traj", sub),
                    _boxes_array(op, "groundtruth", video, i, "obj_traj", obj)))  # fmt: skip
    preds = []
    for i, r in enumerate(_relation_list(op, "prediction", video, prediction)):
        t, b, _, s, sub, obj = parse_relation(op, "prediction", video, i, r, with_score=True)
        preds.append((t, b, s, _boxes_array(op, "prediction", video, i, "sub_traj", sub),
                      _boxes_array(op, "prediction", video, i, "obj_traj", obj)))  # fmt: skip
    # the evaluator's order: Python's stable sort, reverse=True keeps equal scores in input order
    order = np.asarray(sorted(range(len(preds)), key=lambda j: preds[j][2], reverse=True), dtype=np.int64)
    considered = order if top_k is None else order[: int(top_k)]
    taken = greedy_match_ref(gts, [preds[j] for j in considered], thr)  # (K,) in score order
    pred_gt = np.full(len(preds), -1, dtype=np.int64)
    pred_gt[considered] = taken
    gt_hit = np.zeros(len(gts), dtype=bool)
    gt_hit[taken[taken >= 0]] = True
    rank = np.empty(len(preds), dtype=np.int64)
    rank[order] = np.arange(len(preds))
    return RelationMatch(pred_gt >= 0, gt_hit, pred_gt, rank)
