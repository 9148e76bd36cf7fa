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
:func:`uasan.ops.viou_ref` and is the reference the fast path is tested against.

Bad input raises ``ValueError`` naming the argument, the video, the relation index and the field. Predictions
for videos without ground truth are ignored unchecked, as the official code ignores them. By default
(``check_boxes="all"``) every box of every evaluated relation is checked. ``check_boxes="used"`` reads boxes
lazily, only the trajectories the matching actually compares (a prediction is read only when it shares its triplet
with a not yet matched ground truth whose volume within the common frames could reach the threshold): the other
boxes cannot change any metric, and reading nested Python box lists is memory-bound, so this is several times
faster on VidVRD-sized inputs; the relation fields and box counts are still checked everywhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from uasan import _ext

Relation = Mapping[str, Any]
RelationsByVideo = Mapping[Any, Sequence[Relation]]

_EPS32 = np.finfo(np.float32).eps


# ----------------------------------------------------------------------------------------------------------------
# input checks shared by both paths
# ----------------------------------------------------------------------------------------------------------------


def _is_seq(x: Any) -> bool:
    """A list-like value (NumPy arrays included), not a string or a mapping."""
    return isinstance(x, (Sequence, np.ndarray)) and not isinstance(x, (str, bytes))


def _where(op: str, arg: str, vid: Any, i: int, field: str | None = None) -> str:
    return f"{op}: {arg}[{vid!r}][{i}]" + (f" field {field!r}" if field else "")


def _check_options(op: str, viou_threshold: Any, det_nreturns: Any, tag_nreturns: Any) -> tuple:
    if isinstance(viou_threshold, bool) or not isinstance(viou_threshold, numbers.Real) or math.isnan(viou_threshold):
        raise ValueError(f"{op}: expected viou_threshold to be a real number, but got {viou_threshold!r}")

    def ks(name: str, value: Any) -> tuple[int, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{op}: expected {name} to be a sequence of non-negative integers, but got {value!r}")
        out = []
        for k in value:
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
                raise ValueError(f"{op}: expected {name} to hold non-negative integers, but got {k!r}")
            out.append(int(k))
        if len(set(out)) != len(out):  # the official code would count a repeated K twice
            raise ValueError(f"{op}: expected {name} to hold distinct values, but got {value!r}")
        return tuple(out)

    return float(viou_threshold), ks("det_nreturns", det_nreturns), ks("tag_nreturns", tag_nreturns)


def _check_videos(op: str, arg: str, data: Any) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{op}: expected {arg} to be a dict of video id -> list of relations, got {type(data).__name__}"
        )


def _relation_list(op: str, arg: str, vid: Any, rels: Any) -> Sequence[Relation]:
    if not _is_seq(rels):
        raise ValueError(f"{op}: expected {arg}[{vid!r}] to be a list of relations, but got {type(rels).__name__}")
    return rels


def _parse_triplet(op: str, arg: str, vid: Any, i: int, triplet: Any) -> tuple:
    if not _is_seq(triplet) or len(triplet) != 3:
        raise ValueError(
            f"{_where(op, arg, vid, i, 'triplet')}: expected [subject, predicate, object], got {triplet!r}"
        )
    t = tuple(triplet)
    try:
        hash(t)
    except TypeError:
        raise ValueError(
            f"{_where(op, arg, vid, i, 'triplet')}: expected hashable categories, got {triplet!r}"
        ) from None
    return t


def _as_frame(x: Any) -> int | None:
    if type(x) is int:
        return x
    if isinstance(x, bool):
        return None
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real) and math.isfinite(x) and float(x).is_integer():
        return int(x)
    return None


def _parse_duration(op: str, arg: str, vid: Any, i: int, duration: Any) -> tuple[int, int]:
    if not _is_seq(duration) or len(duration) != 2:
        raise ValueError(f"{_where(op, arg, vid, i, 'duration')}: expected [begin, end), got {duration!r}")
    b, e = _as_frame(duration[0]), _as_frame(duration[1])
    if b is None or e is None or not 0 <= b < e:
        raise ValueError(
            f"{_where(op, arg, vid, i, 'duration')}: expected integer frames 0 <= begin < end, got {duration!r}"
        )
    return b, e


