"""Video relation detection and relation tagging, with the official VidVRD evaluator's numbers.

Definitions follow VidVRD-helper ``evaluation/visual_relation_detection.py`` (``evaluate``,
``eval_detection_scores``, ``eval_tagging_scores``) and ``evaluation/common.py`` (``viou``, ``voc_ap``):

* Inputs: ``groundtruth`` maps video id → list of ``{triplet: [s, p, o], subject_tid, object_tid,
  duration: [begin, end), sub_traj, obj_traj}``; ``prediction`` maps video id → list of ``{triplet, score,
  duration, sub_traj, obj_traj}``; trajectories hold one ``[x1, y1, x2, y2]`` box per frame of the duration
  (inclusive pixels). Only ``triplet``, ``duration``, the trajectories and (predictions) ``score`` are read.
* Detection, per video with ground truth: predictions in a stable descending sort by score (Python's
  ``sorted(..., reverse=True)``); each takes the not yet matched ground truth of the same triplet with the largest
  ``min(vIoU_s, vIoU_o) >= viou_threshold`` (strict ``>`` between candidates: the first in ground-truth order wins a
  tie). Precision / recall are float32 cumulative sums; AP is all-point VOC AP (``voc_ap``).
* ``mAP``: mean AP over the videos with ground truth. ``R@K``: true positives among each video's top K
  predictions, summed over videos, over the number of ground-truth relations (float32).
* Tagging ``P@K``: per video, the distinct predicted triplets in score order, a hit when the triplet occurs in the
  video's ground truth; precision at ``min(K, number of distinct triplets)`` (0 without predictions); mean over
  videos with ground truth.
* Videos without ground truth (absent or an empty list) are skipped, predictions for them are ignored and not
  checked. Where the official code divides by zero or indexes an empty array, this module defines the result:
  no video with ground truth → every metric is 0.0 (``per_video`` empty); no prediction at all → R@K = 0.0.

``evaluate_relations`` runs the matching loop and the vIoU in C++ (``csrc/eval.cpp``) on flat arrays built once
per call; ``evaluate_relations_ref`` restates the official algorithm in plain Python on top of
:func:`uasan.ops.viou_ref` and is the reference the fast path is tested against. Either input may instead be
columnar (:class:`~uasan.evaluation.RelationColumns`, or a relation file read lazily by
:mod:`uasan.evaluation.files`): :mod:`uasan.evaluation.tables` then hands its arrays to the same C++ matcher.

Bad input raises ``ValueError`` naming the argument, the video, the relation index and the field. Predictions
for videos without ground truth are ignored unchecked, as the official code ignores them. The relation fields
(triplet, duration, score) and the box counts are checked for every evaluated relation. The box values are, by
default (``check_boxes="used"``, as :func:`~uasan.evaluation.evaluate_files`), read and checked where the matching
compares them (never a box the official ``evaluate`` does not read): a prediction's trajectory is read only when
the prediction shares its triplet with a not yet matched ground truth whose volume within the common frames could
reach the threshold. The other boxes cannot change any metric, and reading nested Python box lists is memory-bound
(a list and four numbers per box), so checking all of them costs more than the official evaluation itself.
``check_boxes="all"`` reads and checks every box of every evaluated relation first (a malformed box that no
comparison reaches is then refused too). :func:`evaluate_relations_ref` always checks every box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from uasan import _ext
from uasan.evaluation._common import (
    _EPS32,
    Relation,
    RelationsByVideo,
    _boxes_array,
    _check_options,
    _check_videos,
    _relation_list,
    _summarise,
    parse_relation,
)
from uasan.evaluation.columns import ColumnarRelations

__all__ = [
    "Relation",
    "RelationsByVideo",
    "evaluate_relations",
    "evaluate_relations_ref",
    "greedy_match_ref",
    "parse_relation",
]

# ----------------------------------------------------------------------------------------------------------------
# reference: the official algorithm restated in Python
# ----------------------------------------------------------------------------------------------------------------


def _voc_ap_ref(rec: np.ndarray, prec: np.ndarray) -> float:
    """common.py voc_ap (all-point): area under the precision envelope where the recall changes."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _float32_curves(tp: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    cum_tp = np.cumsum(tp).astype(np.float32)
    cum_fp = np.cumsum(~tp).astype(np.float32)
    rec = cum_tp / np.maximum(n_pos, _EPS32)
    prec = cum_tp / np.maximum(cum_tp + cum_fp, _EPS32)
    return rec, prec


