"""greedy_relation_association: C++ path vs the reference, hand-worked cases (bad input: test_association_input.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.common import needs_ext
from uasan import _ext
from uasan.ops import association as assoc_mod
from uasan.ops.association import greedy_relation_association, greedy_relation_association_ref

# ----------------------------------------------------------------------------------------------------------------
# Random videos
# ----------------------------------------------------------------------------------------------------------------


def _object_track(rng, n_frames: int, integer: bool) -> np.ndarray:
    """A box moving smoothly over n_frames, (n_frames, 4)."""
    x, y = rng.uniform(0, 300, size=2)
    w, h = rng.uniform(8, 120, size=2)
    vx, vy = rng.normal(0, 1.5, size=2)
    t = np.arange(n_frames)
    boxes = np.stack([x + vx * t, y + vy * t, x + vx * t + w, y + vy * t + h], axis=1)
    return np.round(boxes) if integer else boxes


def random_video(
    rng,
    *,
    n_frames: int | None = None,
    seg_len: int | None = None,
    n_objects: int | None = None,
    per_segment: int | None = None,
    jitter: float | None = None,
) -> dict:
    """Segment relations of a random video: a few objects moving smoothly, relations that repeat across
    segments with jittered boxes, few triplet types, tied scores, sub/obj durations that differ, 1- and 2-frame
    relations, missing and empty segments, duplicate start frames, shuffled insertion order."""
    n_frames = n_frames or int(rng.integers(20, 160))
    seg_len = seg_len or int(rng.choice([4, 6, 10, 30]))
    stride = max(1, seg_len // int(rng.choice([1, 2, 3])))
    n_objects = n_objects or int(rng.integers(2, 6))
    per_segment = per_segment or int(rng.integers(1, 12))
    integer = bool(rng.random() < 0.5)
    jitter = float(rng.choice([0.0, 0.5, 3.0, 15.0])) if jitter is None else jitter
    score_levels = rng.choice([0.1, 0.25, 0.5, 0.75, 1.0], size=int(rng.integers(1, 4)))
    categories = rng.integers(0, 3, size=n_objects)
    predicates = ["on", "near", "chase"][: int(rng.integers(1, 4))]
    tracks = [_object_track(rng, n_frames + 2 * seg_len, integer) for _ in range(n_objects)]

    groups: dict = {}
    starts = list(range(0, max(1, n_frames - seg_len + 1), stride))
    for fstart in starts:
        if rng.random() < 0.15:
            continue  # a missing segment: the temporal tolerance and interpolation matter
        fend = fstart + seg_len
        rels = []
        n_rel = 0 if rng.random() < 0.08 else int(rng.integers(1, per_segment + 1))
        for _ in range(n_rel):
            s, o = rng.choice(n_objects, size=2, replace=n_objects < 2)
            triplet = [f"c{categories[s]}", str(rng.choice(predicates)), f"c{categories[o]}"]
            score = float(rng.choice(score_levels)) if rng.random() < 0.6 else float(rng.uniform(0, 1))

            def span(fstart=fstart, fend=fend):
                kind = rng.random()
                if kind < 0.6:
                    return fstart, fend
                if kind < 0.75:
                    b = int(rng.integers(fstart, fend))
                    return b, b + int(rng.integers(1, 3))  # 1- and 2-frame trajectories
                b = int(rng.integers(fstart, fend))
                return b, int(rng.integers(b + 1, fend + 1))

            def traj(track, b, e):
                boxes = track[b:e] + rng.normal(0, jitter, size=(e - b, 4)) * (rng.random() < 0.7)
                if rng.random() < 0.1:  # a box that matches nothing
                    boxes = boxes + rng.uniform(-200, 200, size=(1, 4))
                boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
                if integer:
                    boxes = np.round(boxes)
                return boxes.tolist()

            rel = {"triplet": triplet, "score": score}
            if rng.random() < 0.3:
                sb, se = span()
                ob, oe = span()
                rel.update(sub_duration=[sb, se], obj_duration=[ob, oe])
            else:
                sb, se = ob, oe = span()
                rel["duration"] = [sb, se]
            rel["sub_traj"] = traj(tracks[s], sb, se)
            rel["obj_traj"] = traj(tracks[o], ob, oe)
            rels.append(rel)
        groups[(fstart, fend)] = rels
        if rng.random() < 0.05:
            groups[(fstart, fend + 1)] = []  # same start frame, another key
    items = list(groups.items())
    order = rng.permutation(len(items))
    return {items[i][0]: items[i][1] for i in order}


def random_params(rng) -> dict:
    return {
        "linkage_threshold": float(rng.choice([0.0, 0.1, 0.3, 0.5, 0.7])),
        "inference_topk": int(rng.choice([1, 2, 3, 5, 200])),
        "association_topk": int(rng.choice([1, 3, 10, 200])),
        "nms": float(rng.choice([0.2, 0.5, 0.8, 1.0, 1.0])),
        "temporal_tolerance": int(rng.choice([0, 1, 5, 30])),
    }


def _spans(rel: dict) -> list:
    return [rel["sub_duration"], rel["obj_duration"]] if "sub_duration" in rel else [rel["duration"]]


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert list(g) == ["triplet", "score", "duration", "sub_traj", "obj_traj"], k
        assert g["triplet"] == w["triplet"], k
        assert g["duration"] == w["duration"] and all(type(x) is int for x in g["duration"]), k
        assert type(g["score"]) is float and math.isclose(g["score"], w["score"], rel_tol=0, abs_tol=1e-9), k
        for field in ("sub_traj", "obj_traj"):
            a, b = np.asarray(g[field]), np.asarray(w[field])
            assert a.shape == b.shape == (w["duration"][1] - w["duration"][0], 4), k
            assert all(type(x) is float for box in g[field] for x in box), k
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=f"relation {k} {field}")


# ----------------------------------------------------------------------------------------------------------------
# C++ vs reference
# ----------------------------------------------------------------------------------------------------------------


@needs_ext
def test_cpp_matches_ref_random(rng):
    linked = 0
    for _ in range(150):
        groups = random_video(rng)
        params = random_params(rng)
        want = greedy_relation_association_ref(groups, **params)
        got = greedy_relation_association(groups, impl="cpp", **params)
        assert_same(got, want)
        assert got == want  # in fact bit-identical
        longest = max((e - b for rels in groups.values() for r in rels for b, e in _spans(r)), default=0)
        linked += sum(r["duration"][1] - r["duration"][0] > longest for r in want)
    assert linked > 0  # the inputs do link across segments


@needs_ext
def test_cpp_matches_ref_long_video(rng):
    groups = random_video(rng, n_frames=600, seg_len=30, n_objects=3, per_segment=20, jitter=1.0)
    for nms in (1.0, 0.3):
        params = {"inference_topk": 25, "association_topk": 50, "nms": nms}
        want = greedy_relation_association_ref(groups, **params)
        assert any(r["duration"][1] - r["duration"][0] > 90 for r in want)
        assert greedy_relation_association(groups, impl="cpp", **params) == want


@needs_ext
def test_impl_dispatch(rng):
    groups = random_video(rng)
    want = greedy_relation_association_ref(groups)
    for impl in ("auto", "cpp", "ref", "torch"):
        assert greedy_relation_association(groups, impl=impl) == want
    with pytest.raises(ValueError, match="impl"):
        greedy_relation_association(groups, impl="triton")


@needs_ext
def test_cpp_accepts_arrays_tuples_and_ints(rng):
    """Trajectories that the extension's list reader does not take (arrays, NumPy scalars) go through np.asarray;
    tuples and ints go through the reader. Either way the C++ path equals the reference."""
    groups = random_video(rng, n_frames=120, per_segment=6, jitter=0.5)
    plain = greedy_relation_association(groups, impl="cpp")
    converters = [
        lambda t: np.asarray(t),
        lambda t: np.asarray(t, dtype=np.float32),
        lambda t: tuple(tuple(b) for b in t),
        lambda t: [[np.float64(c) for c in b] for b in t],
        lambda t: [[int(c) for c in b] for b in t],
    ]
    for convert in converters:
        converted = {
            key: [{**r, "sub_traj": convert(r["sub_traj"]), "obj_traj": convert(r["obj_traj"])} for r in rels]
            for key, rels in groups.items()
        }
        want = greedy_relation_association_ref(converted)
        assert greedy_relation_association(converted, impl="cpp") == want
    assert greedy_relation_association_ref(groups) == plain


@needs_ext
def test_read_boxes_declines_what_it_does_not_expect():
    read = _ext.ext().association_read_boxes
    np.testing.assert_array_equal(read([[[0, 1, 2, 3.5]], ([4.0, 5.0, 6.0, 7.0],)], 2), [[0, 1, 2, 3.5], [4, 5, 6, 7]])
    assert read([[[0, 1, 2, 3]]], 2) is None  # fewer boxes than announced
    assert read([[[0, 1, 2, 3]], [[0, 1, 2, 3]]], 1) is None  # more
    assert read([[[0, 1, 2]]], 1) is None
    assert read([[[0, 1, 2, float("nan")]]], 1) is None
    assert read([[[0, 1, 2, 10**400]]], 1) is None
    assert read([[[2, 1, 1, 3]]], 1) is None  # x2 < x1
    assert read([[np.zeros(4)]], 1) is None
    assert read((([0, 1, 2, 3],),), 1) is None
    assert read([], 0).shape == (0, 4)


@needs_ext
def test_compensated_sum_flag():
    """Python >= 3.12 sums the confidences with Neumaier compensation; the C++ path follows the interpreter."""
    box = [[0.0, 0.0, 10.0, 10.0]] * 2
    groups = {
        (i, i + 2): [{"triplet": ["a", "p", "b"], "score": s, "duration": [i, i + 2], "sub_traj": box, "obj_traj": box}]
        for i, s in ((0, 1.0), (1, 1e-16), (2, 1e-16))
    }
    want = sum([1.0, 1e-16, 1e-16])
    for compensated, expected in ((True, 1.0 + 2e-16), (False, 1.0), (assoc_mod._COMPENSATED_SUM, want)):
        saved = assoc_mod._COMPENSATED_SUM
        assoc_mod._COMPENSATED_SUM = compensated
        try:
            (got,) = greedy_relation_association(groups, impl="cpp")
        finally:
            assoc_mod._COMPENSATED_SUM = saved
        assert got["score"] == expected
    assert greedy_relation_association_ref(groups)[0]["score"] == want


# ----------------------------------------------------------------------------------------------------------------
# Hand-worked cases
# ----------------------------------------------------------------------------------------------------------------


def _rel(triplet, score, b, e, sub, obj, **extra):
    return {"triplet": triplet, "score": score, "duration": [b, e], "sub_traj": sub, "obj_traj": obj, **extra}


def _split_rel(triplet, score, sub_duration, obj_duration, box):
    """A relation whose subject and object span frames of their own, one ``box`` a frame."""
    (sb, se), (ob, oe) = sub_duration, obj_duration
    return {
        "triplet": triplet, "score": score, "sub_duration": [sb, se], "obj_duration": [ob, oe],
        "sub_traj": [box] * (se - sb), "obj_traj": [box] * (oe - ob),
    }  # fmt: skip


IMPLS = ["ref", pytest.param("cpp", marks=needs_ext)]


@pytest.mark.parametrize("impl", IMPLS)
def test_two_segments_link(impl):
    # Frames [0, 4) and [2, 6); the subjects and objects agree on the overlap [2, 4) up to a shift of 2 pixels.
    sa = [[0.0, 0.0, 9.0, 9.0]] * 4
    oa = [[20.0, 0.0, 29.0, 9.0]] * 4
    sb = [[2.0, 0.0, 11.0, 9.0]] * 4
    ob = [[22.0, 0.0, 31.0, 9.0]] * 4
    groups = {
        (2, 6): [_rel(["dog", "chase", "cat"], 0.25, 2, 6, sb, ob)],
        (0, 4): [_rel(["dog", "chase", "cat"], 0.5, 0, 4, sa, oa), _rel(["dog", "near", "cat"], 0.7, 0, 4, sa, oa)],
    }
    # Inclusive boxes 10x10: intersection 8x10 = 80 per frame, IoU = 160 / (400 - 160) = 2/3 > 0.5: they link.
    out = greedy_relation_association(groups, impl=impl)
    assert [r["triplet"] for r in out] == [["dog", "chase", "cat"], ["dog", "near", "cat"]]
    chase = out[0]
    assert chase["score"] == 0.75 and chase["duration"] == [0, 6]
    assert chase["sub_traj"] == [[0.0, 0.0, 9.0, 9.0]] * 2 + [[1.0, 0.0, 10.0, 9.0]] * 2 + [[2.0, 0.0, 11.0, 9.0]] * 2
    assert chase["obj_traj"][2] == [21.0, 0.0, 30.0, 9.0]
    # At 0.7 they do not link: two video relations of the same triplet, by score.
    out = greedy_relation_association(groups, linkage_threshold=0.7, impl=impl)
    assert [(r["score"], r["duration"]) for r in out] == [(0.7, [0, 4]), (0.5, [0, 4]), (0.25, [2, 6])]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threshold", [2 / 3, 0.66666667, 0.6666666])
def test_float32_iou_comparison(impl, threshold):
    # The cubic IoU 160 / 240 = 2/3 is stored as float32 and compared as NumPy compares a float32 with a Python
    # float (in float32 under NumPy >= 2), exactly as VidVRD-II's code does.
    sa, sb = [[0.0, 0.0, 9.0, 9.0]] * 4, [[2.0, 0.0, 11.0, 9.0]] * 4
    groups = {(0, 4): [_rel(["a", "p", "b"], 0.5, 0, 4, sa, sa)], (2, 6): [_rel(["a", "p", "b"], 0.25, 2, 6, sb, sb)]}
    out = greedy_relation_association(groups, linkage_threshold=threshold, impl=impl)
    assert len(out) == (1 if np.float32(160 / 240) > threshold else 2)


@pytest.mark.parametrize("impl", IMPLS)
def test_gap_interpolation(impl):
    # Segment [0, 2) then [6, 8): a gap of 4 frames (< 30) links on the boundary boxes, filled by np.interp.
    # Inclusive 100x100 boxes shifted by 5 pixels: IoU of the boundary boxes = 9500 / 10500 > 0.5.
    a = [[0.0, 0.0, 99.0, 99.0], [0.0, 0.0, 99.0, 99.0]]
    b = [[5.0, 0.0, 104.0, 99.0], [5.0, 0.0, 104.0, 99.0]]
    groups = {(0, 2): [_rel(["a", "p", "b"], 1.0, 0, 2, a, a)], (6, 8): [_rel(["a", "p", "b"], 0.5, 6, 8, b, b)]}
    (out,) = greedy_relation_association(groups, impl=impl)
    assert out["duration"] == [0, 8] and out["score"] == 1.5
    # Frames 2..5 interpolate x1 from 0 (frame 1) to 5 (frame 6): 1, 2, 3, 4.
    assert [box[0] for box in out["sub_traj"]] == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0]
    assert [box[2] for box in out["obj_traj"]] == [99.0, 99.0, 100.0, 101.0, 102.0, 103.0, 104.0, 104.0]
    # With a tolerance of 4 the gap of 4 frames is too wide: two relations.
    out = greedy_relation_association(groups, temporal_tolerance=4, impl=impl)
    assert [r["duration"] for r in out] == [[0, 2], [6, 8]]


@pytest.mark.parametrize("impl", IMPLS)
def test_short_common_span_dropped(impl):
    box = [0.0, 0.0, 10.0, 10.0]
    groups = {
        (0, 10): [
            _split_rel([1, 2, 3], 0.9, [0, 5], [4, 10], box),  # common span [4, 5): 1 frame, dropped
            _split_rel([1, 2, 4], 0.1, [0, 5], [3, 10], box),  # common span [3, 5): 2 frames, kept
            _rel([1, 2, 5], 0.5, 7, 8, [box], [box]),  # a 1-frame relation: dropped
        ]
    }
    out = greedy_relation_association(groups, impl=impl)
    assert out == [
        {"triplet": [1, 2, 4], "score": 0.1, "duration": [3, 5], "sub_traj": [box] * 2, "obj_traj": [box] * 2}
    ]


@pytest.mark.parametrize("impl", IMPLS)
def test_ties_topk_and_nms(impl):
    box = [[0.0, 0.0, 10.0, 10.0]] * 3
    far = [[100.0, 100.0, 110.0, 110.0]] * 3
    groups = {
        (0, 3): [
            _rel(["a", "p", "b"], 0.5, 0, 3, box, box),
            _rel(["a", "p", "b"], 0.5, 0, 3, far, box),
            _rel(["a", "q", "b"], 0.5, 0, 3, box, box),
        ]
    }
    out = greedy_relation_association(groups, impl=impl)
    assert [(r["triplet"][1], r["sub_traj"][0][0]) for r in out] == [("p", 0.0), ("p", 100.0), ("q", 0.0)]
    assert len(greedy_relation_association(groups, inference_topk=2, impl=impl)) == 2
    assert len(greedy_relation_association(groups, association_topk=1, impl=impl)) == 1
    assert len(greedy_relation_association(groups, inference_topk=10**30, association_topk=10**30, impl=impl)) == 3
    # Same triplet, same boxes, in two segments that do not link (threshold 1): NMS keeps the first.
    groups = {
        (0, 3): [_rel(["a", "p", "b"], 0.5, 0, 3, box, box)],
        (3, 6): [_rel(["a", "p", "b"], 0.7, 0, 3, box, box)],
    }
    assert len(greedy_relation_association(groups, linkage_threshold=1.0, impl=impl)) == 2
    (out,) = greedy_relation_association(groups, linkage_threshold=1.0, nms=0.5, impl=impl)
    assert out["score"] == 0.7


@pytest.mark.parametrize("impl", IMPLS)
def test_empty(impl):
    assert greedy_relation_association({}, impl=impl) == []
    assert greedy_relation_association({(0, 30): [], (15, 45): []}, impl=impl) == []