def _check_traj_len(op: str, arg: str, vid: Any, i: int, field: str, traj: Any, frames: int) -> None:
    try:
        n = len(traj)
    except TypeError:
        n = None
    if n is None or isinstance(traj, (str, bytes, Mapping)):
        raise ValueError(f"{_where(op, arg, vid, i, field)}: expected a list of [x1, y1, x2, y2] boxes")
    if n != frames:
        raise ValueError(
            f"{_where(op, arg, vid, i, field)}: expected one box per frame of the duration ({frames}), but got {n}"
        )


def _parse_score(op: str, arg: str, vid: Any, i: int, score: Any) -> float:
    if type(score) is float:
        s = score
    elif isinstance(score, numbers.Real) and not isinstance(score, bool):
        s = float(score)
    else:
        raise ValueError(f"{_where(op, arg, vid, i, 'score')}: expected a real number, got {score!r}")
    if not math.isfinite(s):
        raise ValueError(f"{_where(op, arg, vid, i, 'score')}: expected a finite number, got {score!r}")
    return s


def parse_relation(op: str, arg: str, vid: Any, i: int, rel: Any, with_score: bool) -> tuple:
    """Checks one relation dict (everything but the box values) -> (triplet, begin, end, score, sub, obj).

    Raises ``ValueError`` naming ``arg[vid][i]`` and the field: a missing field, a triplet that is not three
    hashable categories, a duration that is not integer frames ``0 <= begin < end``, trajectories whose box count
    differs from ``end - begin``, a score that is not a finite real number.
    """
    if not isinstance(rel, Mapping):
        raise ValueError(f"{_where(op, arg, vid, i)}: expected a relation dict, but got {type(rel).__name__}")
    try:
        triplet = rel["triplet"]
        duration = rel["duration"]
        sub = rel["sub_traj"]
        obj = rel["obj_traj"]
        score = rel["score"] if with_score else None
    except KeyError as exc:
        raise ValueError(f"{_where(op, arg, vid, i)}: missing field {exc.args[0]!r}") from None
    t = _parse_triplet(op, arg, vid, i, triplet)
    b, e = _parse_duration(op, arg, vid, i, duration)
    _check_traj_len(op, arg, vid, i, "sub_traj", sub, e - b)
    _check_traj_len(op, arg, vid, i, "obj_traj", obj, e - b)
    s = _parse_score(op, arg, vid, i, score) if with_score else 0.0
    return t, b, e, s, sub, obj


def _boxes_array(op: str, arg: str, vid: Any, i: int, field: str, traj: Any) -> np.ndarray:
    """One trajectory as a (T, 4) float64 array of finite boxes with x2 >= x1 and y2 >= y1."""
    where = _where(op, arg, vid, i, field)
    try:
        arr = np.asarray(traj, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a list of [x1, y1, x2, y2] boxes of numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: expected a list of [x1, y1, x2, y2] boxes, got an array of shape {arr.shape}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        j = int(np.argmin(finite))
        raise ValueError(f"{where}: expected finite coordinates, but box {j} is {arr[j].tolist()}")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"{where}: expected boxes with x2 >= x1 and y2 >= y1, but box {j} is {arr[j].tolist()}")
    return arr


