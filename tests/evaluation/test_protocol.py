"""Open-vocabulary splits, the mode × split driver, trajectory recall and the RelationEvaluator class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.evaluation.gen import dataset
from tests.evaluation.test_relations import A, B, C, D, assert_same, hand_case, rel
from uasan.evaluation import (
    RelationEvaluator,
    evaluate_open_vocabulary,
    evaluate_relations,
    evaluate_relations_ref,
    filter_groundtruth,
    split_categories,
    trajectory_recall,
)

SPLIT_DIR = Path("/work/shared/data/splits")
SPLIT = {"objects": {"base": ["dog", "cat"], "novel": ["fox"]}, "predicates": {"base": ["chase"], "novel": ["bite"]}}


def test_split_categories():
    assert split_categories(SPLIT, "all") == (None, None)
    assert split_categories(SPLIT, "novel") == ({"dog", "cat", "fox"}, {"bite"})
    assert split_categories(SPLIT, "base") == ({"dog", "cat"}, {"chase"})
    with pytest.raises(ValueError, match="name"):
        split_categories(SPLIT, "seen")
    with pytest.raises(ValueError, match="objects"):
        split_categories({"objects": {}}, "novel")


@pytest.mark.skipif(not (SPLIT_DIR / "vidvrd.json").exists(), reason="shared split files not present")
@pytest.mark.parametrize("name", ["vidvrd", "vidor"])
def test_split_files(name):
    path = SPLIT_DIR / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path} missing")
    split = json.loads(path.read_text())
    objects, predicates = split_categories(split, "novel")
    assert set(split["objects"]["novel"]) <= objects and set(split["objects"]["base"]) <= objects
    assert predicates == set(split["predicates"]["novel"])
    assert not predicates & set(split["predicates"]["base"])


def test_filter_groundtruth():
    gt = {
        "v1": [rel(("dog", "chase", "cat"), 0, A, B), rel(("fox", "bite", "dog"), 0, A, B)],
        "v2": [rel(("horse", "bite", "dog"), 0, A, B)],
    }
    novel = filter_groundtruth(gt, *split_categories(SPLIT, "novel"))
    assert novel == {"v1": [gt["v1"][1]], "v2": []}  # every video kept; horse is in no object set
    base = filter_groundtruth(gt, *split_categories(SPLIT, "base"))
    assert base == {"v1": [gt["v1"][0]], "v2": []}
    assert filter_groundtruth(gt) == gt
    assert filter_groundtruth(gt, predicates={"bite"}) == {"v1": [gt["v1"][1]], "v2": gt["v2"]}
    with pytest.raises(ValueError, match=r"groundtruth\['v'\]\[0\] field 'triplet'"):
        filter_groundtruth({"v": [{"duration": [0, 1]}]})


def test_evaluate_open_vocabulary_filters_groundtruth_not_predictions():
    gt = {"v": [rel(("dog", "chase", "cat"), 0, A, B), rel(("fox", "bite", "dog"), 0, C, D)]}
    pred = {"v": [rel(("dog", "chase", "cat"), 0, A, B, 0.9), rel(("fox", "bite", "dog"), 0, C, D, 0.8)]}
    out = evaluate_open_vocabulary(
        gt, {"SGDet": pred, "PredCls": {"v": pred["v"][1:]}}, SPLIT, ("novel", "all", "base")
    )
    assert set(out) == {"SGDet", "PredCls"} and set(out["SGDet"]) == {"novel", "all", "base"}
    # novel keeps only the fox relation; the (unfiltered) chase prediction ranks first and is a false positive
    assert out["SGDet"]["novel"]["mAP"] == pytest.approx(0.5)
    assert out["SGDet"]["novel"]["P@1"] == 0.0 and out["SGDet"]["novel"]["P@5"] == pytest.approx(0.5)
    assert out["SGDet"]["all"]["mAP"] == 1.0 and out["SGDet"]["base"]["mAP"] == 1.0
    assert out["PredCls"]["novel"]["mAP"] == 1.0 and out["PredCls"]["base"]["mAP"] == 0.0
    assert set(out["SGDet"]["all"]) == {"mAP", "R@50", "R@100", "P@1", "P@5", "P@10"}
    explicit = evaluate_open_vocabulary(gt, {"SGCls": pred}, splits=("novel",), categories={"novel": (None, {"bite"})})
    assert explicit["SGCls"]["novel"] == out["SGDet"]["novel"]
    with pytest.raises(ValueError, match="split file"):
        evaluate_open_vocabulary(gt, {"SGDet": pred}, None, ("novel",))


def test_open_vocabulary_matches_filtered_reference(rng):
    gt, pred = dataset(rng, n_videos=6, n_cats=3, n_preds=2)
    split = {"objects": {"base": ["c0", "c1"], "novel": ["c2"]}, "predicates": {"base": ["p0"], "novel": ["p1"]}}
    out = evaluate_open_vocabulary(gt, {"SGDet": pred}, split, ("novel", "base", "all"))
    for name in ("novel", "base", "all"):
        expected = evaluate_relations_ref(filter_groundtruth(gt, *split_categories(split, name)), pred)
        assert_same(out["SGDet"][name], expected)


def traj(label_key, label, boxes, fstart=0, score=None):
    t = {"fstart": fstart, "bboxes": boxes, label_key: label}
    if score is not None:
        t["score"] = score
    return t


def test_trajectory_recall_by_hand():
    box, far = [[0, 0, 9, 9]] * 3, [[50, 50, 59, 59]] * 3
    gt = {
        "s1": [traj("class", "dog", box), traj("class", "cat", far)],
        "s2": [traj("category", "dog", box)],
        "s3": [],  # no ground truth: not counted
    }
    props = {
        "s1": [
            traj("label", "dog", box, score=0.9),  # recalls the dog at K >= 1
            traj("label", "dog", far, score=0.8),  # right place, wrong class
            traj("label", "cat", far, score=0.1),  # recalls the cat at K >= 3
        ],
        "s2": [traj("label", "dog", [[0, 0, 9, 4]] * 3, score=1.0)],  # vIoU exactly 0.5: not > 0.5
        "s3": [traj("label", "dog", box, score=1.0)],
    }
    out = trajectory_recall(gt, props, ks=(1, 2, 3, 10))
    assert out == {"R@1": pytest.approx(0.25), "R@2": pytest.approx(0.25), "R@3": 0.5, "R@10": 0.5}
    assert trajectory_recall({}, props) == {"R@5": 0.0, "R@10": 0.0}
    assert trajectory_recall(gt, {}, ks=(5,)) == {"R@5": 0.0}
    # fstart is relative to the segment. Frames [1, 4) against [0, 3): vIoU = 200 / (300 + 300 - 200) = 0.5, not
    # > 0.5; frames [1, 3): 200 / (300 + 200 - 200) = 2/3.
    shifted = {"s2": [traj("label", "dog", box, fstart=1, score=1.0)]}
    assert trajectory_recall({"s2": gt["s2"]}, shifted, ks=(1,)) == {"R@1": 0.0}
    inside = {"s2": [traj("label", "dog", box[:2], fstart=1, score=1.0)]}
    assert trajectory_recall({"s2": gt["s2"]}, inside, ks=(1,)) == {"R@1": 1.0}
    with pytest.raises(ValueError, match=r"proposals\['s1'\]\[0\] field 'score'"):
        trajectory_recall(gt, {"s1": [traj("label", "dog", box)]})
    with pytest.raises(ValueError, match=r"groundtruth\['s1'\]\[0\]: missing field 'class'"):
        trajectory_recall({"s1": [{"bboxes": box}]}, props)


def test_relation_evaluator_accumulates():
    gt, pred = hand_case()
    gt = {**gt, "w": [rel(("a", "b", "c"), 0, A, B)]}
    ev = RelationEvaluator(gt, per_video=True)
    for r in pred["v"][:2]:
        ev.process("v", [r])
    ev.process("v", pred["v"][2:])
    all_videos = ev.evaluate()
    assert_same(all_videos, evaluate_relations(gt, pred, per_video=True))
    assert all_videos["per_video"] == {"v": pytest.approx(0.75), "w": 0.0}
    ev2 = RelationEvaluator(gt, videos="processed")
    ev2.process("v", pred["v"])
    assert ev2.evaluate()["mAP"] == pytest.approx(0.75)
    ev.reset()
    assert ev.evaluate()["mAP"] == 0.0
    with pytest.raises(ValueError, match="'ghost' is not in the ground truth"):
        ev.process("ghost", [])
    with pytest.raises(ValueError, match="list of relation dicts"):
        ev.process("v", pred["v"][0])
    split_ev = RelationEvaluator(gt, objects={"dog", "cat"}, predicates={"watch"})
    split_ev.process("v", pred["v"])
    assert split_ev.evaluate()["mAP"] == 0.0  # no ground truth left in the split


def test_relation_evaluator_on_random_data(rng):
    gt, pred = dataset(rng, n_videos=5)
    ev = RelationEvaluator(gt)
    for vid, rels in pred.items():
        if vid in gt:
            ev.process(vid, rels)
    known = {vid: rels for vid, rels in pred.items() if vid in gt}
    np.testing.assert_allclose(
        [ev.evaluate()[k] for k in ("mAP", "R@50", "P@5")],
        [evaluate_relations_ref(gt, known)[k] for k in ("mAP", "R@50", "P@5")],
        atol=1e-9,
    )
