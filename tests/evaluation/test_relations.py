"""evaluate_relations (C++ matching) against evaluate_relations_ref (the official algorithm restated), hand-worked
cases, the empty cases and the input checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.common import needs_ext
from tests.evaluation.gen import dataset
from uasan import _ext
from uasan.evaluation import evaluate_open_vocabulary, evaluate_relations, evaluate_relations_ref

KEYS = ("mAP", "R@50", "R@100", "P@1", "P@5", "P@10")


def assert_same(got: dict, expected: dict, tol: float = 1e-6) -> None:
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        if k == "per_video":
            assert got[k].keys() == v.keys()
            for vid, ap in v.items():
                assert abs(got[k][vid] - ap) <= tol, (k, vid)
        elif k in ("per_video_hits", "per_video_gt"):  # counts: equal on every path
            assert got[k] == v, k
        else:
            assert abs(got[k] - v) <= tol, k


def rel(triplet, begin, boxes_s, boxes_o, score=None):
    r = {"triplet": list(triplet), "duration": [begin, begin + len(boxes_s)], "sub_traj": boxes_s, "obj_traj": boxes_o}
    if score is not None:
        r["score"] = score
    return r


A = [[0, 0, 9, 9]] * 2
B = [[20, 20, 29, 29]] * 2
C = [[100, 100, 109, 109]] * 2
D = [[120, 120, 129, 129]] * 2
TRIP, OTHER = ("dog", "chase", "cat"), ("dog", "watch", "cat")


def hand_case():
    """1 video, 2 ground truths of one triplet, 4 predictions (worked out in test_hand_worked_case)."""
    gt = {"v": [rel(TRIP, 0, A, B), rel(TRIP, 0, C, D)]}
    pred = {
        "v": [
            rel(TRIP, 0, A, B, 0.9),  # matches gt 0
            rel(TRIP, 0, A, B, 0.8),  # gt 0 taken, gt 1 does not overlap: false positive
            rel(TRIP, 0, C, D, 0.7),  # matches gt 1
            rel(OTHER, 0, A, B, 0.85),  # triplet not in the ground truth: false positive
        ]
    }
    return gt, pred


def hand_case_edited(**edit) -> str:
    """The hand case's prediction file as JSON text, with fields of prediction 1 replaced (``None``: deleted): a
    malformed file for the reader and CLI tests."""
    rels = [dict(r) for r in hand_case()[1]["v"]]
    for k, v in edit.items():
        if v is None:
            del rels[1][k]
        else:
            rels[1][k] = v
    return json.dumps({"results": {"v": rels}})


@pytest.mark.parametrize("fn", [evaluate_relations, evaluate_relations_ref])
def test_hand_worked_case(fn):
    # Score order: TP (.9), FP (.85), FP (.8), TP (.7). rec = [.5, .5, .5, 1], prec = [1, .5, 1/3, .5].
    # Envelope [1, .5, .5, .5]: AP = .5 * 1 + .5 * .5 = .75. R@K over 2 ground truths: top-1 and top-3 hold one hit,
    # top-4 both. Tagging: distinct triplets TRIP (hit), OTHER (miss): P@1 = 1, P@2 = P@5 = .5.
    gt, pred = hand_case()
    got = fn(gt, pred, det_nreturns=(1, 3, 4), tag_nreturns=(1, 2, 5), per_video=True)
    expected = {"mAP": 0.75, "R@1": 0.5, "R@3": 0.5, "R@4": 1.0, "P@1": 1.0, "P@2": 0.5, "P@5": 0.5}
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-7), k
    assert got["per_video"] == {"v": pytest.approx(0.75)}


@pytest.mark.parametrize("fn", [evaluate_relations, evaluate_relations_ref])
def test_threshold_is_inclusive_and_pixels_are_inclusive(fn):
    # [0, 0, 9, 9] has area 100 (inclusive pixels); [0, 0, 9, 4] area 50 inside it: vIoU = 50 / 100 = 0.5.
    gt = {"v": [rel(TRIP, 0, [[0, 0, 9, 9]], [[0, 0, 9, 9]])]}
    half = {"v": [rel(TRIP, 0, [[0, 0, 9, 4]], [[0, 0, 9, 9]], 1.0)]}
    less = {"v": [rel(TRIP, 0, [[0, 0, 9, 3]], [[0, 0, 9, 9]], 1.0)]}
    assert fn(gt, half)["mAP"] == 1.0
    assert fn(gt, less)["mAP"] == 0.0
    assert fn(gt, less, viou_threshold=0.4)["mAP"] == 1.0


@pytest.mark.parametrize("fn", [evaluate_relations, evaluate_relations_ref])
def test_tied_scores_keep_input_order(fn):
    # Stable sort: the false positive listed first stays first -> rec [0, 1], prec [0, .5] -> AP .5 (not 1).
    gt = {"v": [rel(TRIP, 0, A, B)]}
    pred = {"v": [rel(TRIP, 0, C, D, 0.5), rel(TRIP, 0, A, B, 0.5)]}
    assert fn(gt, pred)["mAP"] == pytest.approx(0.5)
    assert fn(gt, {"v": pred["v"][::-1]})["mAP"] == pytest.approx(1.0)


@pytest.mark.parametrize("fn", [evaluate_relations, evaluate_relations_ref])
def test_prediction_takes_the_best_free_ground_truth(fn):
    # gt 0 overlaps the first prediction at 0.5, gt 1 fully: the prediction takes gt 1, the second one gt 0.
    gt = {"v": [rel(TRIP, 0, [[0, 0, 9, 4]], [[0, 0, 9, 9]]), rel(TRIP, 0, [[0, 0, 9, 9]], [[0, 0, 9, 9]])]}
    pred = {"v": [rel(TRIP, 0, [[0, 0, 9, 9]], [[0, 0, 9, 9]], 0.9), rel(TRIP, 0, [[0, 0, 9, 4]], [[0, 0, 9, 9]], 0.8)]}
    assert fn(gt, pred)["mAP"] == 1.0


@pytest.mark.parametrize("fn", [evaluate_relations, evaluate_relations_ref])
def test_empty_cases(fn):
    zeros = dict.fromkeys(KEYS, 0.0)
    assert fn({}, {}) == zeros
    empty = {"per_video": {}, "per_video_hits": {}, "per_video_gt": {}}
    assert fn({"v": []}, {"v": [rel(TRIP, 0, A, B, 1.0)]}, per_video=True) == {**zeros, **empty}
    gt, _ = hand_case()
    missed = {"per_video": {"v": 0.0}, "per_video_hits": {"v": [0, 0]}, "per_video_gt": {"v": len(gt["v"])}}
    assert fn(gt, {}, per_video=True) == {**zeros, **missed}
    assert fn(gt, {"v": []}) == zeros
    # predictions of videos without ground truth are ignored (not even checked)
    got = fn(gt, {**hand_case()[1], "ghost": [{"triplet": "broken"}]})
    assert got["mAP"] == pytest.approx(0.75)


@needs_ext
@pytest.mark.parametrize("seed", range(4))
def test_fast_equals_ref_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    gt, pred = dataset(rng, n_videos=10)
    for thr in (0.5, 0.3, 0.0, 1.0):
        expected = evaluate_relations_ref(gt, pred, viou_threshold=thr, per_video=True)
        for check in ("all", "used"):
            got = evaluate_relations(gt, pred, viou_threshold=thr, per_video=True, check_boxes=check)
            assert_same(got, expected)


@needs_ext
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_videos=st.integers(1, 6),
    n_cats=st.integers(1, 3),
    n_preds=st.integers(1, 2),
    thr=st.sampled_from([0.5, 0.25, 0.75, 0.0]),
    det=st.lists(st.integers(0, 30), min_size=1, max_size=3, unique=True),
    tag=st.lists(st.integers(0, 12), min_size=1, max_size=3, unique=True),
)
def test_fast_equals_ref_hypothesis(seed, n_videos, n_cats, n_preds, thr, det, tag):
    gt, pred = dataset(np.random.default_rng(seed), n_videos=n_videos, n_cats=n_cats, n_preds=n_preds)
    kw = dict(viou_threshold=thr, det_nreturns=det, tag_nreturns=tag, per_video=True)
    expected = evaluate_relations_ref(gt, pred, **kw)
    assert_same(evaluate_relations(gt, pred, **kw), expected)
    assert_same(evaluate_relations(gt, pred, check_boxes="all", **kw), expected)


@needs_ext
def test_exotic_but_valid_types(rng):
    # NumPy trajectories and scalars, tuples, a non-dict mapping: normalised and read again, same result.
    gt, pred = dataset(rng, n_videos=5)
    expected = evaluate_relations(gt, pred)
    gt2 = {vid: [{**r, "triplet": tuple(r["triplet"]), "sub_traj": np.asarray(r["sub_traj"])} for r in rels]
           for vid, rels in gt.items()}  # fmt: skip
    pred2 = {vid: [{**r, "score": np.float32(r["score"]), "duration": np.asarray(r["duration"])} for r in rels]
             for vid, rels in pred.items()}  # fmt: skip
    assert_same(evaluate_relations(gt2, pred2), expected, tol=1e-6)
    assert_same(evaluate_relations_ref(gt2, pred2), expected, tol=1e-6)


def _bad_inputs():
    gt, pred = hand_case()

    def edit(which, field, value, i=0):
        g = {"v": [dict(r) for r in gt["v"]]}
        p = {"v": [dict(r) for r in pred["v"]]}
        target = g if which == "gt" else p
        if value is KeyError:
            del target["v"][i][field]
        else:
            target["v"][i][field] = value
        return g, p

    return [
        (edit("pred", "score", KeyError), r"prediction\['v'\]\[0\]: missing field 'score'"),
        (edit("pred", "score", float("nan")), r"prediction\['v'\]\[0\] field 'score': expected a finite"),
        (edit("pred", "score", "high"), r"field 'score': expected a real number"),
        (edit("gt", "duration", [0, 3]), r"groundtruth\['v'\]\[0\] field 'sub_traj': expected one box per frame"),
        (edit("pred", "duration", [2, 1]), r"field 'duration': expected integer frames 0 <= begin < end"),
        (edit("pred", "duration", [0.5, 2]), r"field 'duration'"),
        (edit("pred", "triplet", ["a", "b"]), r"field 'triplet': expected \[subject, predicate, object\]"),
        (edit("pred", "triplet", [["a"], "b", "c"]), r"field 'triplet': expected hashable"),
        (edit("pred", "obj_traj", [[0, 0, 9, 9], [0, 0, float("nan"), 9]]), r"field 'obj_traj': expected finite"),
        (edit("pred", "sub_traj", [[0, 0, 9, 9], [5, 0, 4, 9]]), r"field 'sub_traj': expected boxes with x2 >= x1"),
        (edit("gt", "obj_traj", [[0, 0, 9, 9], [0, 0, 9]]), r"groundtruth\['v'\]\[0\] field 'obj_traj'"),
        (edit("pred", "sub_traj", "boxes"), r"field 'sub_traj': expected a list of \[x1, y1, x2, y2\] boxes"),
        (({"v": "x"}, pred), r"expected groundtruth\['v'\] to be a list of relations"),
        (({"v": [1]}, pred), r"groundtruth\['v'\]\[0\]: expected a relation dict"),
        (([], pred), r"expected groundtruth to be a dict"),
        # the box count of a prediction whose triplet is not in the ground truth is checked in every mode
        (edit("pred", "sub_traj", [[0, 0, 9, 9]], i=3), r"prediction\['v'\]\[3\] field 'sub_traj': expected one box"),
        (edit("pred", "triplet", ["a", "b"], i=3), r"prediction\['v'\]\[3\] field 'triplet'"),
    ]


@pytest.mark.parametrize(
    "fn",
    [evaluate_relations, evaluate_relations_ref, lambda gt, pred: evaluate_relations(gt, pred, check_boxes="all")],
    ids=["default", "ref", "all"],
)
@pytest.mark.parametrize("case", range(len(_bad_inputs())))
def test_bad_input_names_video_and_field(fn, case):
    (gt, pred), pattern = _bad_inputs()[case]
    with pytest.raises(ValueError, match=pattern):
        fn(gt, pred)


@pytest.mark.parametrize(
    "kw", [{"viou_threshold": math.nan}, {"det_nreturns": [-1]}, {"det_nreturns": [5, 5]}, {"tag_nreturns": 5}]
)
def test_bad_options(kw):
    gt, pred = hand_case()
    for fn in (evaluate_relations, evaluate_relations_ref):
        with pytest.raises(ValueError, match=next(iter(kw))):
            fn(gt, pred, **kw)
    with pytest.raises(ValueError, match="check_boxes"):
        evaluate_relations(gt, pred, check_boxes="some")
    with pytest.raises(ValueError, match="impl"):
        evaluate_relations(gt, pred, impl="gpu")


@needs_ext
def test_used_mode_skips_boxes_that_cannot_matter():
    gt, pred = hand_case()
    pred["v"][3]["sub_traj"] = [[0, 0, -1, 9]] * 2  # triplet not in the ground truth: never compared
    assert evaluate_relations(gt, pred, check_boxes="used")["mAP"] == pytest.approx(0.75)
    pred["v"][0]["sub_traj"] = [[0, 0, -1, 9]] * 2  # compared: checked
    with pytest.raises(ValueError, match=r"prediction\['v'\]\[0\] field 'sub_traj'"):
        evaluate_relations(gt, pred, check_boxes="used")


# A box that is no box: reversed corners, NaN, three numbers, a string.
MALFORMED = [[0, 0, -1, 9], [0, 0, float("nan"), 9], [0, 0, 9], "box"]


@needs_ext
@pytest.mark.parametrize("box", MALFORMED, ids=["reversed", "nan", "short", "string"])
def test_default_checks_the_boxes_the_matching_uses(box):
    """The default (check_boxes="used", as evaluate_files): a malformed box in a prediction whose triplet has no
    ground truth is never compared, so it is accepted (same metrics); "all" refuses it. A malformed box of a
    prediction that the matching compares is refused in both modes, naming the video, the relation and the field."""
    gt, pred = hand_case()
    expected = evaluate_relations(gt, pred, check_boxes="all")
    pred["v"][3]["sub_traj"] = [[0, 0, 9, 9], box]  # OTHER: no ground truth of its triplet
    assert_same(evaluate_relations(gt, pred), expected)
    assert_same(evaluate_open_vocabulary(gt, {"SGDet": pred}, splits=("all",))["SGDet"]["all"],
                {k: expected[k] for k in KEYS})  # fmt: skip
    with pytest.raises(ValueError, match=r"prediction\['v'\]\[3\] field 'sub_traj'"):
        evaluate_relations(gt, pred, check_boxes="all")
    with pytest.raises(ValueError, match=r"prediction\['v'\]\[3\] field 'sub_traj'"):
        evaluate_relations_ref(gt, pred)

    gt, pred = hand_case()
    pred["v"][2]["obj_traj"] = [[100, 100, 109, 109], box]  # matched to ground truth 1
    for check in ("used", "all"):
        with pytest.raises(ValueError, match=r"prediction\['v'\]\[2\] field 'obj_traj'"):
            evaluate_relations(gt, pred, check_boxes=check)
    with pytest.raises(ValueError, match=r"prediction\['v'\]\[2\] field 'obj_traj'"):
        evaluate_relations(gt, pred)

    gt, pred = hand_case()
    gt["v"][1]["sub_traj"] = [[100, 100, 109, 109], box]  # the ground truth that prediction 2 matches
    for check in ("used", "all"):
        with pytest.raises(ValueError, match=r"groundtruth\['v'\]\[1\] field 'sub_traj'"):
            evaluate_relations(gt, pred, check_boxes=check)


@needs_ext
def test_array_interface_checks_its_inputs():
    C = _ext.ext()
    boxes = np.array([[0, 0, 9, 9]] * 2, dtype=np.float64)
    table = np.array([[0], [0], [1], [0], [1]], dtype=np.int64)  # triplet, begin, length, sub_row, obj_row
    off = np.array([0, 1], dtype=np.int64)
    k = np.array([1], dtype=np.int64)

    def call(gt_boxes=boxes, gt=table, gt_off=off, pred_boxes=boxes, pred=table, score=(1.0,), match=True):
        return C.eval_relations(gt_boxes, gt, gt_off, pred_boxes, pred, np.array(score), off, 0.5, k, k, True, match)

    ap, hits, tag, n_tag, match = call()
    assert ap.tolist() == [1.0] and hits.tolist() == [[1]] and tag.tolist() == [[1.0]] and n_tag.tolist() == [1]
    assert match.tolist() == [0] and call(match=False)[4] is None
    bad_rows = table.copy()
    bad_rows[3, 0] = 5
    with pytest.raises(ValueError, match="box rows"):
        call(gt=bad_rows)
    with pytest.raises(ValueError, match="finite score"):
        call(score=(np.nan,))
    with pytest.raises(ValueError, match="x2 >= x1"):
        call(pred_boxes=boxes[:, [2, 1, 0, 3]] - [0, 0, 1, 0])
    with pytest.raises(ValueError, match="offsets"):
        call(gt_off=np.array([0, 2]))
