"""Seq-NMS: the C++ path against the reference on generated inputs, hand-worked cases, bad input, empty input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from uasan import _ext
from uasan.ops.seq_nms import Track, seq_nms, seq_nms_ref

IMPLS = ["cpp", "ref"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INF = np.inf


def run(impl, *args, **kwargs):
    return seq_nms_ref(*args, **kwargs) if impl == "ref" else seq_nms(*args, impl=impl, **kwargs)


def as_tuples(tracks):
    for t in tracks:
        assert isinstance(t, Track)
        assert isinstance(t.start_frame, int) and isinstance(t.score, float)
        assert t.box_indices.dtype == np.int64 and t.box_indices.ndim == 1
    return [(t.start_frame, t.box_indices.tolist(), t.score) for t in tracks]


def assert_same(got, expected):
    got, expected = as_tuples(got), as_tuples(expected)
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert math.isclose(g[2], e[2], rel_tol=0.0, abs_tol=1e-12) or g[2] == e[2], (g, e)


def test_extension_has_seq_nms():
    assert _ext.HAS_EXT, f"C++ extension missing: {_ext.EXT_ERROR}"
    assert hasattr(_ext.ext(), "seq_nms")


# ---------------------------------------------------------------------------------------------------------------
# strategies: small integer grids (identical, touching and zero-width/height boxes), tied scores from a small set,
# zeros, absent boxes (-inf), labels, and every option
# ---------------------------------------------------------------------------------------------------------------

SCORES = st.sampled_from([1.0, 0.5, 0.25, 0.0])  # tied scores; absent boxes (-inf) come from a separate mask
OPTIONS = st.fixed_dictionaries(
    {
        "link_iou": st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]),
        "suppress_iou": st.sampled_from([0.0, 0.3, 0.5, 1.0]),
        "rescore": st.sampled_from(["none", "avg", "max"]),
        "suppress": st.sampled_from(["zero", "remove"]),
        "plus_one": st.booleans(),
    }
)


@st.composite
def frame_boxes(draw, n):
    xy = draw(arrays(np.int64, (n, 2), elements=st.integers(0, 8)))
    wh = draw(arrays(np.int64, (n, 2), elements=st.integers(0, 6)))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
    if n >= 2 and draw(st.booleans()):
        boxes[-1] = boxes[0]  # a duplicate
    if draw(st.booleans()):
        boxes = boxes + draw(st.sampled_from([0.25, 0.5]))
    return boxes


@st.composite
def padded_inputs(draw):
    f, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))  # F = 0 and B = 0: test_empty_inputs, ragged
    boxes = draw(frame_boxes(f * b)).reshape(f, b, 4)
    if f > 1 and draw(st.booleans()):  # the boxes of frame 0 moving a little: long chains, many tracks
        shift = draw(arrays(np.int64, (f, b, 2), elements=st.integers(-1, 1)))
        boxes = boxes[:1] + np.concatenate([shift, shift], axis=-1)
    if draw(st.booleans()):  # continuous scores, negatives included
        scores = draw(arrays(np.float64, (f, b), elements=st.floats(-0.25, 1.0, allow_nan=False)))
    else:
        scores = draw(arrays(np.float64, (f, b), elements=SCORES))
    if draw(st.booleans()):  # absent boxes, about one in four
        scores[draw(arrays(np.bool_, (f, b), elements=st.sampled_from([False, False, False, True])))] = -INF
    if f and draw(st.booleans()):
        scores[draw(st.integers(0, f - 1))] = -INF  # an empty frame
    labels = draw(st.none() | arrays(np.int64, (f, b), elements=st.integers(0, 2)))
    return boxes, scores, labels


@st.composite
def ragged_inputs(draw):
    f = draw(st.integers(0, 6))
    sizes = [draw(st.integers(0, 5)) for _ in range(f)]
    boxes = [draw(frame_boxes(n)) for n in sizes]
    scores = [draw(arrays(np.float64, (n,), elements=SCORES)) for n in sizes]
    labels = None
    if draw(st.booleans()):
        labels = [draw(arrays(np.int64, (n,), elements=st.integers(0, 1))) for n in sizes]
    return boxes, scores, labels


def pad(boxes, scores, labels, width, garbage):
    """The padded form of ragged lists; absent boxes get `garbage` coordinates (ignored by the op)."""
    f = len(boxes)
    bp, sp = np.full((f, width, 4), garbage), np.full((f, width), -INF)
    lp = None if labels is None else np.zeros((f, width), dtype=np.int64)
    for i in range(f):
        n = len(scores[i])
        bp[i, :n], sp[i, :n] = boxes[i], scores[i]
        if lp is not None:
            lp[i, :n] = labels[i]
    return bp, sp, lp


@SETTINGS
@given(padded_inputs(), OPTIONS)
def test_cpp_matches_reference(inputs, options):
    boxes, scores, labels = inputs
    expected = seq_nms_ref(boxes, scores, labels, **options)
    assert_same(seq_nms(boxes, scores, labels, impl="cpp", **options), expected)
    for t in expected:  # absent boxes never appear in a track
        frames = t.start_frame + np.arange(len(t.box_indices))
        assert len(t.box_indices) >= 2 and np.all(scores[frames, t.box_indices] > -INF)


@SETTINGS
@given(ragged_inputs(), OPTIONS, st.sampled_from([0.0, np.nan, -7.0]))
def test_ragged_matches_padded(inputs, options, garbage):
    boxes, scores, labels = inputs
    width = max((len(s) for s in scores), default=0) + 1
    padded = pad(boxes, scores, labels, width, garbage)
    expected = seq_nms_ref(*padded, **options)
    assert_same(seq_nms_ref(boxes, scores, labels, **options), expected)
    assert_same(seq_nms(boxes, scores, labels, impl="cpp", **options), expected)
    assert_same(seq_nms(*padded, impl="cpp", **options), expected)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (3, 3, 4), elements=st.floats(-1e308, 1e308, allow_nan=False)),
    arrays(np.float64, (3, 3), elements=st.floats(-1e308, 1e308, allow_nan=False)),
    OPTIONS,
)
def test_extreme_values_do_not_crash(raw, scores, options):
    boxes = np.concatenate([np.minimum(raw[..., :2], raw[..., 2:]), np.maximum(raw[..., :2], raw[..., 2:])], -1)
    assert_same(seq_nms(boxes, scores, impl="cpp", **options), seq_nms_ref(boxes, scores, **options))


def realistic(rng, frames, objects, dups, clutter):
    """Moving objects with jittered duplicate detections plus low-scoring clutter."""
    pos, size = rng.uniform(0, 400, (objects, 2)), rng.uniform(30, 120, (objects, 2))
    vel = rng.normal(0, 3, (objects, 2))
    t = np.arange(frames)[:, None, None, None]
    xy = pos[None, :, None] + vel[None, :, None] * t + rng.normal(0, 4, (frames, objects, dups, 2))
    wh = size[None, :, None] * rng.uniform(0.85, 1.15, (frames, objects, dups, 2))
    obj = np.concatenate([xy, xy + wh], -1).reshape(frames, objects * dups, 4)
    cxy = rng.uniform(0, 500, (frames, clutter, 2))
    clut = np.concatenate([cxy, cxy + rng.uniform(10, 150, (frames, clutter, 2))], -1)
    boxes = np.concatenate([obj, clut], 1)
    scores = np.concatenate(
        [rng.uniform(0.3, 1.0, (frames, objects * dups)), rng.uniform(0, 0.3, (frames, clutter))], 1
    )
    return boxes, np.round(scores, 2)


@pytest.mark.parametrize("suppress", ["zero", "remove"])
def test_cpp_matches_reference_realistic(rng, suppress):
    for _ in range(3):
        boxes, scores = realistic(rng, 12, 3, 4, 6)
        labels = rng.integers(0, 2, scores.shape)
        for lab in (None, labels):
            expected = seq_nms_ref(boxes, scores, lab, suppress=suppress)
            assert len(expected) > 1
            assert_same(seq_nms(boxes, scores, lab, suppress=suppress, impl="cpp"), expected)


def test_inputs_as_tensors_and_float32():
    rng = np.random.default_rng(3)
    boxes, scores = realistic(rng, 6, 2, 2, 2)
    boxes = np.round(boxes).astype(np.float32)  # exactly representable: float32 and float64 agree
    expected = seq_nms(boxes.astype(np.float64), scores, impl="ref")
    assert expected
    for impl in IMPLS + ["torch", "auto"]:
        assert_same(seq_nms(torch.from_numpy(boxes), torch.from_numpy(scores), impl=impl), expected)
        assert_same(seq_nms(boxes, scores.tolist(), impl=impl), expected)


# ---------------------------------------------------------------------------------------------------------------
# by hand
# ---------------------------------------------------------------------------------------------------------------

A = [0.0, 0.0, 10.0, 10.0]
A1 = [1.0, 0.0, 11.0, 10.0]  # IoU(A, A1) = 90 / 110 = 0.818
FAR = [50.0, 0.0, 60.0, 10.0]
GONE = [0.0, 0.0, 0.0, 0.0]  # coordinates of absent boxes


@pytest.mark.parametrize("impl", IMPLS)
def test_two_chains_neighbour_suppressed(impl):
    # Chain A (0.9) and a shifted chain A1 (0.8), linked to each other in every direction.
    boxes = np.array([[A, A1]] * 3)
    scores = np.array([[0.9, 0.8]] * 3)
    # suppress_iou 0.3: A1 is A's neighbour (IoU 0.818), zeroed with it; nothing positive is left.
    assert as_tuples(run(impl, boxes, scores)) == [(0, [0, 0, 0], 0.9 + (0.9 + 0.9))]
    # suppress_iou 0.9: A1 survives. Every box of frames 1 and 2 has an incoming link, so paths start in frame 0:
    # from A (now 0) the best is 0 + 1.6 = 1.6, from A1 0.8 + 1.6 = 2.4.
    expected = [(0, [0, 0, 0], 0.9 + (0.9 + 0.9)), (0, [1, 1, 1], 0.8 + (0.8 + 0.8))]
    assert as_tuples(run(impl, boxes, scores, suppress_iou=0.9)) == expected
    assert as_tuples(run(impl, boxes, scores, suppress_iou=0.9, suppress="remove")) == expected
    assert as_tuples(run(impl, boxes, scores, suppress="remove")) == expected[:1]


A2 = [-1.0, 0.0, 9.0, 10.0]  # IoU(A, A2) = 0.818, IoU(A1, A2) = 80 / 120 = 0.667
# A in frames 0-2 (1.0 each), and in frame 3 both A1 (0.4) and A2 (0.3), each linked from A.
REUSE_BOXES = np.array([[A, GONE], [A, GONE], [A, GONE], [A1, A2]])
REUSE_SCORES = np.array([[1.0, -INF], [1.0, -INF], [1.0, -INF], [0.4, 0.3]])


@pytest.mark.parametrize("impl", IMPLS)
def test_zeroed_boxes_are_reused(impl):
    # The first path takes A1 (0.4 > 0.3); with suppress_iou 0.9 A2 survives it. Zeroed boxes keep their links,
    # and A2 is no root (A links to it), so the second path runs through the zeroed A boxes: 0 + 0 + 0 + 0.3.
    got = as_tuples(run(impl, REUSE_BOXES, REUSE_SCORES, suppress_iou=0.9))
    assert got == [(0, [0, 0, 0, 0], 1.0 + (1.0 + (1.0 + 0.4))), (0, [0, 0, 0, 1], 0.0 + (0.0 + (0.0 + 0.3)))]
    # Removed instead: A2 loses its only incoming link, becomes a root, a path of length 1, and the search stops.
    assert as_tuples(run(impl, REUSE_BOXES, REUSE_SCORES, suppress_iou=0.9, suppress="remove")) == got[:1]
    # suppress_iou 0.3: A1 takes A2 down with it.
    assert as_tuples(run(impl, REUSE_BOXES, REUSE_SCORES)) == got[:1]


@pytest.mark.parametrize("impl", IMPLS)
def test_ties(impl):
    # Same score, same frame: the first box wins.
    boxes = np.array([[A, FAR], [A, FAR]])
    assert as_tuples(run(impl, boxes, np.full((2, 2), 0.5))) == [(0, [0, 0], 1.0), (0, [1, 1], 1.0)]
    # Same score, different frames: the earlier frame wins even with a larger box index.
    boxes = np.array([[GONE, A], [FAR, A], [FAR, GONE]])
    scores = np.array([[-INF, 1.0], [1.0, 1.0], [1.0, -INF]])
    assert as_tuples(run(impl, boxes, scores)) == [(0, [1, 1], 2.0), (1, [0, 0], 2.0)]
    # DP tie: box A of frame 0 links to both identical boxes of frame 1; the first one is taken.
    boxes = np.array([[A, GONE], [A, A]])
    scores = np.array([[1.0, -INF], [0.5, 0.5]])
    assert as_tuples(run(impl, boxes, scores)) == [(0, [0, 0], 1.5)]


@pytest.mark.parametrize("impl", IMPLS)
def test_roots_and_stopping_rules(impl):
    # A box with an incoming link is no root: X (1.0) only counts through P (-0.5) before it.
    boxes = np.array([[A], [A]])
    assert as_tuples(run(impl, boxes, np.array([[-0.5], [1.0]]))) == [(0, [0, 0], 0.5)]
    # The best path is a single box: stop, although a weaker two-box path exists.
    boxes = np.array([[FAR, A], [GONE, A]])
    assert run(impl, boxes, np.array([[5.0, 1.0], [-INF, 1.0]])) == []
    # Scores summing to 0 or less: nothing.
    assert run(impl, np.array([[A], [A]]), np.array([[0.5], [-0.5]])) == []
    assert run(impl, np.array([[A], [A]]), np.zeros((2, 1))) == []


@pytest.mark.parametrize("impl", IMPLS)
def test_labels_plus_one_and_thresholds(impl):
    boxes = np.array([[A], [A]])
    scores = np.ones((2, 1))
    assert run(impl, boxes, scores, np.array([[0], [1]])) == []
    assert as_tuples(run(impl, boxes, scores, np.array([[3], [3]]))) == [(0, [0, 0], 2.0)]
    # Touching boxes: no overlap in continuous pixels; inclusive pixels give IoU 2 / 6.
    touching = np.array([[[0.0, 0.0, 1.0, 1.0]], [[1.0, 0.0, 2.0, 1.0]]])
    assert run(impl, touching, scores, link_iou=0.3) == []
    assert as_tuples(run(impl, touching, scores, link_iou=0.3, plus_one=True)) == [(0, [0, 0], 2.0)]
    assert run(impl, touching, scores, link_iou=0.34, plus_one=True) == []
    # link_iou = 0 links everything, zero-area boxes included; the path boxes are still suppressed (terminates).
    points = np.array([[[0.0, 0.0, 0.0, 0.0]], [[5.0, 5.0, 5.0, 5.0]]])
    assert as_tuples(run(impl, points, scores, link_iou=0.0)) == [(0, [0, 0], 2.0)]


@pytest.mark.parametrize("impl", IMPLS)
def test_rescore(impl):
    boxes = np.array([[A], [A], [A]])
    scores = np.array([[0.2], [0.6], [1.0]])
    assert as_tuples(run(impl, boxes, scores)) == [(0, [0, 0, 0], 0.2 + (0.6 + 1.0))]
    assert as_tuples(run(impl, boxes, scores, rescore="avg")) == [(0, [0, 0, 0], (0.2 + 0.6 + 1.0) / 3)]
    assert as_tuples(run(impl, boxes, scores, rescore="max")) == [(0, [0, 0, 0], 1.0)]
    # avg / max use the input scores, also for boxes a previous track zeroed (see test_zeroed_boxes_are_reused)
    avg = [t.score for t in run(impl, REUSE_BOXES, REUSE_SCORES, suppress_iou=0.9, rescore="avg")]
    assert avg == [sum([1.0, 1.0, 1.0, 0.4]) / 4, sum([1.0, 1.0, 1.0, 0.3]) / 4]
    assert [t.score for t in run(impl, REUSE_BOXES, REUSE_SCORES, suppress_iou=0.9, rescore="max")] == [1.0, 1.0]


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_inputs(impl):
    assert run(impl, np.zeros((0, 0, 4)), np.zeros((0, 0))) == []
    assert run(impl, np.zeros((3, 0, 4)), np.zeros((3, 0)), np.zeros((3, 0), dtype=np.int64)) == []
    assert run(impl, np.array([[A, A]]), np.ones((1, 2))) == []
    assert run(impl, np.array([[A], [A]]), np.full((2, 1), -INF)) == []
    assert run(impl, [], []) == []
    assert run(impl, [[], []], [[], []], [[], []]) == []
    assert run(impl, [np.zeros((0, 4)), [A]], [[], [1.0]]) == []


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------

GOOD_BOXES = np.array([[A, A1], [A, A1]])
GOOD_SCORES = np.ones((2, 2))


def with_box(box):
    boxes = GOOD_BOXES.copy()
    boxes[1, 0] = box
    return boxes


def with_score(value):
    scores = GOOD_SCORES.copy()
    scores[1, 1] = value
    return scores


BAD = [
    ((np.zeros((2, 4)), GOOD_SCORES), {}, r"boxes of shape \(F, B, 4\)"),
    ((np.zeros((2, 2, 3)), GOOD_SCORES), {}, "boxes of shape"),
    ((GOOD_BOXES, np.ones((2, 3))), {}, r"scores of shape \(F, B\) = \(2, 2\)"),
    ((GOOD_BOXES, np.ones((3, 2))), {}, "scores of shape"),
    ((GOOD_BOXES, np.ones(2)), {}, "scores of shape"),
    ((GOOD_BOXES, GOOD_SCORES, np.zeros((2, 1), dtype=np.int64)), {}, "labels of shape"),
    ((GOOD_BOXES, GOOD_SCORES, np.full((2, 2), 0.5)), {}, "labels to hold integers"),
    ((GOOD_BOXES, GOOD_SCORES, np.full((2, 2), "a")), {}, "labels"),
    ((GOOD_BOXES, with_score(np.nan)), {}, "scores without NaN, but got NaN at frame 1, box 1"),
    ((GOOD_BOXES, with_score(np.inf)), {}, "finite scores.*frame 1, box 1"),
    ((GOOD_BOXES, np.full((2, 2), "x")), {}, "scores to hold real numbers"),
    ((with_box([0.0, np.nan, 1.0, 1.0]), GOOD_SCORES), {}, "boxes to hold finite coordinates.*frame 1, box 0"),
    ((with_box([0.0, 0.0, np.inf, 1.0]), GOOD_SCORES), {}, "boxes to hold finite coordinates"),
    ((with_box([5.0, 0.0, 1.0, 1.0]), GOOD_SCORES), {}, "boxes with x2 >= x1 and y2 >= y1.*frame 1, box 0"),
    ((with_box([0.0, 5.0, 1.0, 1.0]), GOOD_SCORES), {}, "x2 >= x1 and y2 >= y1"),
    ((GOOD_BOXES, GOOD_SCORES), {"link_iou": -0.1}, r"link_iou in \[0, 1\]"),
    ((GOOD_BOXES, GOOD_SCORES), {"link_iou": 1.5}, "link_iou"),
    ((GOOD_BOXES, GOOD_SCORES), {"link_iou": float("nan")}, "link_iou"),
    ((GOOD_BOXES, GOOD_SCORES), {"link_iou": "0.5"}, "link_iou to be a number"),
    ((GOOD_BOXES, GOOD_SCORES), {"suppress_iou": 2.0}, "suppress_iou"),
    ((GOOD_BOXES, GOOD_SCORES), {"suppress_iou": None}, "suppress_iou"),
    ((GOOD_BOXES, GOOD_SCORES), {"rescore": "mean"}, "rescore to be one of"),
    ((GOOD_BOXES, GOOD_SCORES), {"rescore": None}, "rescore"),
    ((GOOD_BOXES, GOOD_SCORES), {"suppress": "drop"}, "suppress to be one of"),
    ((GOOD_BOXES, GOOD_SCORES), {"plus_one": "yes"}, "plus_one to be a bool"),
    # ragged per-frame lists
    (([A, [A]], [[1.0], [1.0]]), {}, r"boxes\[0\] of shape \(B_0, 4\)"),
    (([[A], [A]], [[1.0]]), {}, "scores to hold F = 2 frames like boxes, but got 1"),
    (([[A], [A]], [[1.0], [1.0]], [[0]]), {}, "labels to hold F = 2 frames"),
    (([[A], [A]], 3.0), {}, "scores to be a sequence of 2 per-frame arrays"),
    (([[A], [A]], [[1.0], [1.0, 2.0]]), {}, r"scores\[1\] of shape \(1,\) matching boxes\[1\]"),
    (([[A], [A]], [[1.0], [1.0]], [[0], [0, 1]]), {}, r"labels\[1\] of shape"),
    (([[A], [[2.0, 0.0, 1.0, 1.0]]], [[1.0], [1.0]]), {}, "x2 >= x1.*frame 1, box 0"),
    (([[A], [A]], [[1.0], [np.nan]]), {}, "NaN at frame 1, box 0"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("args, kwargs, match", BAD)
def test_bad_input_raises(impl, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(impl, *args, **kwargs)


def test_bad_impl_raises():
    with pytest.raises(ValueError, match="impl"):
        seq_nms(GOOD_BOXES, GOOD_SCORES, impl="triton")


def test_absent_boxes_may_hold_anything():
    boxes = with_box([np.nan, np.inf, -5.0, -np.inf])
    scores = GOOD_SCORES.copy()
    scores[1, 0] = -INF
    # A and A1 of frame 0 both link to A1 of frame 1 (2.0 each): the first wins, and suppresses the other.
    for impl in IMPLS:
        assert as_tuples(run(impl, boxes, scores)) == [(0, [0, 1], 2.0)]


def test_cpp_binding_validates():
    c = _ext.ext()
    args = dict(link_iou=0.5, suppress_iou=0.3, rescore="none", suppress="zero", plus_one=False)
    with pytest.raises(ValueError, match="seq_nms: expected boxes of shape"):
        c.seq_nms(np.zeros((2, 4)), np.zeros((2, 2)), None, **args)
    with pytest.raises(ValueError, match="seq_nms: expected scores of shape"):
        c.seq_nms(GOOD_BOXES, np.zeros((2, 3)), None, **args)
    with pytest.raises(ValueError, match="seq_nms: expected labels of shape"):
        c.seq_nms(GOOD_BOXES, GOOD_SCORES, np.zeros((1, 2), dtype=np.int64), **args)
    with pytest.raises(ValueError, match="NaN at frame 1, box 1"):
        c.seq_nms(GOOD_BOXES, with_score(np.nan), None, **args)
    with pytest.raises(ValueError, match="finite scores"):
        c.seq_nms(GOOD_BOXES, with_score(np.inf), None, **args)
    with pytest.raises(ValueError, match="finite coordinates"):
        c.seq_nms(with_box([0.0, np.nan, 1.0, 1.0]), GOOD_SCORES, None, **args)
    with pytest.raises(ValueError, match="x2 >= x1"):
        c.seq_nms(with_box([5.0, 0.0, 1.0, 1.0]), GOOD_SCORES, None, **args)
    with pytest.raises(ValueError, match=r"link_iou in \[0, 1\]"):
        c.seq_nms(GOOD_BOXES, GOOD_SCORES, None, **{**args, "link_iou": float("nan")})
    with pytest.raises(ValueError, match="suppress_iou"):
        c.seq_nms(GOOD_BOXES, GOOD_SCORES, None, **{**args, "suppress_iou": -1.0})
    with pytest.raises(ValueError, match="rescore"):
        c.seq_nms(GOOD_BOXES, GOOD_SCORES, None, **{**args, "rescore": "mean"})
    with pytest.raises(ValueError, match="suppress"):
        c.seq_nms(GOOD_BOXES, GOOD_SCORES, None, **{**args, "suppress": "drop"})
    starts, lengths, indices, scores = c.seq_nms(GOOD_BOXES, GOOD_SCORES, None, **args)
    assert starts.tolist() == [0] and lengths.tolist() == [2] and indices.tolist() == [0, 0]
    assert scores.tolist() == [2.0]


def test_fallback_without_extension(monkeypatch):
    monkeypatch.setattr(_ext, "HAS_EXT", False)
    monkeypatch.setattr(_ext, "_warned", False)
    with pytest.warns(RuntimeWarning, match="reference paths"):
        got = seq_nms(GOOD_BOXES, GOOD_SCORES)
    assert as_tuples(got) == [(0, [0, 0], 2.0)]
