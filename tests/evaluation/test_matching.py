"""match_relations: its per-relation flags are the evaluator's own matching (C++ and reference paths)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.common import needs_ext
from tests.evaluation.gen import dataset
from uasan import ops
from uasan.evaluation import evaluate_relations, match_relations

IMPLS = ["ref", pytest.param("cpp", marks=needs_ext)]


def _cumulative_hits(gt: list, pred: list, impl: str) -> np.ndarray:
    """(P + 1,) true positives among the top K for K = 0..P, read off the evaluator's R@K."""
    ks = tuple(range(len(pred) + 1))
    m = evaluate_relations({"v": gt}, {"v": pred}, det_nreturns=ks, tag_nreturns=(), impl=impl)
    return np.array([round(m[f"R@{k}"] * len(gt)) for k in ks])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seed", range(6))
def test_flags_equal_the_evaluators_hits_at_every_k(seed, impl):
    gt_all, pred_all = dataset(np.random.default_rng(seed), n_videos=6)
    checked = 0
    for vid, gt in gt_all.items():
        pred = pred_all.get(vid, [])
        if not gt or not pred:
            continue
        m = match_relations(gt, pred)
        in_order = m.pred_hit[np.argsort(m.rank)]  # (P,) flags in the evaluator's score order
        expected = _cumulative_hits(gt, pred, impl)
        np.testing.assert_array_equal(np.concatenate([[0], np.cumsum(in_order)]), expected)
        # one to one, same triplet, above the threshold
        taken = m.pred_gt[m.pred_hit]
        assert len(set(taken.tolist())) == len(taken) and m.gt_hit.sum() == len(taken)
        np.testing.assert_array_equal(np.flatnonzero(m.gt_hit), np.sort(taken))
        for p in np.flatnonzero(m.pred_hit):
            g, r = gt[m.pred_gt[p]], pred[p]
            assert list(g["triplet"]) == list(r["triplet"])
            for f in ("sub_traj", "obj_traj"):
                ov = ops.viou_matrix([(r["duration"][0], np.asarray(r[f]))], [(g["duration"][0], np.asarray(g[f]))])
                assert ov[0, 0] >= 0.5
        checked += 1
    assert checked


@pytest.mark.parametrize("seed", range(4))
def test_top_k_is_the_r_at_k_numerator(seed):
    gt_all, pred_all = dataset(np.random.default_rng(100 + seed), n_videos=8)
    gt_all = {v: g for v, g in gt_all.items() if g}
    for k in (0, 1, 3, 10):
        hits = 0
        for vid, gt in gt_all.items():
            m = match_relations(gt, pred_all.get(vid, []), top_k=k)
            assert not m.pred_hit[m.rank >= k].any() and (m.pred_gt[m.rank >= k] == -1).all()
            full = match_relations(gt, pred_all.get(vid, []))
            top = m.rank < k
            np.testing.assert_array_equal(m.pred_gt[top], full.pred_gt[top])  # greedy: a prefix is not affected
            hits += int(m.pred_hit.sum())
        r = evaluate_relations(gt_all, pred_all, det_nreturns=(k,), tag_nreturns=())[f"R@{k}"]
        n_gt = sum(len(g) for g in gt_all.values())
        assert hits == round(r * n_gt)


def test_ties_follow_input_order_and_threshold():
    box = [[0, 0, 9, 9]] * 3
    far = [[50, 50, 59, 59]] * 3
    g = {"triplet": ["a", "p", "b"], "duration": [0, 3], "sub_traj": box, "obj_traj": box}
    same = {**g, "score": 0.5}
    miss = {**g, "score": 0.9, "obj_traj": far}
    m = match_relations([g], [miss, same, dict(same)])
    assert m.pred_hit.tolist() == [False, True, False]  # the first of the tied predictions takes it
    assert m.rank.tolist() == [0, 1, 2] and m.pred_gt.tolist() == [-1, 0, -1] and m.gt_hit.tolist() == [True]
    assert match_relations([g], [same], viou_threshold=1.01).pred_hit.tolist() == [False]
    empty = match_relations([], [])
    assert empty.pred_hit.shape == (0,) and empty.gt_hit.shape == (0,)


def test_bad_input_names_the_argument():
    g = {"triplet": ["a", "p", "b"], "duration": [0, 1], "sub_traj": [[0, 0, 1, 1]], "obj_traj": [[0, 0, 1, 1]]}
    with pytest.raises(ValueError, match=r"prediction\['v1'\]\[0\]: missing field 'score'"):
        match_relations([g], [g], video="v1")
    with pytest.raises(ValueError, match=r"groundtruth\['v1'\]\[0\] field 'duration'"):
        match_relations([{**g, "duration": [2, 1]}], [], video="v1")
    with pytest.raises(ValueError, match="top_k"):
        match_relations([g], [], top_k=-1)
    with pytest.raises(ValueError, match="viou_threshold"):
        match_relations([g], [], viou_threshold="high")


@needs_ext
@pytest.mark.parametrize("seed", range(5))
def test_cpp_flags_equal_the_reference(seed):
    gt_all, pred_all = dataset(np.random.default_rng(200 + seed), n_videos=8, n_cats=2, n_preds=1)
    for vid, gt in gt_all.items():
        pred = pred_all.get(vid, [])
        for top_k in (None, 0, 1, 4, 100):
            for thr in (0.5, 0.0, 0.9):
                a = match_relations(gt, pred, thr, top_k, impl="cpp")
                b = match_relations(gt, pred, thr, top_k, impl="ref")
                for x, y in zip(a, b, strict=True):
                    np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="impl"):
        match_relations([], [], impl="gpu")
