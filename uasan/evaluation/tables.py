"""The columnar evaluation: ground truth and predictions as :class:`~uasan.evaluation.columns.ColumnarRelations`
(in-memory columns or a relation file read lazily) handed to the C++ matcher (``csrc/eval.cpp``) in one call.

Same definitions and result as :func:`uasan.evaluation.evaluate_relations` (which calls this for columnar input):
the videos with at least one ground-truth relation are evaluated, in the ground truth's order; predictions of other
videos are ignored. Triplets are matched by equality of their ``(subject, predicate, object)`` tuples.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from uasan import _ext
from uasan.evaluation._common import _summarise
from uasan.evaluation.columns import ColumnarRelations

_BOX_ERROR = "uasan-eval-box"


class TableResult(NamedTuple):
    """Per evaluated video: ``videos``, ``ap`` (V,), ``det_hits`` (V, n_det), ``tag_prec`` (V, n_tag) float32,
    ``n_tag`` (V,); ``match`` (rows of ``prediction``,) int64: the ground truth (index within its video) each
    prediction took, -1 if none or not evaluated (``None`` unless asked for); ``n_gt``, ``n_pred``."""

    videos: list
    ap: np.ndarray
    det_hits: np.ndarray
    tag_prec: np.ndarray
    n_tag: np.ndarray
    match: np.ndarray | None
    n_gt: int
    n_pred: int
    video_gt: np.ndarray | None = None  # (V,) ground-truth relations per evaluated video


def _rows_of(offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the videos ``which`` (in that order) and their (len(which) + 1,) offsets."""
    counts = offsets[which + 1] - offsets[which]
    out_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rows = np.repeat(offsets[which] - out_off[:-1], counts) + np.arange(out_off[-1], dtype=np.int64)
    return rows, out_off


def evaluate_tables(
    op: str,
    groundtruth: ColumnarRelations,
    prediction: ColumnarRelations,
    viou_threshold: float,
    det_nreturns: tuple[int, ...],
    tag_nreturns: tuple[int, ...],
    *,
    all_boxes: bool,
    with_match: bool = False,
) -> TableResult:
    """Runs the C++ matcher on columnar inputs (options already checked)."""
    gt, pred = groundtruth, prediction
    if pred.score is None:
        raise ValueError(f"{op}: expected prediction to hold scores (the prediction format)")
    counts = np.diff(gt.video_offsets)
    evaluated = np.flatnonzero(counts > 0)
    videos = [gt.videos[v] for v in evaluated]
    gt_rows, gt_off = _rows_of(gt.video_offsets, evaluated)
    # predictions of each evaluated video, in that order (-1: a video without predictions)
    index = {vid: j for j, vid in enumerate(pred.videos)}
    pv = np.array([index.get(vid, -1) for vid in videos], dtype=np.int64)
    ext_off = np.concatenate([pred.video_offsets, pred.video_offsets[-1:]])  # video -1 -> an empty range
    pred_rows, pred_off = _rows_of(ext_off, np.where(pv >= 0, pv, len(pred.videos)))
    # one id space: ground-truth triplet ids, then ids for the predicted triplets absent from the ground truth
    gt_ids = {t: k for k, t in enumerate(gt.triplets)}
    remap = np.array([gt_ids.get(t, len(gt_ids) + k) for k, t in enumerate(pred.triplets)], dtype=np.int64)

    gsrc, gwhere = gt._box_source()
    psrc, pwhere = pred._box_source()
    g_len = gt.duration[:, 1] - gt.duration[:, 0]
    p_len = pred.duration[:, 1] - pred.duration[:, 0]
    g_table = np.stack([gt.triplet, gt.duration[:, 0], g_len, gwhere[0], gwhere[1]])[:, gt_rows]
    p_trip = remap[pred.triplet] if len(remap) else pred.triplet
    p_table = np.stack([p_trip, pred.duration[:, 0], p_len, pwhere[0], pwhere[1]])[:, pred_rows]
    det_k = np.asarray(det_nreturns, dtype=np.int64)
    tag_k = np.asarray(tag_nreturns, dtype=np.int64)
    try:
        ap, det_hits, tag_prec, n_tag, match = _ext.ext().eval_relations(
            gsrc, np.ascontiguousarray(g_table), gt_off, psrc, np.ascontiguousarray(p_table),
            pred.score[pred_rows], pred_off, viou_threshold, det_k, tag_k, all_boxes, with_match,
            gt_release_pages=gt._release_pages, pred_release_pages=pred._release_pages,
        )  # fmt: skip
    except ValueError as exc:
        if not (len(exc.args) == 5 and exc.args[0] == _BOX_ERROR):
            raise
        _, is_pred, r, which, problem = exc.args
        side, rows, arg = (pred, pred_rows, "prediction") if is_pred else (gt, gt_rows, "groundtruth")
        vid, i = side._locate(int(rows[r]))
        field = ("sub_traj", "obj_traj")[which]
        raise ValueError(f"{op}: {arg}[{vid!r}][{i}] field {field!r}: {problem}") from None
    full_match = None
    if with_match:
        full_match = np.full(len(pred), -1, dtype=np.int64)
        full_match[pred_rows] = match
    return TableResult(
        videos, ap, det_hits, tag_prec, n_tag, full_match, len(gt_rows), len(pred_rows), counts[evaluated]
    )


def summarise_tables(
    res: TableResult, det_nreturns: tuple[int, ...], tag_nreturns: tuple[int, ...], per_video: bool
) -> dict[str, Any]:
    """The official ``evaluate`` tail over :func:`evaluate_tables`' per-video numbers."""
    hits = {k: int(res.det_hits[:, j].sum()) for j, k in enumerate(det_nreturns)}
    tags = {
        k: [res.tag_prec[v, j] if min(k, res.n_tag[v]) > 0 else 0.0 for v in range(len(res.videos))]
        for j, k in enumerate(tag_nreturns)
    }
    ap = dict(zip(res.videos, res.ap.tolist(), strict=True))
    return _summarise(ap, hits, res.n_gt, res.n_pred, tags, det_nreturns, tag_nreturns, per_video,
                      (res.det_hits, res.video_gt))  # fmt: skip
