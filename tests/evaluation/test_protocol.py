"""Open-vocabulary splits, the mode × split driver, trajectory recall and the RelationEvaluator class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.evaluation.gen import dataset
from tests.evaluation.test_relations import A, B, C, D, assert_same, hand_case, rel
from uasan.evaluation import (
    RelationColumns,
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
    """RePro's definition (FACTS §C), worked out by hand. Boxes are inclusive-pixel squares over 3 frames: A = 10 x 10
    (volume 300); A9 = 10 x 9 inside A (vIoU with A: 270 / 300 = 0.9); A8 = 10 x 8 (0.8); A5 = 10 x 5 (exactly 0.5);
    F far from all of them."""
    A, A9, A8, A5 = ([[0, 0, 9, h]] * 3 for h in (9, 8, 7, 4))
    F = [[50, 50, 59, 59]] * 3
    gt = {
        "s1": [traj("class", "dog", A), traj("class", "cat", F), traj("class", "dog", A9)],
        "s2": [traj("category", "dog", A)],
        "s3": [traj("class", "dog", A)],  # no proposal file: not counted
        "s4": [traj("class", "dog", A)],  # a proposal file without proposals: counted, never hit
        "s6": [traj("class", "dog", A), traj("class", "dog", A)],  # the same box twice
        "s7": [traj("class", "dog", A), traj("class", "cat", A8)],
    }
    props = {
        "s1": [
            traj("label", "dog", A, score=0.9),  # vIoU 1.0 with dog A, 0.9 with dog A9: its argmax is A only
            traj("label", "dog", F, score=0.8),  # right place, wrong class: masked to 0
            traj("label", "cat", F, score=0.1),  # the cat, 4th by score
            traj("label", "dog", A, score=0.85),  # A again: a ground truth counts once
        ],
        "s2": [traj("label", "dog", A5, score=1.0)],  # vIoU exactly 0.5: not > 0.5
        "s4": [],
        "s5": [traj("label", "dog", A, score=1.0)],  # no ground truth: nothing to count
        "s6": [traj("label", "dog", A, score=1.0)],  # tie between the two: the first only
        "s7": [traj("label", "cat", A, score=1.0)],  # 1.0 with the dog (masked), 0.8 with the cat: the cat
    }
    # hits at K = 1, 2, 3, 4 per segment: s1 1, 1, 1, 2; s2 0; s4 0; s6 1; s7 1. Ground truth: 3 + 1 + 1 + 2 + 2 = 9.
    out = trajectory_recall(gt, props, ks=(1, 2, 3, 4, 10))
    assert out == {"R@1": 3 / 9, "R@2": 3 / 9, "R@3": 3 / 9, "R@4": 4 / 9, "R@10": 4 / 9}
    assert trajectory_recall({"s1": gt["s1"]}, {"s1": props["s1"]}, ks=(3, 4)) == {"R@3": 1 / 3, "R@4": 2 / 3}
    # "any proposal of the class above the threshold" would give 2/3 at K = 1 here; RePro's argmax gives 1/3
    assert trajectory_recall({"s1": gt["s1"]}, {"s1": props["s1"]}, ks=(1,)) == {"R@1": 1 / 3}
    # a micro-average: s1 (1 of 3) and s6 (1 of 2) give 2/5, not the mean of 1/3 and 1/2
    assert trajectory_recall(gt, {k: props[k] for k in ("s1", "s6")}, ks=(1,)) == {"R@1": 2 / 5}
    assert trajectory_recall({}, props) == {"R@5": 0.0, "R@10": 0.0}
    assert trajectory_recall(gt, {}, ks=(5,)) == {"R@5": 0.0}  # no proposal file at all: nothing counted
    # fstart is relative to the segment. Frames [1, 4) against [0, 3): vIoU = 200 / (300 + 300 - 200) = 0.5, not
    # > 0.5; frames [1, 3): 200 / (300 + 200 - 200) = 2/3.
    shifted = {"s2": [traj("label", "dog", A, fstart=1, score=1.0)]}
    assert trajectory_recall({"s2": gt["s2"]}, shifted, ks=(1,)) == {"R@1": 0.0}
    inside = {"s2": [traj("label", "dog", A[:2], fstart=1, score=1.0)]}
    assert trajectory_recall({"s2": gt["s2"]}, inside, ks=(1,)) == {"R@1": 1.0}
    with pytest.raises(ValueError, match=r"proposals\['s1'\]\[0\] field 'score'"):
        trajectory_recall(gt, {"s1": [traj("label", "dog", A)]})
    with pytest.raises(ValueError, match=r"groundtruth\['s1'\]\[0\]: missing field 'class'"):
        trajectory_recall({"s1": [{"bboxes": A}]}, props)
    with pytest.raises(ValueError, match=r"viou_threshold in \[0, 1\)"):
        trajectory_recall(gt, props, viou_threshold=1.5)


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
    with pytest.raises(TypeError, match="viou"):
        RelationEvaluator(gt, viou=0.5)  # a metric keyword evaluate_relations does not take
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


@pytest.mark.parametrize("gt_columns", [False, True])
@pytest.mark.parametrize("videos", ["all", "processed"])
def test_relation_evaluator_columns(rng, gt_columns, videos):
    """Columns of many videos, dicts of others, columnar ground truth: the same metrics as the reference on the
    same relations; a video given twice or unknown is refused by name."""
    gt, pred = dataset(rng, n_videos=6)
    known = {vid: rels for vid, rels in pred.items() if vid in gt}
    vids = sorted(known)
    as_columns, as_dicts = vids[: len(vids) // 2 + 1], vids[len(vids) // 2 + 1 :]
    gt_in = RelationColumns.from_dicts(gt, scores=False) if gt_columns else gt
    ev = RelationEvaluator(gt_in, objects=None, predicates=None, per_video=True, videos=videos)
    ev.process_columns(RelationColumns.from_dicts({v: known[v] for v in as_columns}, scores=True))
    for vid in as_dicts[:-1]:  # the last one is never processed
        ev.process(vid, known[vid])
    seen = as_columns + as_dicts[:-1]
    got = ev.evaluate()
    ref_gt = gt if videos == "all" else {v: gt[v] for v in seen}
    want = evaluate_relations_ref(ref_gt, {v: known[v] for v in seen}, per_video=True)
    np.testing.assert_allclose([got[k] for k in ("mAP", "R@50", "R@100", "P@1", "P@5")],
                               [want[k] for k in ("mAP", "R@50", "R@100", "P@1", "P@5")], atol=1e-9)  # fmt: skip
    assert got["per_video"].keys() == want["per_video"].keys()
    with pytest.raises(ValueError, match=f"{as_columns[0]!r} was already"):
        ev.process(as_columns[0], [])
    with pytest.raises(ValueError, match=f"{as_columns[0]!r} was already processed"):
        ev.process_columns(RelationColumns.from_dicts({as_columns[0]: known[as_columns[0]]}, scores=True))
    with pytest.raises(ValueError, match="'ghost' is not in the ground truth"):
        ev.process_columns(RelationColumns.from_dicts({"ghost": []}, scores=True))
    with pytest.raises(ValueError, match="RelationColumns with scores"):
        ev.process_columns(RelationColumns.from_dicts({"x": []}, scores=False))
    ev.reset()
    ev.process_columns(RelationColumns.from_dicts({vids[0]: known[vids[0]]}, scores=True))
    assert ev.evaluate()["mAP"] == pytest.approx(
        evaluate_relations_ref(gt if videos == "all" else {vids[0]: gt[vids[0]]}, {vids[0]: known[vids[0]]})["mAP"]
    )


def test_relation_evaluator_lazy_prediction_file(rng, tmp_path):
    """A prediction file read lazily goes in as it is, alone or beside dicts."""
    from uasan.evaluation import read_predictions

    gt, pred = dataset(rng, n_videos=5)
    known = {vid: rels for vid, rels in pred.items() if vid in gt}
    vids = sorted(known)
    path = RelationColumns.from_dicts({v: known[v] for v in vids[1:]}, scores=True).write_json(tmp_path / "p.json")
    want = evaluate_relations_ref(gt, known)
    for with_dicts in (False, True):
        ev = RelationEvaluator(gt)
        ev.process_columns(read_predictions(path, lazy=True))
        if with_dicts:
            ev.process(vids[0], known[vids[0]])
        ref = want if with_dicts else evaluate_relations_ref(gt, {v: known[v] for v in vids[1:]})
        np.testing.assert_allclose([ev.evaluate()[k] for k in ("mAP", "R@50", "P@5")],
                                   [ref[k] for k in ("mAP", "R@50", "P@5")], atol=1e-9)  # fmt: skip
