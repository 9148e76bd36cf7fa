"""Evaluation from files: the C++ readers (relation files, annotations) against json.load + the dict paths and the
reference, malformed files named by video / relation / field, the empty cases."""

from __future__ import annotations

import gc
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.common import needs_ext
from tests.evaluation.gen import dataset
from tests.evaluation.test_relations import assert_same, hand_case, hand_case_edited, rel
from uasan.evaluation import (
    evaluate_files,
    evaluate_relations,
    evaluate_relations_ref,
    filter_groundtruth,
    read_groundtruth,
    read_predictions,
)

pytestmark = needs_ext


def write(tmp_path, gt, pred, name="p"):
    gt_path, pred_path = tmp_path / f"{name}_gt.json", tmp_path / f"{name}_pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps({"version": "VERSION 1.0", "results": pred}))
    return gt_path, pred_path


@pytest.mark.parametrize("seed", range(4))
def test_files_equal_dicts_equal_reference(tmp_path, seed):
    gt, pred = dataset(np.random.default_rng(seed), n_videos=10)
    gt_path, pred_path = write(tmp_path, gt, pred)
    expected = evaluate_relations_ref(gt, pred, per_video=True)
    assert_same(evaluate_relations(gt, pred, per_video=True), expected)
    for check in ("used", "all"):
        got = evaluate_files(gt_path, pred_path, per_video=True, check_boxes=check, unknown_videos="ignore")
        assert_same(got, expected)
    lazy_gt, lazy_pred = read_groundtruth(gt_path, lazy=True), read_predictions(pred_path, lazy=True)
    assert_same(evaluate_relations(lazy_gt, lazy_pred, per_video=True), expected)
    gt_cols, pred_cols = read_groundtruth(gt_path), read_predictions(pred_path)
    assert_same(evaluate_relations(gt_cols, pred_cols, per_video=True), expected)
    assert_same(evaluate_relations(gt, pred_cols, per_video=True), expected)  # mixed dict / columns
    assert_same(evaluate_relations(gt_cols, pred, per_video=True), expected)
    assert_same(evaluate_relations(gt_cols, lazy_pred, impl="ref", per_video=True), expected)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_videos=st.integers(1, 5),
    thr=st.sampled_from([0.5, 0.25, 0.0, 1.0]),
    det=st.lists(st.integers(0, 30), min_size=1, max_size=3, unique=True),
    split=st.sampled_from([None, ({"c0", "c1"}, {"p0"}), ({"c0"}, None)]),
)
def test_files_hypothesis(tmp_path_factory, seed, n_videos, thr, det, split):
    gt, pred = dataset(np.random.default_rng(seed), n_videos=n_videos, n_cats=2, n_preds=2)
    gt_path, pred_path = write(tmp_path_factory.mktemp("h"), gt, pred)
    objects, predicates = split if split else (None, None)
    kw = dict(viou_threshold=thr, det_nreturns=det, tag_nreturns=(1, 5), per_video=True)
    expected = evaluate_relations_ref(filter_groundtruth(gt, objects, predicates), pred, **kw)
    got = evaluate_files(gt_path, pred_path, objects=objects, predicates=predicates, unknown_videos="ignore", **kw)
    assert_same(got, expected)


def test_read_predictions_gives_json_loads_values(tmp_path):
    # awkward number spellings: exponents, -0, long mantissas, integers; ids with escapes and non-ASCII text
    text = (
        '{"results": {"v\\u00e9\\ud83d\\ude00": [{"triplet": ["a\\"b", "p", "c"], "score": 1E-2, "duration": [0, 2], '
        '"sub_traj": [[0.1, 2e0, 1.7976931348623157e308, 3.000000000000000444], [-0, 0.30000000000000004, 5, 6]], '
        '"obj_traj": [[1, 1, 1, 1], [123456789.12345678, 0, 123456789.123456789, 1e-320]], "extra": [{"x": null}]}]},'
        ' "version": true}'
    )
    path = tmp_path / "p.json"
    path.write_text(text)
    cols = read_predictions(path)
    ref = json.loads(text)["results"]
    vid = next(iter(ref))
    assert cols.videos == (vid,) and cols.triplets == (tuple(ref[vid][0]["triplet"]),)
    want = np.array(ref[vid][0]["sub_traj"] + ref[vid][0]["obj_traj"], dtype=np.float64)
    assert (cols.boxes.view(np.int64) == want.view(np.int64)).all()  # bit for bit
    assert cols.score.tolist() == [0.01] and cols.duration.tolist() == [[0, 2]]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=4, max_size=4))