def greedy_match_ref(gts: Sequence[tuple], preds: Sequence[tuple], viou_threshold: float) -> np.ndarray:
    """The official detection matching of one video: (P,) int64, the ground truth each prediction took, or -1.

    ``gts``: ``(triplet, begin, sub (T, 4), obj (T, 4))``; ``preds``: ``(triplet, begin, score, sub, obj)``, already
    in the evaluator's score order. Each prediction takes the not yet matched ground truth of its triplet with the
    largest ``min(vIoU_s, vIoU_o) >= viou_threshold`` (strict ``>`` between candidates).
    """
    from uasan.ops import viou_ref

    detected = [False] * len(gts)
    match = np.full(len(preds), -1, dtype=np.int64)
    for k, (t, b, _, ps, po) in enumerate(preds):
        best, best_ov = -1, -math.inf
        for g, (gt_t, gb, gs, go) in enumerate(gts):
            if detected[g] or gt_t != t:
                continue
            ov = min(viou_ref(b, ps, gb, gs), viou_ref(b, po, gb, go))
            if ov >= viou_threshold and ov > best_ov:
                best, best_ov = g, ov
        if best >= 0:
            match[k] = best
            detected[best] = True
    return match


def evaluate_relations_ref(
    groundtruth: RelationsByVideo,
    prediction: RelationsByVideo,
    viou_threshold: float = 0.5,
    det_nreturns: Sequence[int] = (50, 100),
    tag_nreturns: Sequence[int] = (1, 5, 10),
    per_video: bool = False,
) -> dict[str, Any]:
    """Reference of :func:`evaluate_relations`: the official algorithm in plain Python, one vIoU per pair.

    Same inputs, checks and result as :func:`evaluate_relations` with ``check_boxes="all"`` (see the module
    docstring for the definitions).
    """
    op = "evaluate_relations_ref"
    thr, det_nreturns, tag_nreturns = _check_options(op, viou_threshold, det_nreturns, tag_nreturns)
    _check_videos(op, "groundtruth", groundtruth)
    _check_videos(op, "prediction", prediction)
    ap: dict[Any, float] = {}
    hits = dict.fromkeys(det_nreturns, 0)
    tag_prec: dict[int, list] = {k: [] for k in tag_nreturns}
    n_gt = n_pred = 0
    video_hits: list[list[int]] = []
    video_gt: list[int] = []
    for vid, gt_rels in groundtruth.items():
        gt_rels = _relation_list(op, "groundtruth", vid, gt_rels)
        if len(gt_rels) == 0:
            continue
        gts = []
        for i, r in enumerate(gt_rels):
            t, b, _, _, sub, obj = parse_relation(op, "groundtruth", vid, i, r, with_score=False)
            gts.append((t, b, _boxes_array(op, "groundtruth", vid, i, "sub_traj", sub),
                        _boxes_array(op, "groundtruth", vid, i, "obj_traj", obj)))  # fmt: skip
        preds = []
        for i, r in enumerate(_relation_list(op, "prediction", vid, prediction.get(vid, []))):
            t, b, _, s, sub, obj = parse_relation(op, "prediction", vid, i, r, with_score=True)
            preds.append((t, b, s, _boxes_array(op, "prediction", vid, i, "sub_traj", sub),
                          _boxes_array(op, "prediction", vid, i, "obj_traj", obj)))  # fmt: skip
        n_gt += len(gts)
        n_pred += len(preds)
        preds.sort(key=lambda p: p[2], reverse=True)  # stable: equal scores keep their input order

        # detection: greedy matching in score order
        tp = greedy_match_ref(gts, preds, thr) >= 0
        rec, prec = _float32_curves(tp, len(gts))
        ap[vid] = _voc_ap_ref(rec, prec)
        video_hits.append([int(tp[:k].sum()) for k in det_nreturns])
        video_gt.append(len(gts))
        for k, h in zip(det_nreturns, video_hits[-1], strict=True):
            hits[k] += h

        # tagging: distinct triplets in score order
        gt_triplets = {g[0] for g in gts}
        distinct = list(dict.fromkeys(p[0] for p in preds))
        _, tprec = _float32_curves(np.array([t in gt_triplets for t in distinct], dtype=bool), len(gt_triplets))
        for k in tag_nreturns:
            cut = min(k, len(distinct))
            tag_prec[k].append(tprec[cut - 1] if cut > 0 else 0.0)
    return _summarise(ap, hits, n_gt, n_pred, tag_prec, det_nreturns, tag_nreturns, per_video, (video_hits, video_gt))


