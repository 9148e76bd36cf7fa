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
    check_boxes: str = "all",
) -> dict[str, dict[str, dict[str, float]]]:
    """Relation detection (mAP, R@50, R@100) and tagging (P@1, P@5, P@10) per mode × split.

    ``predictions`` maps a mode (``"SGDet"``, ``"SGCls"``, ``"PredCls"``, or any label) to a prediction dict in
    the official format. Each split in ``splits`` filters the ground truth (:func:`filter_groundtruth`) with the
    categories of :func:`split_categories` on the split file ``split``, or with explicit ``categories``
    (``{name: (objects, predicates)}``, which takes precedence). Returns ``{mode: {split: metrics}}`` with the keys
    of :func:`~uasan.evaluation.evaluate_relations`.
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
    """Trajectory classification recall ``R@K`` per segment (DESIGN §5).

    ``groundtruth`` maps a segment tag to its ground-truth trajectories ``{fstart, bboxes, class}`` (``category``
    is accepted for ``class``), ``proposals`` maps a tag to classified proposals ``{fstart, bboxes, score, label}``
    (RePro layout; ``fstart`` relative to the segment, default 0). Definition: for a segment with ground truth, take
    its K highest-scored proposals (stable descending sort, ties keep the input order); a ground-truth trajectory is
    recalled if one of them has the same class (``label == class``) and vIoU > ``viou_threshold`` with it (official
    vIoU, inclusive pixels). One proposal may recall several ground-truth trajectories (no one-to-one matching).
    The segment's recall is recalled / ground-truth count; ``R@K`` is the mean over the segments with at least one
    ground-truth trajectory (a segment without proposals counts 0; proposals of segments without ground truth are
    ignored). No segment with ground truth → 0.0.
    """
    from uasan.ops import viou_matrix

    op = "trajectory_recall"
    ks = tuple(ks)
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in ks):
        raise ValueError(f"{op}: expected ks to hold non-negative integers, got {ks!r}")
    recalls: dict[int, list[float]] = {k: [] for k in ks}
    for tag, gts in groundtruth.items():
        gt = [_traj(op, "groundtruth", tag, i, t, ("class", "category")) for i, t in enumerate(gts)]
        if not gt:
            continue
        props = [_traj(op, "proposals", tag, i, t, ("label",)) for i, t in enumerate(proposals.get(tag, ()))]
        scores = []
        for i, t in enumerate(proposals.get(tag, ())):
            s = t.get("score")
            if isinstance(s, bool) or not isinstance(s, (int, float, np.number)) or not np.isfinite(s):
                raise ValueError(f"{op}: proposals[{tag!r}][{i}] field 'score': expected a finite number, got {s!r}")
            scores.append(float(s))
        order = sorted(range(len(props)), key=lambda j: scores[j], reverse=True)
        kmax = max(ks, default=0)
        top = [props[j] for j in order[:kmax]]
        if top:
            ov = np.asarray(viou_matrix([(s, b) for s, b, _ in gt], [(s, b) for s, b, _ in top]))  # (G, kmax)
            same = np.array([[g[2] == p[2] for p in top] for g in gt], dtype=bool)
            hit = (ov > viou_threshold) & same
        else:
            hit = np.zeros((len(gt), 0), dtype=bool)
        for k in ks:
            recalls[k].append(float(hit[:, :k].any(axis=1).mean()))
    return {f"R@{k}": float(np.mean(v)) if v else 0.0 for k, v in recalls.items()}
