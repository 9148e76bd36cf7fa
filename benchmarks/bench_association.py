"""greedy_relation_association: C++ path vs the reference on a 900-frame video.

59 segments of 30 frames (stride 15), top-k 50 / 100 / 200 relations per segment. Twelve objects of five
categories move smoothly; each segment scores a fixed pool of (subject, predicate, object) candidates with noise
and keeps its top k, so relations repeat across segments with jittered boxes and link into long video relations.

    pytest benchmarks/bench_association.py --benchmark-columns=median,iqr,rounds
    pytest benchmarks --benchmark-disable          # smoke mode: each case once
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from uasan import _ext
from uasan.ops.association import greedy_relation_association

N_FRAMES, SEG_LEN, STRIDE = 900, 30, 15
N_OBJECTS, N_CATEGORIES, N_PREDICATES = 12, 5, 10
TOPKS = (50, 100, 200)


@functools.cache
def video(topk: int) -> dict:
    rng = np.random.default_rng(topk)
    t = np.arange(N_FRAMES)[:, None]
    tracks = []
    for _ in range(N_OBJECTS):
        x, y = rng.uniform(0, 900, size=2)
        w, h = rng.uniform(40, 250, size=2)
        ax, ay = rng.uniform(20, 120, size=2)
        px, py = rng.uniform(0, 2 * np.pi, size=2)
        cx = x + ax * np.sin(2 * np.pi * t / 900 + px)
        cy = y + ay * np.sin(2 * np.pi * t / 600 + py)
        tracks.append(np.concatenate([cx, cy, cx + w, cy + h], axis=1))
    categories = rng.integers(0, N_CATEGORIES, size=N_OBJECTS)
    pairs = [(s, o) for s in range(N_OBJECTS) for o in range(N_OBJECTS) if s != o]
    pool = [(s, p, o) for s, o in pairs for p in range(N_PREDICATES)]
    base = rng.beta(1, 6, size=len(pool))

    groups = {}
    for fstart in range(0, N_FRAMES - SEG_LEN + 1, STRIDE):
        fend = fstart + SEG_LEN
        scores = np.round(base * rng.uniform(0.6, 1.0, size=len(pool)), 4)  # rounding gives some ties
        rels = []
        for i in np.argsort(-scores, kind="stable")[:topk]:
            s, p, o = pool[i]
            sub = tracks[s][fstart:fend] + rng.normal(0, 2.0, size=(SEG_LEN, 4))
            obj = tracks[o][fstart:fend] + rng.normal(0, 2.0, size=(SEG_LEN, 4))
            rels.append(
                {
                    "triplet": [f"cat{categories[s]}", f"pred{p}", f"cat{categories[o]}"],
                    "score": float(scores[i]),
                    "duration": [fstart, fend],
                    "sub_traj": sub.tolist(),
                    "obj_traj": obj.tolist(),
                }
            )
        groups[(fstart, fend)] = rels
    return groups


@functools.cache
def checked(topk: int) -> bool:
    """Both paths give identical outputs on this input (checked once, outside the timed part)."""
    groups = video(topk)
    want = greedy_relation_association(groups, impl="ref")
    assert greedy_relation_association(groups, impl="cpp") == want
    assert max(r["duration"][1] - r["duration"][0] for r in want) > 10 * SEG_LEN  # relations link
    return True


IMPLS = ["ref", pytest.param("cpp", marks=pytest.mark.skipif(not _ext.HAS_EXT, reason="C++ extension not built"))]


def _bench(benchmark, bench, topk: int, impl: str) -> None:
    groups = video(topk)
    assert len(groups) == 59 and all(len(r) == topk for r in groups.values())
    if _ext.HAS_EXT:
        assert checked(topk)
    out = bench(benchmark, greedy_relation_association, groups, impl=impl, slow=impl == "ref")
    assert out


@pytest.mark.benchmark(group="association-top50")
@pytest.mark.parametrize("impl", IMPLS)
def test_association_top50(benchmark, bench, impl):
    _bench(benchmark, bench, 50, impl)


@pytest.mark.benchmark(group="association-top100")
@pytest.mark.parametrize("impl", IMPLS)
def test_association_top100(benchmark, bench, impl):
    _bench(benchmark, bench, 100, impl)


@pytest.mark.benchmark(group="association-top200")
@pytest.mark.parametrize("impl", IMPLS)
def test_association_top200(benchmark, bench, impl):
    _bench(benchmark, bench, 200, impl)
