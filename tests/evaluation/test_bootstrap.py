"""Bootstrap intervals over videos and the paired bootstrap of a difference (uasan.evaluation.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uasan.evaluation.bootstrap import VideoScores, bootstrap_intervals, paired_difference, video_scores


def _scores(rng, n=40, ks=(50, 100), p=0.4):
    n_gt = rng.integers(1, 8, size=n)
    hits50 = rng.binomial(n_gt, p)
    hits = np.stack([hits50, np.minimum(n_gt, hits50 + rng.integers(0, 2, size=n))], 1)
    ap = rng.uniform(0, 1, size=n)
    return video_scores(
        {f"v{i}": float(ap[i]) for i in range(n)},
        {f"v{i}": hits[i].tolist() for i in range(n)},
        {f"v{i}": int(n_gt[i]) for i in range(n)} | {"no_gt": 0},
        ks,
    )


def test_point_metrics_are_the_official_aggregates(rng):
    s = _scores(rng)
    m = s.metrics()
    assert m["R@50"][0] == pytest.approx(s.hits[:, 0].sum() / s.n_gt.sum())
    assert m["mAP"][0] == pytest.approx(s.ap.mean())
    assert "no_gt" not in s.videos and len(s.videos) == 40  # videos without ground truth do not count


def test_interval_is_seeded_and_brackets_the_estimate(rng):
    s = _scores(rng)
    ci = bootstrap_intervals(s, seed=3)
    assert ci == bootstrap_intervals(s, seed=3) and ci != bootstrap_intervals(s, seed=4)
    point = s.metrics()
    for key, (lo, hi) in ci.items():
        assert lo <= point[key][0] <= hi and hi - lo > 0
    wide = bootstrap_intervals(VideoScores(s.videos[:8], s.ap[:8], s.hits[:8], s.n_gt[:8], s.ks), seed=3)
    assert wide["R@50"][1] - wide["R@50"][0] > ci["R@50"][1] - ci["R@50"][0]  # fewer videos, wider interval


def test_interval_covers_the_truth_about_95_percent():
    """Simulated test sets drawn from a known population: the interval holds the population recall ~95 % of the
    time (binomial hits with per-video n_gt; 200 test sets, tolerance for the Monte-Carlo error)."""
    rng = np.random.default_rng(0)
    covered = 0
    for t in range(200):
        s = _scores(rng, n=60, p=0.3)
        lo, hi = bootstrap_intervals(s, replicates=400, seed=t)["R@50"]
        covered += lo <= 0.3 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_difference(rng):
    a = _scores(rng)
    same = paired_difference(a, a)
    assert all(v["diff"] == 0 and v["ci"] == [0.0, 0.0] and not v["significant"] for v in same.values())
    worse = VideoScores(a.videos, a.ap * 0.5, np.floor(a.hits * 0.5), a.n_gt, a.ks)
    d = paired_difference(a, worse)
    assert d["R@50"]["significant"] and d["R@50"]["diff"] > 0 and d["R@50"]["ci"][0] > 0
    # pairing: the shared video-to-video variation cancels, so the paired SE is below the unpaired one
    rng2 = np.random.default_rng(1)
    reps = [worse.metrics(rng2.integers(0, 40, (1, 40)))["R@50"][0] for _ in range(500)]
    reps_a = [a.metrics(rng2.integers(0, 40, (1, 40)))["R@50"][0] for _ in range(500)]
    assert d["R@50"]["se"] < np.std(np.subtract(reps_a, reps))
    with pytest.raises(ValueError, match="same videos"):
        paired_difference(a, VideoScores(a.videos[:3], a.ap[:3], a.hits[:3], a.n_gt[:3], a.ks))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5), st.integers(0, 2**31 - 1))
def test_round_trip_and_small_sets(n, seed):
    s = _scores(np.random.default_rng(seed), n=n)
    back = VideoScores.from_dict(s.to_dict())
    assert back.videos == s.videos and np.array_equal(back.hits, s.hits) and back.ks == s.ks
    ci = bootstrap_intervals(s, replicates=50)
    assert set(ci) == {"mAP", "R@50", "R@100"}
    if n < 2:
        assert all(lo == hi for lo, hi in ci.values())


def test_bad_arguments(rng):
    s = _scores(rng)
    with pytest.raises(ValueError, match="replicates"):
        bootstrap_intervals(s, replicates=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(s, level=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_video_counts_of_every_evaluator_path_add_up(seed):
    """``per_video=True`` gives each video's hits and ground-truth count, the same on the reference, the dict and the
    columnar path, and they add up to the official R@K; video_scores turns them into the bootstrap's input."""
    from tests.common import needs_ext  # noqa: F401  (the dict / column paths need the extension)
    from tests.evaluation.gen import dataset
    from uasan import _ext
    from uasan.evaluation import RelationColumns, evaluate_relations, evaluate_relations_ref

    gt, pred = dataset(np.random.default_rng(seed), n_videos=6)
    ref = evaluate_relations_ref(gt, pred, per_video=True)
    paths = [ref]
    if _ext.HAS_EXT:
        paths.append(evaluate_relations(gt, pred, per_video=True))
        gt_cols, pred_cols = RelationColumns.from_dicts(gt, scores=False), RelationColumns.from_dicts(pred, scores=True)
        paths.append(evaluate_relations(gt_cols, pred_cols, per_video=True))
    for m in paths:
        assert m["per_video_hits"] == ref["per_video_hits"] and m["per_video_gt"] == ref["per_video_gt"]
    total = sum(ref["per_video_gt"].values())
    for j, k in enumerate((50, 100)):
        assert sum(h[j] for h in ref["per_video_hits"].values()) / total == pytest.approx(ref[f"R@{k}"], abs=1e-6)
    s = video_scores(ref["per_video"], ref["per_video_hits"], ref["per_video_gt"], (50, 100))
    assert s.metrics()["R@50"][0] == pytest.approx(ref["R@50"], abs=1e-6)
    assert s.metrics()["mAP"][0] == pytest.approx(ref["mAP"], abs=1e-6)
