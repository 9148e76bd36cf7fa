"""Relation detection evaluation: the C++ matching path vs its Python reference, on the same inputs.

200 videos × 200 predictions, VidVRD-like: 10–30 ground-truth relations per video lasting 30–150 frames,
predictions lasting 30–150 frames, a third of them near a ground-truth relation with its triplet, the rest with
triplets of the video's objects. ``fast`` is the default (every box checked), ``fast_used`` reads only the
trajectories the matching compares (``check_boxes="used"``). With ``--benchmark-disable`` (smoke mode) the data set
shrinks to 20 videos. Run: ``pytest benchmarks/bench_eval.py --benchmark-columns=median,iqr,rounds``.
"""

from __future__ import annotations

import gc
from functools import partial

import numpy as np
import pytest

from uasan.evaluation import evaluate_relations, evaluate_relations_ref

N_VIDEOS, N_PRED, FRAMES = 200, 200, 300
OBJECTS = [f"object{i}" for i in range(35)]  # VidVRD: 35 object and 132 predicate categories
PREDICATES = [f"predicate{i}" for i in range(132)]


def _track(rng: np.random.Generator) -> np.ndarray:
    xy = rng.uniform(0, 500, 2) + np.cumsum(rng.normal(0, 2, (FRAMES, 2)), axis=0)
    wh = rng.uniform(30, 200, 2)
    return np.round(np.concatenate([xy, xy + wh], axis=1), 1)


def _rel(trip, b, e, sub, obj, score=None):
    r = {"triplet": list(trip), "duration": [b, e], "sub_traj": sub[b:e].tolist(), "obj_traj": obj[b:e].tolist()}
    if score is not None:
        r["score"] = score
    return r


def vidvrd_like(rng: np.random.Generator, n_videos: int = N_VIDEOS) -> tuple[dict, dict]:
    gc.disable()  # millions of small lists: the cyclic collector would dominate the generation time
    try:
        return _vidvrd_like(rng, n_videos)
    finally:
        gc.enable()


def _vidvrd_like(rng: np.random.Generator, n_videos: int) -> tuple[dict, dict]:
    gt, pred = {}, {}
    for v in range(n_videos):
        objs = [(OBJECTS[rng.integers(len(OBJECTS))], _track(rng)) for _ in range(int(rng.integers(2, 7)))]
        vid_preds = rng.choice(len(PREDICATES), 12, replace=False)

        def pick(objs=objs):
            s, o = rng.choice(len(objs), 2, replace=False)
            b = int(rng.integers(0, FRAMES - 30))
            e = int(min(FRAMES, b + rng.integers(30, 151)))
            return s, o, b, e

        gts = []
        for _ in range(int(rng.integers(10, 31))):
            s, o, b, e = pick()
            trip = (objs[s][0], PREDICATES[rng.choice(vid_preds)], objs[o][0])
            gts.append(_rel(trip, b, e, objs[s][1], objs[o][1]))
        preds = []
        for _ in range(N_PRED):
            if rng.random() < 0.33:
                g = gts[rng.integers(len(gts))]
                b0, e0 = g["duration"]
                b = int(np.clip(b0 + rng.integers(-15, 16), 0, FRAMES - 2))
                e = int(np.clip(e0 + rng.integers(-15, 16), b + 1, FRAMES))
                s = next(i for i, (c, _) in enumerate(objs) if c == g["triplet"][0])
                o = next(i for i, (c, _) in enumerate(objs) if c == g["triplet"][2] and i != s) if len(objs) > 1 else s
                noise = rng.normal(0, 3, (2, FRAMES, 4))
                sub, obj = objs[s][1] + noise[0], objs[o][1] + noise[1]
                sub[:, 2:] = np.maximum(sub[:, 2:], sub[:, :2])
                obj[:, 2:] = np.maximum(obj[:, 2:], obj[:, :2])
                preds.append(_rel(g["triplet"], b, e, sub, obj, float(rng.random())))
            else:
                s, o, b, e = pick()
                trip = (objs[s][0], PREDICATES[rng.choice(vid_preds)], objs[o][0])
                preds.append(_rel(trip, b, e, objs[s][1], objs[o][1], float(rng.random())))
        gt[f"video{v:04d}"] = gts
        pred[f"video{v:04d}"] = preds
    return gt, pred


@pytest.fixture(scope="module")
def data(request):
    opt = request.config.getoption
    smoke = opt("benchmark_disable", False) and not opt("benchmark_enable", False)
    gt, pred = vidvrd_like(np.random.default_rng(0), 20 if smoke else N_VIDEOS)
    return gt, pred, evaluate_relations_ref(gt, pred)


IMPLS = {
    "ref": evaluate_relations_ref,
    "fast": evaluate_relations,
    "fast_used": partial(evaluate_relations, check_boxes="used"),
}


@pytest.mark.parametrize("impl", list(IMPLS))
def test_evaluate_relations(benchmark, bench, data, impl):
    gt, pred, expected = data
    got = IMPLS[impl](gt, pred)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-6, key
    benchmark.group = "eval-relations"
    bench(benchmark, IMPLS[impl], gt, pred, slow=impl == "ref")