# ----------------------------------------------------------------------------------------------------------------
# fast path: flat arrays + C++ matching
# ----------------------------------------------------------------------------------------------------------------


_RECHECK = "uasan-eval-recheck"


def _normalised(op: str, data: Mapping, arg: str, with_score: bool, videos: Any = None) -> dict:
    """A plain-typed copy (dict, list, int, float) of ``data`` after a full Python check, for the C++ reader.

    Only used when the input holds valid values the fast reader does not take (NumPy arrays or scalars, custom
    sequences); ``videos`` limits it to the videos that are evaluated.
    """
    out = {}
    for vid, rels in data.items():
        if videos is not None and vid not in videos:
            continue
        rows = []
        for i, r in enumerate(_relation_list(op, arg, vid, rels)):
            t, b, e, s, sub, obj = parse_relation(op, arg, vid, i, r, with_score)
            rel = {
                "triplet": list(t),
                "duration": [b, e],
                "sub_traj": _boxes_array(op, arg, vid, i, "sub_traj", sub).tolist(),
                "obj_traj": _boxes_array(op, arg, vid, i, "obj_traj", obj).tolist(),
            }
            if with_score:
                rel["score"] = s
            rows.append(rel)
        out[vid] = rows
    return out


def _recheck(op: str, groundtruth: Mapping, prediction: Mapping, arg: str, vid: Any, i: int) -> None:
    """Raises the precise message for the relation the C++ reader refused; returns if it is valid after all."""
    data = groundtruth if arg == "groundtruth" else prediction
    rels = _relation_list(op, arg, vid, data[vid])
    if i < 0:
        return
    t, b, e, s, sub, obj = parse_relation(op, arg, vid, i, rels[i], with_score=arg == "prediction")
    _boxes_array(op, arg, vid, i, "sub_traj", sub)
    _boxes_array(op, arg, vid, i, "obj_traj", obj)


def _as_dicts(data: Any) -> Any:
    """Columnar input as the official dicts (for the reference path)."""
    if isinstance(data, ColumnarRelations):
        return (data if hasattr(data, "to_dicts") else data.to_columns()).to_dicts()
    return data


def _as_columns(op: str, groundtruth: Any, prediction: Any) -> tuple[ColumnarRelations, ColumnarRelations]:
    """Both sides as columns; a dict side is read with the evaluator's checks (predictions: evaluated videos only)."""
    from uasan.evaluation.columns import RelationColumns

    if not isinstance(groundtruth, ColumnarRelations):
        _check_videos(op, "groundtruth", groundtruth)
        groundtruth = RelationColumns.from_dicts(
            {vid: rels for vid, rels in groundtruth.items() if len(_relation_list(op, "groundtruth", vid, rels))},
            scores=False,
        )
    if not isinstance(prediction, ColumnarRelations):
        _check_videos(op, "prediction", prediction)
        evaluated = set(groundtruth.videos[v] for v in np.flatnonzero(np.diff(groundtruth.video_offsets)))
        prediction = RelationColumns.from_dicts(prediction, scores=True, videos=evaluated)
    return groundtruth, prediction