def _summarise(
    ap: dict[Any, float],
    hits: dict[int, int],
    n_gt: int,
    n_pred: int,
    tag_prec: dict[int, list],
    det_nreturns: tuple[int, ...],
    tag_nreturns: tuple[int, ...],
    per_video: bool,
) -> dict[str, Any]:
    """The official ``evaluate`` tail: np.mean over per-video APs and precisions, float32 recalls."""
    out: dict[str, Any] = {}
    out["mAP"] = float(np.mean(list(ap.values()))) if ap else 0.0
    for k in det_nreturns:
        # rec[-1] of the float32 cumsum over every video's top K: the hit count over the ground-truth count.
        rec = np.float32(hits[k]) / np.maximum(n_gt, _EPS32)
        out[f"R@{k}"] = float(rec) if n_gt and n_pred else 0.0
    for k in tag_nreturns:
        # The list mixes np.float32 precisions and Python 0.0 exactly like the official one, so np.mean promotes
        # and accumulates the same way.
        out[f"P@{k}"] = float(np.mean(tag_prec[k])) if ap else 0.0
    if per_video:
        out["per_video"] = {vid: float(v) for vid, v in ap.items()}
    return out


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

    Same inputs, checks and result as :func:`evaluate_relations` (see the module docstring for the definitions).
    """
    op = "evaluate_relations_ref"
    thr, det_nreturns, tag_nreturns = _check_options(op, viou_threshold, det_nreturns, tag_nreturns)
    _check_videos(op, "groundtruth", groundtruth)
    _check_videos(op, "prediction", prediction)
    ap: dict[Any, float] = {}
    hits = dict.fromkeys(det_nreturns, 0)
    tag_prec: dict[int, list] = {k: [] for k in tag_nreturns}
    n_gt = n_pred = 0
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
        for k in det_nreturns:
            hits[k] += int(tp[:k].sum())

        # tagging: distinct triplets in score order
        gt_triplets = {g[0] for g in gts}
        distinct = list(dict.fromkeys(p[0] for p in preds))
        _, tprec = _float32_curves(np.array([t in gt_triplets for t in distinct], dtype=bool), len(gt_triplets))
        for k in tag_nreturns:
            cut = min(k, len(distinct))
            tag_prec[k].append(tprec[cut - 1] if cut > 0 else 0.0)
    return _summarise(ap, hits, n_gt, n_pred, tag_prec, det_nreturns, tag_nreturns, per_video)


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


def evaluate_relations(
    groundtruth: RelationsByVideo,
    prediction: RelationsByVideo,
    viou_threshold: float = 0.5,
    det_nreturns: Sequence[int] = (50, 100),
    tag_nreturns: Sequence[int] = (1, 5, 10),
    per_video: bool = False,
    *,
    check_boxes: str = "all",
    impl: str = "auto",
) -> dict[str, Any]:
    """Official VidVRD relation detection and tagging metrics (VidVRD-helper ``visual_relation_detection.py``).

    Returns ``{"mAP", "R@<k>" for k in det_nreturns, "P@<k>" for k in tag_nreturns}`` as floats equal to the
    official ``evaluate`` on the same input (definitions and the empty cases in the module docstring), plus
    ``"per_video": {video: AP}`` over the videos with ground truth when ``per_video`` is true.

    ``check_boxes="all"`` checks every box of every evaluated relation; ``"used"`` reads and checks only the
    trajectories the matching compares (see the module docstring), which is several times faster.
    ``impl``: ``"auto"`` (C++ when built, else the reference), ``"cpp"``, ``"ref"``.
    """
    op = "evaluate_relations"
    if impl not in ("auto", "cpp", "ref"):
        raise ValueError(f"{op}: expected impl to be one of ('auto', 'cpp', 'ref'), but got {impl!r}")
    if check_boxes not in ("all", "used"):
        raise ValueError(f"{op}: expected check_boxes to be 'all' or 'used', but got {check_boxes!r}")
    if impl == "auto" and not _ext.HAS_EXT:
        _ext.warn_fallback()
        impl = "ref"
    if impl == "ref":
        return evaluate_relations_ref(groundtruth, prediction, viou_threshold, det_nreturns, tag_nreturns, per_video)
    thr, det_nreturns, tag_nreturns = _check_options(op, viou_threshold, det_nreturns, tag_nreturns)
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
    return _summarise(
        dict(zip(vids, ap.tolist(), strict=True)), hits, n_gt, n_pred, tags, det_nreturns, tag_nreturns, per_video
    )
