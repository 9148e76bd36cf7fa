"""Open-vocabulary protocol: category splits, SGDet / SGCls / PredCls × split evaluation, trajectory recall.

Protocol (DESIGN §5, Gao et al. ICLR 2023): the ground truth is filtered to the target split, the predictions are
not. A ground-truth relation is kept iff its subject and object categories are in the split's object set and its
predicate is in the split's predicate set. Standard splits:

* ``"novel"``: all objects (base ∪ novel) × novel predicates;
* ``"base"``: base objects × base predicates;
* ``"all"``: everything (no filtering, categories outside the split file included).

A split file (``uasan.data.load_split(name)`` or ``data/splits/<dataset>.json``) holds
``{"objects": {"base": [...], "novel": [...]}, "predicates": {"base": [...], "novel": [...]}}``; the functions here
take that mapping or explicit category lists and never import :mod:`uasan.data`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from uasan.evaluation.columns import ColumnarRelations
from uasan.evaluation.relations import RelationsByVideo, evaluate_relations

SPLITS = ("novel", "all", "base")
MODES = ("SGDet", "SGCls", "PredCls")


def split_categories(split: Mapping[str, Any], name: str) -> tuple[frozenset | None, frozenset | None]:
    """(objects, predicates) of the standard split ``name`` of a split file; ``None`` means unrestricted."""
    if name not in SPLITS:
        raise ValueError(f"split_categories: expected name to be one of {SPLITS}, but got {name!r}")
    if name == "all":
        return None, None
    try:
        objects = split["objects"]
        predicates = split["predicates"]
        obj_base, obj_novel = list(objects["base"]), list(objects["novel"])
        pred_base, pred_novel = list(predicates["base"]), list(predicates["novel"])
    except (KeyError, TypeError) as exc:
        raise ValueError(
            "split_categories: expected split to hold objects.{base,novel} and predicates.{base,novel} lists, "
            f"but {exc!r}"
        ) from None
    if name == "novel":
        return frozenset(obj_base + obj_novel), frozenset(pred_novel)
    return frozenset(obj_base), frozenset(pred_base)


def filter_groundtruth(
    groundtruth: RelationsByVideo | ColumnarRelations,
    objects: Collection | None = None,
    predicates: Collection | None = None,
) -> dict[Any, list] | ColumnarRelations:
    """The ground truth restricted to a split: a relation ``[s, p, o]`` is kept iff ``s`` and ``o`` are in
    ``objects`` and ``p`` is in ``predicates`` (``None``: no restriction on that part). Every video is kept, with
    an empty list where nothing is left (such videos are then skipped by the evaluation). The relation dicts are
    shared, not copied. Columnar ground truth (:class:`~uasan.evaluation.RelationColumns`, a relation file) is
    filtered into the same kind."""
    if isinstance(groundtruth, ColumnarRelations):
        return groundtruth.filter(objects, predicates)
    if not isinstance(groundtruth, Mapping):
        raise ValueError(f"filter_groundtruth: expected groundtruth to be a dict, got {type(groundtruth).__name__}")
    objs = None if objects is None else frozenset(objects)
    preds = None if predicates is None else frozenset(predicates)
    out: dict[Any, list] = {}
    for vid, rels in groundtruth.items():
        kept = []
        for i, r in enumerate(rels):
            try:
                s, p, o = r["triplet"]
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"filter_groundtruth: groundtruth[{vid!r}][{i}] field 'triplet': expected [subject, predicate, "
                    "object]"
                ) from None
            if (objs is None or (s in objs and o in objs)) and (preds is None or p in preds):
                kept.append(r)
        out[vid] = kept
    return out


def evaluate_open_vocabulary(
    groundtruth: RelationsByVideo,
    predictions: Mapping[str, RelationsByVideo],
    split: Mapping[str, Any] | None = None,
    splits: Sequence[str] = ("novel", "all"),
    *,
    categories: Mapping[str, tuple[Collection | None, Collection | None]] | None = None,
    viou_threshold: float = 0.5,
    det_nreturns: Sequence[int] = (50, 100),
    tag_nreturns: Sequence[int] = (1, 5, 10),
    check_boxes: str = "used",
) -> dict[str, dict[str, dict[str, float]]]:
    """Relation detection (mAP, R@50, R@100) and tagging (P@1, P@5, P@10) per mode × split.

    ``predictions`` maps a mode (``"SGDet"``, ``"SGCls"``, ``"PredCls"``, or any label) to a prediction dict in
    the official format. Each split in ``splits`` filters the ground truth (:func:`filter_groundtruth`) with the
    categories of :func:`split_categories` on the split file ``split``, or with explicit ``categories``
    (``{name: (objects, predicates)}``, which takes precedence). Returns ``{mode: {split: metrics}}`` with the keys
    of :func:`~uasan.evaluation.evaluate_relations` (``check_boxes`` as there: ``"used"`` checks the box values the
    matching compares, ``"all"`` every box).
    """
    if not isinstance(predictions, Mapping):
        raise ValueError(f"evaluate_open_vocabulary: expected predictions to be a dict of mode -> predictions, "
                         f"got {type(predictions).__name__}")  # fmt: skip
    filtered = {}
    for name in splits:
        if categories is not None and name in categories:
            objects, preds = categories[name]
        elif name == "all":
            objects, preds = None, None
        elif split is None:
            raise ValueError(f"evaluate_open_vocabulary: split {name!r} needs the split file (split=) or categories")
        else:
            objects, preds = split_categories(split, name)
        filtered[name] = filter_groundtruth(groundtruth, objects, preds)
    return {
        mode: {
            name: evaluate_relations(gt, pred, viou_threshold, det_nreturns, tag_nreturns, check_boxes=check_boxes)
            for name, gt in filtered.items()
        }
        for mode, pred in predictions.items()
    }


# ----------------------------------------------------------------------------------------------------------------
# trajectory classification
# ----------------------------------------------------------------------------------------------------------------


def _traj(op: str, arg: str, tag: Any, i: int, t: Any, label_keys: tuple[str, ...]) -> tuple[int, np.ndarray, Any]:
    where = f"{op}: {arg}[{tag!r}][{i}]"
    if not isinstance(t, Mapping):
        raise ValueError(f"{where}: expected a trajectory dict, got {type(t).__name__}")
    label = next((t[k] for k in label_keys if k in t), None)
    if label is None:
        raise ValueError(f"{where}: missing field {label_keys[0]!r}")
    if "bboxes" not in t:
        raise ValueError(f"{where}: missing field 'bboxes'")
    start = t.get("fstart", 0)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"{where} field 'fstart': expected a non-negative integer, got {start!r}")
    try:
        boxes = np.asarray(t["bboxes"], dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError):
        raise ValueError(f"{where} field 'bboxes': expected a list of [x1, y1, x2, y2] boxes") from None
    if not np.isfinite(boxes).all() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError(f"{where} field 'bboxes': expected finite boxes with x2 >= x1 and y2 >= y1")
    return int(start), boxes, label


def trajectory_recall(
    groundtruth: Mapping[Any, Sequence[Mapping]],
    proposals: Mapping[Any, Sequence[Mapping]],
    ks: Iterable[int] = (5, 10),
    viou_threshold: float = 0.5,
) -> dict[str, float]:
    """Trajectory classification recall ``R@K`` (the paper's Table 1) as RePro's evaluation computes it
    (``tools/eval_traj_cls_both.py``: ``inference_for_vidvrd`` and ``eval_traj_recall_topK_per_seg``).

    ``groundtruth`` maps a segment tag to its ground-truth trajectories ``{fstart, bboxes, class}`` (``category``
    is accepted for ``class``) of the evaluated class split; ``proposals`` maps a tag to its classified proposals
    ``{fstart, bboxes, score, label}`` (RePro layout; ``fstart`` relative to the segment, default 0). A tag in
    ``proposals`` is a segment with a proposal file, even if its list is empty.

    Per segment of ``proposals`` with ground truth (G trajectories): its K highest-scored proposals (stable
    descending sort: ties keep the input order; RePro's ``torch.sort`` leaves them unspecified); their vIoU with the
    ground truth (official vIoU, inclusive pixels), set to 0 where the proposal's label differs from the ground
    truth's class; each proposal takes its best ground truth (argmax, the first on a tie) and hits it when that
    vIoU is ``> viou_threshold`` (strict); ``hits`` = the number of distinct ground-truth trajectories hit (a
    proposal hits at most one; two proposals on one ground truth count once). ``R@K`` = Σ hits / Σ G over those
    segments: a micro-average over ground-truth trajectories. The ground truth of a segment absent from
    ``proposals`` does not count (RePro evaluates the segments that have a proposal file); no counted ground truth
    → 0.0.
    """
    from uasan.ops import viou_matrix

    op = "trajectory_recall"
    ks = tuple(ks)
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in ks):
        raise ValueError(f"{op}: expected ks to hold non-negative integers, got {ks!r}")
    if isinstance(viou_threshold, bool) or not isinstance(viou_threshold, (int, float)) or not 0 <= viou_threshold < 1:
        raise ValueError(f"{op}: expected viou_threshold in [0, 1), got {viou_threshold!r}")
    for arg, data in (("groundtruth", groundtruth), ("proposals", proposals)):
        if not isinstance(data, Mapping):
            raise ValueError(f"{op}: expected {arg} to map segment tags to trajectory lists, got {type(data).__name__}")
    hits = dict.fromkeys(ks, 0)
    total = 0
    kmax = max(ks, default=0)
    for tag, items in proposals.items():
        gt = [
            _traj(op, "groundtruth", tag, i, t, ("class", "category")) for i, t in enumerate(groundtruth.get(tag, ()))
        ]
        if not gt:
            continue
        total += len(gt)
        props = [_traj(op, "proposals", tag, i, t, ("label",)) for i, t in enumerate(items)]
        scores = []
        for i, t in enumerate(items):
            s = t.get("score")
            if isinstance(s, bool) or not isinstance(s, (int, float, np.number)) or not np.isfinite(s):
                raise ValueError(f"{op}: proposals[{tag!r}][{i}] field 'score': expected a finite number, got {s!r}")
            scores.append(float(s))
        order = sorted(range(len(props)), key=lambda j: scores[j], reverse=True)  # stable
        top = [props[j] for j in order[:kmax]]
        if not top:
            continue
        ov = np.asarray(viou_matrix([(s, b) for s, b, _ in top], [(s, b) for s, b, _ in gt]), dtype=np.float64)
        ov[np.array([[p[2] != g[2] for g in gt] for p in top], dtype=bool)] = 0.0  # (K, G): other classes never hit
        best = ov.argmax(1)  # (K,) each proposal's ground truth
        hit = ov[np.arange(len(top)), best] > viou_threshold
        for k in ks:
            hits[k] += len(set(best[:k][hit[:k]].tolist()))
    return {f"R@{k}": hits[k] / total if total else 0.0 for k in ks}