def test_numbers_round_trip(tmp_path_factory, xs):
    x1, y1, x2, y2 = xs
    box = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
    spellings = (json.dumps(box), "[" + ",".join(f"{v:.17e}" for v in box) + "]",
                 "[" + ",".join(f"{v:.3f}" for v in box) + "]")  # fmt: skip
    for text in spellings:
        rel = f'{{"triplet": [1, 2, 3], "score": 0, "duration": [0, 1], "sub_traj": [{text}], "obj_traj": [{text}]}}'
        doc = f'{{"results": {{"v": [{rel}]}}}}'
        path = tmp_path_factory.mktemp("n") / "p.json"
        path.write_text(doc)
        want = np.array(json.loads(text), dtype=np.float64)
        if not (want[2] >= want[0] and want[3] >= want[1]):  # rounding to 3 decimals may not change the order
            continue
        got = read_predictions(path).boxes[0]
        assert (got.view(np.int64) == want.view(np.int64)).all(), (text, got, want)


def _bad_files():
    good = hand_case()[1]
    with_rel = hand_case_edited  # prediction 1 of the hand case edited
    full = json.dumps({"results": good})
    return [
        (full[: len(full) // 2], r"p.json: not valid JSON \(line 1, column \d+"),
        ("", r"not valid JSON \(line 1, column 1"),
        (full + " x", r"not valid JSON .*extra data"),
        (full.replace('"v"', '"v\\q"'), r"not valid JSON .*escape"),
        (json.dumps([1]), r"p.json: expected an object with a 'results' field"),
        (json.dumps({"version": 1}), r"p.json: expected an object with a 'results' field"),
        (json.dumps({"results": [1]}), r"p.json: field 'results': expected an object"),
        (with_rel(score=None), r"p.json: results\['v'\]\[1\]: missing field 'score'"),
        (with_rel(triplet=None), r"results\['v'\]\[1\]: missing field 'triplet'"),
        (with_rel(duration=[0, 5]), r"results\['v'\]\[1\] field 'sub_traj': expected one box per frame .*\(5\)"),
        (with_rel(sub_traj=[[0, 0, 9, 9]] * 3), r"results\['v'\]\[1\] field 'sub_traj': expected one box per frame"),
        (with_rel(obj_traj=[[0, 0, 9, 9], [0, 0, 9]]), r"results\['v'\]\[1\] field 'obj_traj': .*box 1"),
        (with_rel(obj_traj=[[0, 0, 9, 9], "box"]), r"results\['v'\]\[1\] field 'obj_traj': .*box 1 is a string"),
        (with_rel(sub_traj="boxes"), r"results\['v'\]\[1\] field 'sub_traj': expected a list of"),
        (with_rel(sub_traj={"0": [0, 0, 9, 9]}), r"results\['v'\]\[1\] field 'sub_traj': expected a list of"),
        (with_rel(score="high"), r"results\['v'\]\[1\] field 'score': expected a real number"),
        (with_rel(score=True), r"results\['v'\]\[1\] field 'score': expected a real number"),
        (with_rel(score=math.nan), r"results\['v'\]\[1\] field 'score': expected a finite number, got NaN"),
        (with_rel(score=1e999), r"results\['v'\]\[1\] field 'score': expected a finite number"),
        (with_rel(sub_traj=[[0, 0, 9, 9], [0, 0, math.inf, 9]]), r"results\['v'\]\[1\] field 'sub_traj': .*finite"),
        (with_rel(duration=[2, 1]), r"results\['v'\]\[1\] field 'duration': expected integer frames"),
        (with_rel(duration=[0.5, 2]), r"results\['v'\]\[1\] field 'duration'"),
        (with_rel(duration="0-2"), r"results\['v'\]\[1\] field 'duration'"),
        (with_rel(triplet=["a", "b"]), r"results\['v'\]\[1\] field 'triplet': expected \[subject, predicate"),
        (with_rel(triplet=["a", 1.5, "c"]), r"results\['v'\]\[1\] field 'triplet'"),
        (json.dumps({"results": {"v": {"a": 1}}}), r"results\['v'\]: expected a list of relations, got an object"),
        (json.dumps({"results": {"v": [1]}}), r"results\['v'\]\[0\]: expected a relation dict, got a number"),
        ('{"results": {"v": [], "v": []}}', r"results\['v'\]: video listed twice"),
        (full.encode().replace(b'"v"', b'"\xff"'), r"not valid JSON .*UTF-8"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_files())))
def test_malformed_prediction_file(tmp_path, case):
    text, pattern = _bad_files()[case]
    gt_path, pred_path = write(tmp_path, hand_case()[0], {})
    pred_path = tmp_path / "p.json"
    pred_path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for check in ("used", "all"):
        with pytest.raises(ValueError, match=pattern):
            evaluate_files(gt_path, pred_path, check_boxes=check)
    with pytest.raises(ValueError, match=pattern):
        read_predictions(pred_path)


def test_box_order_is_checked_where_used_or_everywhere(tmp_path):
    gt, pred = hand_case()
    pred["v"][3]["sub_traj"] = [[0, 0, -1, 9]] * 2  # triplet not in the ground truth: never compared
    gt_path, pred_path = write(tmp_path, gt, pred)
    assert evaluate_files(gt_path, pred_path)["mAP"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"p_pred.json: results\['v'\]\[3\] field 'sub_traj': .*x2 >= x1.*box 0"):
        evaluate_files(gt_path, pred_path, check_boxes="all")
    with pytest.raises(ValueError, match=r"results\['v'\]\[3\] field 'sub_traj'.*x2 >= x1"):
        read_predictions(pred_path)
    pred["v"][0]["obj_traj"] = [[0, 0, 9, 9], [5, 5, 4, 9]]  # compared: refused in either mode
    gt_path, pred_path = write(tmp_path, gt, pred)
    with pytest.raises(ValueError, match=r"results\['v'\]\[0\] field 'obj_traj': .*box 1 is \[5.0, 5.0, 4.0, 9.0\]"):
        evaluate_files(gt_path, pred_path)


def test_bad_groundtruth_file_and_missing_files(tmp_path):
    gt, pred = hand_case()
    bad = {"v": [{**gt["v"][0], "sub_traj": [[0, 0, 9, 9]]}]}
    gt_path, pred_path = write(tmp_path, bad, pred)
    with pytest.raises(ValueError, match=r"p_gt.json: \['v'\]\[0\] field 'sub_traj': expected one box per frame"):
        evaluate_files(gt_path, pred_path)
    with pytest.raises(ValueError, match=r"missing.json: cannot read the prediction file"):
        evaluate_files(write(tmp_path, gt, pred, name="ok")[0], tmp_path / "missing.json")
    gt_path.write_text("[]")
    with pytest.raises(ValueError, match=r"p_gt.json: expected an object mapping video id"):
        evaluate_files(gt_path, pred_path)


def test_empty_predictions_and_videos_without_groundtruth(tmp_path):
    gt, pred = hand_case()
    zeros = dict.fromkeys(("mAP", "R@50", "R@100", "P@1", "P@5", "P@10"), 0.0)
    gt_path, pred_path = write(tmp_path, {**gt, "empty": []}, {})
    missed = {"per_video": {"v": 0.0}, "per_video_hits": {"v": [0, 0]}, "per_video_gt": {"v": 2}}
    assert evaluate_files(gt_path, pred_path, per_video=True) == {**zeros, **missed}
    # predictions of a video whose ground truth is empty are read (and checked) but do not count
    gt_path, pred_path = write(tmp_path, {**gt, "empty": []}, {**pred, "empty": pred["v"]})
    assert_same(evaluate_files(gt_path, pred_path), evaluate_relations_ref(gt, pred))
    # a video absent from the ground truth: refused by default, ignored on request
    gt_path, pred_path = write(tmp_path, gt, {**pred, "ghost": pred["v"]})
    with pytest.raises(ValueError, match=r"field 'results' names video 'ghost'"):
        evaluate_files(gt_path, pred_path)
    assert_same(evaluate_files(gt_path, pred_path, unknown_videos="ignore"), evaluate_relations_ref(gt, pred))
    gt_path, pred_path = write(tmp_path, {}, {})
    assert evaluate_files(gt_path, pred_path) == zeros


def test_prediction_file_header(tmp_path):
    """The top-level string fields besides "results" (uasan.predict records "split" and "mode") come with the lazy
    read, so `python -m uasan.evaluate` can default to the split the predictions were scored on."""
    gt, pred = hand_case()
    path = tmp_path / "pred.json"
    doc = {"version": "VERSION 1.0", "split": "novel", "results": pred, "mode": "SGDet", "extra": {"a": [1, "x"]}}
    path.write_text(json.dumps(doc))
    lazy = read_predictions(path, lazy=True)
    assert lazy.header == {"version": "VERSION 1.0", "split": "novel", "mode": "SGDet"}
    path.write_text(json.dumps({"results": pred, "split": 'caf\u00e9 "quoted"'}, ensure_ascii=True))  # escapes
    assert read_predictions(path, lazy=True).header == {"split": 'caf\u00e9 "quoted"'}


TRIPLETS = (("dog", "chase", "cat"), ("dog", "watch", "cat"))


def _mapped_rss_kib(path) -> int | None:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps), None where there is no smaps."""
    try:
        with open("/proc/self/smaps") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    total, inside = 0, False
    for line in lines:
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not line.startswith(("Rss", "Size")):
            inside = len(head) >= 6 and head[5] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_mapped_file_pages_are_released_after_use(tmp_path):
    """A prediction file larger than the readers' release chunk (16 MB): the same metrics and boxes as orjson and
    the dicts in every mode, and the file's pages do not stay in this process's resident set (the page cache keeps
    them)."""
    import orjson

    rng = np.random.default_rng(0)
    gt, pred = {}, {}
    for v in range(32):
        xy = [rng.uniform(0, 300, (250, 2)) for _ in range(4)]
        base = [np.round(np.concatenate([p, p + rng.uniform(10, 200, 2)], axis=1), 2) for p in xy]
        gt[f"v{v}"] = [rel(TRIPLETS[k % 2], 0, base[k], base[(k + 1) % 4]) for k in range(4)]
        pred[f"v{v}"] = [
            rel(TRIPLETS[k % 3 % 2], 0, np.round(base[k % 4] + np.tile(rng.normal(0, 5, (250, 2)), 2), 2),
                base[(k + 1) % 4], float(rng.random()))
            for k in range(45)
        ]  # fmt: skip
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_bytes(orjson.dumps(gt, option=orjson.OPT_SERIALIZE_NUMPY))
    pred_path.write_bytes(orjson.dumps({"results": pred}, option=orjson.OPT_SERIALIZE_NUMPY))
    assert pred_path.stat().st_size > 18 << 20  # the release chunk is 16 MB
    gc.disable()  # ~2 M small lists and floats: the cyclic collector's passes would take seconds
    try:
        pred_dicts = orjson.loads(pred_path.read_bytes())["results"]
        gt_dicts = orjson.loads(gt_path.read_bytes())
    finally:
        gc.enable()
    expected = evaluate_relations(gt_dicts, pred_dicts, check_boxes="all", per_video=True)
    assert 0 < expected["mAP"] < 1
    for check in ("used", "all"):
        assert_same(evaluate_files(gt_path, pred_path, check_boxes=check, per_video=True), expected)
    cols = read_predictions(pred_path)
    np.testing.assert_array_equal(cols.boxes[:250], pred_dicts["v0"][0]["sub_traj"])
    np.testing.assert_array_equal(cols.boxes[-250:], pred_dicts["v31"][-1]["obj_traj"])

    lazy = read_predictions(pred_path, lazy=True)
    rss = _mapped_rss_kib(pred_path)
    if rss is None:
        pytest.skip("no /proc/self/smaps")
    file_kib = pred_path.stat().st_size >> 10
    assert rss < file_kib // 8, (rss, file_kib)
    gt_cols = read_groundtruth(gt_path)
    for check in ("used", "all"):
        assert_same(evaluate_relations(gt_cols, lazy, check_boxes=check, per_video=True), expected)
        assert _mapped_rss_kib(pred_path) < file_kib // 8
    lazy.to_columns()
    assert _mapped_rss_kib(pred_path) < file_kib // 8
