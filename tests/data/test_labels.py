"""Label assignment on hand-made trajectories, and against a brute-force reading of the definition."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from uasan import ops
from uasan.data import BACKGROUND, IGNORE, all_pairs, assign_predicate_labels, assign_trajectory_labels, pair_rows
from uasan.data.labels import combine_matches


def traj(start: int, box: list[float], T: int, dx: float = 0.0) -> tuple[int, np.ndarray]:
    """A T-frame trajectory starting at ``start`` whose box moves ``dx`` px per frame."""
    b = np.tile(np.asarray(box, dtype=np.float64), (T, 1))
    b[:, [0, 2]] += dx * np.arange(T)[:, None]
    return start, b


def test_trajectory_labels_by_hand():
    g0, g1 = traj(0, [0, 0, 9, 9], 20), traj(0, [100, 0, 109, 9], 20)
    proposals = [
        traj(0, [1, 0, 10, 9], 20),  # vIoU with g0 = 90 / 110 ≈ 0.82 → label 3
        traj(0, [104, 0, 113, 9], 20),  # vIoU with g1 = 60 / 140 ≈ 0.43 → background
        traj(0, [100, 0, 109, 9], 20),  # = g1, but its class is outside the split → ignore
        traj(25, [0, 0, 9, 9], 5),  # no temporal overlap → background
    ]
    v = ops.viou_matrix(proposals, [g0, g1])
    np.testing.assert_allclose(v[:2].max(1), [90 / 110, 60 / 140])
    labels = assign_trajectory_labels(proposals, [g0, g1], np.array([3, IGNORE]))
    assert labels.tolist() == [3, BACKGROUND, IGNORE, BACKGROUND]
    assert assign_trajectory_labels(proposals, [], np.zeros(0)).tolist() == [BACKGROUND] * 4
    assert assign_trajectory_labels([], [g0], np.array([1])).shape == (0,)


def test_predicate_labels_by_hand():
    gs, go = traj(0, [0, 0, 19, 19], 30), traj(0, [50, 0, 69, 19], 30)
    proposals = [
        traj(0, [2, 2, 17, 17], 30),  # inside gs: vPoI 1 (though vIoU is only 0.56)
        traj(0, [52, 2, 67, 17], 30),  # inside go
        traj(0, [10, 0, 29, 19], 30),  # half outside gs: vPoI 0.5
        traj(10, [50, 0, 69, 19], 10),  # = go over frames 10-19
    ]
    # two relations of one subject-object pair (group 0) with predicates 2 and 5, one of another pair (group 1)
    # that only holds over frames 0-9, and one outside the label split (predicate -1) between o and s.
    sub = [gs, gs, gs, go]
    obj = [go, go, (0, go[1][:10]), gs]
    preds = np.array([2, 5, 1, -1])
    groups = np.array([0, 0, 1, 2])
    pairs = np.array([[0, 1], [2, 1], [0, 3], [1, 0], [3, 0], [1, 2]])
    labels, valid = assign_predicate_labels(proposals, pairs, sub, obj, preds, 7, rel_groups=groups)
    assert labels.shape == (6, 7) and labels.dtype == np.float32
    want = np.zeros((6, 7), dtype=np.float32)
    want[0, [2, 5]] = 1  # multi-label: both predicates of the matched pair
    want[2, [2, 5]] = 1  # the object proposal covers frames 10-19 only, fully inside go there
    np.testing.assert_array_equal(labels, want)
    # pair 1: the subject is half outside → background; pairs 3, 4 match only the out-of-split relation → ignored
    assert valid.tolist() == [True, True, True, False, False, True]


def test_predicate_labels_best_group_wins():
    gs, go, go2 = traj(0, [0, 0, 19, 19], 30), traj(0, [50, 0, 69, 19], 30), traj(0, [49, 0, 68, 19], 30)
    p = [traj(0, [0, 0, 19, 19], 30), traj(0, [50, 0, 69, 19], 30)]  # vPoI: go 1.0, go2 0.95
    labels, valid = assign_predicate_labels(
        p, np.array([[0, 1]]), [gs, gs], [go2, go], np.array([4, 6]), 8, rel_groups=np.array([0, 1])
    )
    assert np.flatnonzero(labels[0]).tolist() == [6] and valid.tolist() == [True]


def test_empty_inputs():
    labels, valid = assign_predicate_labels([traj(0, [0, 0, 5, 5], 3)], np.zeros((0, 2)), [], [], np.zeros(0), 4)
    assert labels.shape == (0, 4) and valid.shape == (0,)
    labels, valid = assign_predicate_labels(
        [traj(0, [0, 0, 5, 5], 3)] * 2, all_pairs(2), [], [], np.zeros(0, dtype=np.int64), 4
    )
    assert labels.sum() == 0 and valid.all()
    labels, valid = combine_matches(np.zeros((3, 0)), np.zeros((3, 0), bool), np.zeros(0), np.zeros(0, np.int64), 4)
    assert labels.shape == (3, 4) and labels.sum() == 0 and valid.all()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 5), st.integers(0, 4))
def test_matches_definition(seed, n, R):
    rng = np.random.default_rng(seed)

    def rand_traj():
        T = int(rng.integers(1, 12))
        xy = rng.uniform(0, 20, 2)
        wh = rng.uniform(2, 15, 2)
        b = np.concatenate([xy, xy + wh])[None] + rng.normal(0, 1.5, (T, 1)) * np.array([1, 0, 1, 0])
        return int(rng.integers(0, 10)), b

    props = [rand_traj() for _ in range(n)]
    gts = [rand_traj() for _ in range(R)]
    gl = rng.integers(0, 9, R)
    lab = assign_trajectory_labels(props, gts, gl)
    for i, (s, b) in enumerate(props):
        v = [ops.viou_ref(s, b, gs, gb) for gs, gb in gts]
        want = gl[int(np.argmax(v))] if v and max(v) > 0.5 else BACKGROUND
        assert lab[i] == want

    sub, obj = [rand_traj() for _ in range(R)], [rand_traj() for _ in range(R)]
    preds = rng.integers(-1, 5, R)
    pairs = all_pairs(n)
    labels, valid = assign_predicate_labels(props, pairs, sub, obj, preds, 5, threshold=0.3)
    for k, (s, o) in enumerate(pairs):
        m = [min(ops.vpoi_ref(*props[s], *sub[r]), ops.vpoi_ref(*props[o], *obj[r])) for r in range(R)]
        hits = [r for r in range(R) if m[r] > 0.3]
        want = np.zeros(5)
        if hits:
            best = max(hits, key=lambda r: (m[r], -r))  # each relation its own group by default
            if preds[best] >= 0:
                want[preds[best]] = 1
        np.testing.assert_array_equal(labels[k], want)
        assert valid[k] == (not hits or preds[best] >= 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 9), st.data())
def test_pair_rows(n, data):
    keep = sorted(data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n)) if n else [])
    rows = pair_rows(np.array(keep, dtype=np.int64), n)
    full = {tuple(p): r for r, p in enumerate(all_pairs(n).tolist())}
    assert rows.tolist() == [full[(keep[s], keep[o])] for s, o in all_pairs(len(keep)).tolist()]
