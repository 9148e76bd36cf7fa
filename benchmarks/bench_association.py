"""greedy_relation_association: C++ path vs the reference on a 900-frame video; columns in / arrays out vs dicts.

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

from tests.common import needs_ext
from uasan import _ext
from uasan.evaluation import RelationColumns
from uasan.ops.association import SegmentRelations, greedy_relation_association

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


IMPLS = ["ref", pytest.param("cpp", marks=needs_ext)]


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


# ----------------------------------------------------------------------------------------------------------------
# Columns in / arrays out (what uasan.predict uses) vs the official dicts, top-200
# ----------------------------------------------------------------------------------------------------------------


@functools.cache
def columns(topk: int) -> SegmentRelations:
    """video(topk) as columns: rows in the dicts' order, triplets interned in that order."""
    return SegmentRelations.from_groups(video(topk))


def from_dicts(rel: SegmentRelations) -> list[dict]:
    """uasan.predict's dict path for one video: the segment dicts (boxes as lists), then the dict association."""
    off, dur, names = rel.box_offsets.tolist(), rel.duration.tolist(), rel.triplets
    groups = {}
    for s, (fs, fe) in enumerate(rel.segments.tolist()):
        groups[(fs, fe)] = [
            {
                "triplet": list(names[rel.triplet[r]]),
                "score": float(rel.score[r]),
                "duration": dur[r],
                "sub_traj": rel.boxes[off[r] : off[r] + dur[r][1] - dur[r][0]].tolist(),
                "obj_traj": rel.boxes[off[r] + dur[r][1] - dur[r][0] : off[r + 1]].tolist(),
            }
            for r in range(int(rel.segment_offsets[s]), int(rel.segment_offsets[s + 1]))
        ]
    return greedy_relation_association(groups, impl="cpp")


def from_columns(rel: SegmentRelations) -> RelationColumns:
    """uasan.predict's columnar path for one video: the array association, then the evaluator's columns."""
    out = greedy_relation_association(rel, impl="cpp", output="arrays")
    codes, index = np.unique(out.triplet, return_inverse=True)
    names = tuple(rel.triplets[c] for c in codes.tolist())
    return RelationColumns.from_trajectories(
        "v", names, index.reshape(-1), out.duration, out.score, out.offsets, out.sub_boxes, out.obj_boxes
    )


IO = {
    "dicts-to-dicts": lambda: greedy_relation_association(video(200), impl="cpp"),
    "dicts-to-arrays": lambda: greedy_relation_association(video(200), impl="cpp", output="arrays"),
    "columns-to-arrays": lambda: greedy_relation_association(columns(200), impl="cpp", output="arrays"),
}


@needs_ext
@pytest.mark.benchmark(group="association-io-top200")
@pytest.mark.parametrize("io", list(IO))
def test_association_io_top200(benchmark, bench, io):
    want = greedy_relation_association(video(200), impl="cpp")
    assert greedy_relation_association(columns(200), impl="cpp") == want  # columns in = dicts in, bit for bit
    assert greedy_relation_association(columns(200), impl="cpp", output="arrays").to_dicts() == want
    IO[io]()  # build the cached inputs outside the timed part
    out = bench(benchmark, IO[io])
    assert (len(out) if isinstance(out, list) else len(out.score)) == len(want)


@needs_ext
@pytest.mark.benchmark(group="association-predict-top200")
@pytest.mark.parametrize("path", ["dicts", "columns"])
def test_predict_video_top200(benchmark, bench, path):
    """One video of uasan.predict from its segment relations (arrays) to relations the evaluator takes: segment
    dicts + dict association (the dict path) vs the columnar association + RelationColumns (the columnar path)."""
    rel = columns(200)
    assert from_columns(rel).to_dicts()["v"] == from_dicts(rel)
    out = bench(benchmark, from_dicts if path == "dicts" else from_columns, rel)
    assert len(out) > 0