def evaluate_relations(
    groundtruth: RelationsByVideo | ColumnarRelations,
    prediction: RelationsByVideo | ColumnarRelations,
    viou_threshold: float = 0.5,
    det_nreturns: Sequence[int] = (50, 100),
    tag_nreturns: Sequence[int] = (1, 5, 10),
    per_video: bool = False,
    *,
    check_boxes: str = "used",
    impl: str = "auto",
) -> dict[str, Any]:
    """Official VidVRD relation detection and tagging metrics (VidVRD-helper ``visual_relation_detection.py``).

    Returns ``{"mAP", "R@<k>" for k in det_nreturns, "P@<k>" for k in tag_nreturns}`` as floats equal to the
    official ``evaluate`` on the same input (definitions and the empty cases in the module docstring), plus
    ``"per_video": {video: AP}`` over the videos with ground truth when ``per_video`` is true.

    ``check_boxes="used"`` (default) reads and checks the box values of the trajectories the matching compares
    (see the module docstring): a malformed box there raises ``ValueError`` naming the video, the relation and the
    field; one that no comparison reaches cannot change a metric and is not read. ``"all"`` checks every box of every
    evaluated relation first (several times slower on dicts). Fields and box counts are checked everywhere in
    either mode. ``impl``: ``"auto"`` (C++ when built, else the reference, which checks every box), ``"cpp"``,
    ``"ref"``.

    Either side may also be columnar: :class:`~uasan.evaluation.RelationColumns` (in memory, its boxes checked when
    it was built) or a relation file read lazily (:func:`~uasan.evaluation.read_predictions` with ``lazy=True``);
    the arrays then go to the C++ matcher in one call, and ``check_boxes="used"`` parses only the trajectories the
    matching compares.
    """
    op = "evaluate_relations"
    if impl not in ("auto", "cpp", "ref"):
        raise ValueError(f"{op}: expected impl to be one of ('auto', 'cpp', 'ref'), but got {impl!r}")
    if check_boxes not in ("all", "used"):
        raise ValueError(f"{op}: expected check_boxes to be 'all' or 'used', but got {check_boxes!r}")
    if impl == "auto" and not _ext.HAS_EXT:
        _ext.warn_fallback()
        impl = "ref"
    columnar = isinstance(groundtruth, ColumnarRelations) or isinstance(prediction, ColumnarRelations)
    if impl == "ref":
        if columnar:
            groundtruth, prediction = _as_dicts(groundtruth), _as_dicts(prediction)
        return evaluate_relations_ref(groundtruth, prediction, viou_threshold, det_nreturns, tag_nreturns, per_video)
    thr, det_nreturns, tag_nreturns = _check_options(op, viou_threshold, det_nreturns, tag_nreturns)
    if columnar:
        from uasan.evaluation.tables import evaluate_tables, summarise_tables

        gt, pred = _as_columns(op, groundtruth, prediction)
        res = evaluate_tables(op, gt, pred, thr, det_nreturns, tag_nreturns, all_boxes=check_boxes == "all")
        return summarise_tables(res, det_nreturns, tag_nreturns, per_video)
    _check_videos(op, "groundtruth", groundtruth)
    _check_videos(op, "prediction", prediction)
    gt = groundtruth if type(groundtruth) is dict else dict(groundtruth)
    pred = prediction if type(prediction) is dict else dict(prediction)
    det_k = np.asarray(det_nreturns, dtype=np.int64)
    tag_k = np.asarray(tag_nreturns, dtype=np.int64)
    C = _ext.ext()
    try:
        result = C.eval_relations_dicts(gt, pred, thr, det_k, tag_k, check_boxes == "all")
    except ValueError as exc:
        if not (len(exc.args) == 4 and exc.args[0] == _RECHECK):
            raise
        _recheck(op, gt, pred, *exc.args[1:])  # raises the precise message for invalid input
        # Valid input in types the C++ reader does not take: normalise the evaluated videos and read again.
        videos = {vid for vid, rels in gt.items() if len(_relation_list(op, "groundtruth", vid, rels))}
        gt = _normalised(op, gt, "groundtruth", False, videos)
        pred = _normalised(op, pred, "prediction", True, videos)
        result = C.eval_relations_dicts(gt, pred, thr, det_k, tag_k, check_boxes == "all")
    vids, ap, det_hits, tag_prec, n_tag, n_gt, n_pred = result
    hits = {k: int(det_hits[:, j].sum()) for j, k in enumerate(det_nreturns)}
    tags = {
        k: [tag_prec[v, j] if min(k, n_tag[v]) > 0 else 0.0 for v in range(len(vids))]
        for j, k in enumerate(tag_nreturns)
    }
    video_gt = [len(gt[vid]) for vid in vids]  # the evaluated videos are those with ground truth
    return _summarise(
        dict(zip(vids, ap.tolist(), strict=True)), hits, n_gt, n_pred, tags, det_nreturns, tag_nreturns, per_video,
        (det_hits, video_gt),
    )  # fmt: skip
