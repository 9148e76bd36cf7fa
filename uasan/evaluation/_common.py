"""Input checks shared by the evaluation paths (dicts, columns, files) and the official ``evaluate`` tail.

Bad input raises ``ValueError`` naming the argument, the video, the relation index and the field (see
:mod:`uasan.evaluation.relations` for the definitions).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Relation = Mapping[str, Any]
RelationsByVideo = Mapping[Any, Sequence[Relation]]

_EPS32 = np.finfo(np.float32).eps


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
    video_counts: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """The official ``evaluate`` tail: np.mean over per-video APs and precisions, float32 recalls. With
    ``per_video``: ``"per_video"`` {video: AP}, and from ``video_counts`` = (hits (V, len(det_nreturns)), n_gt (V,)) in
    the order of ``ap``: ``"per_video_hits"`` {video: [hits among its top K for each K]}, ``"per_video_gt"`` {video:
    ground-truth relations} — what a bootstrap over videos needs (:mod:`uasan.evaluation.bootstrap`)."""
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
        if video_counts is not None:
            vh, vg = video_counts
            out["per_video_hits"] = {vid: [int(h) for h in vh[i]] for i, vid in enumerate(ap)}
            out["per_video_gt"] = {vid: int(vg[i]) for i, vid in enumerate(ap)}
    return out
