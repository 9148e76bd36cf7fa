"""greedy_relation_association on bad input: each malformed field or option is a ValueError naming it, the C++
core's own checks, and a hypothesis fuzz in which both paths give the same answer or the same ValueError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.common import needs_ext
from tests.ops.test_association import IMPLS, _rel
from uasan import _ext
from uasan.ops.association import greedy_relation_association

# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------


def _good() -> dict:
    box = [[0.0, 0.0, 10.0, 10.0]] * 30
    return {(0, 30): [_rel(["a", "p", "b"], 0.5, 0, 30, box, box) for _ in range(4)]}


def _set(path, value):
    def edit(groups):
        rel = groups[(0, 30)][3]
        if value is KeyError:
            del rel[path]
        else:
            rel[path] = value
        return groups

    return edit


BAD = [
    (lambda g: [g], r"relation_groups to be a dict"),
    (lambda g: {(0,): g[(0, 30)]}, r"keys to be \(fstart, fend\)"),
    (lambda g: {(0.0, 30): g[(0, 30)]}, r"keys to be \(fstart, fend\)"),
    (lambda g: {(30, 30): g[(0, 30)]}, r"0 <= fstart < fend"),
    (lambda g: {(-15, 15): g[(0, 30)]}, r"0 <= fstart < fend"),
    (lambda g: {(0, 30): "x"}, r"relation_groups\[\(0, 30\)\] to be a list"),
    (lambda g: {(0, 30): [*g[(0, 30)][:3], 7]}, r"relation_groups\[\(0, 30\)\]\[3\] to be a dict"),
    (_set("score", KeyError), r"\[3\] is missing the field 'score'"),
    (_set("sub_traj", KeyError), r"\[3\] is missing the field 'sub_traj'"),
    (_set("duration", KeyError), r"\[3\] is missing the field 'duration'"),
    (_set("sub_duration", [0, 30]), r"\[3\] has sub_duration but not the other"),
    (_set("triplet", ["a", "p"]), r"\[3\]\['triplet'\] to be \[subject, predicate, object\]"),
    (_set("triplet", ["a", ["p"], "b"]), r"\[3\]\['triplet'\] to hold hashable"),
    (_set("score", float("nan")), r"\[3\]\['score'\] to be a finite real"),
    (_set("score", "high"), r"\[3\]\['score'\] to be a finite real"),
    (_set("duration", [0.0, 30.0]), r"\[3\]\['duration'\] to hold integer frame numbers"),
    (_set("duration", [-1, 29]), r"\[3\]\['duration'\] to hold integer frame numbers"),
    (_set("duration", [30, 0]), r"\[3\]\['duration'\] to be \[begin, end\) with begin < end"),
    (_set("duration", [0, 30, 60]), r"\[3\]\['duration'\] to be \[begin, end\]"),
    (
        _set("duration", [1, 30]),
        r"relation_groups\[\(0, 30\)\]\[3\]\['sub_traj'\] has 30 boxes but its duration "
        r"\[1, 30\) spans 29 frames",
    ),
    (_set("obj_traj", [[0, 0, 1, 1]] * 29), r"\[3\]\['obj_traj'\] has 29 boxes but its duration \[0, 30\) spans 30"),
    (_set("sub_traj", [[0, 0, 1]] * 30), r"\[3\]\['sub_traj'\] of shape \(30, 4\)"),
    (_set("sub_traj", [[0, 0, 1, 1]] * 29 + [[0, 0, 1]]), r"\[3\]\['sub_traj'\] to be a list of \[x1, y1, x2, y2\]"),
    (_set("sub_traj", [[0, 0, 1, float("inf")]] * 30), r"\[3\]\['sub_traj'\] to hold finite coordinates"),
    (_set("obj_traj", [[0, 0, 1, float("nan")]] * 30), r"\[3\]\['obj_traj'\] to hold finite coordinates"),
    (_set("obj_traj", [[5, 0, 1, 1]] * 30), r"\[3\]\['obj_traj'\] boxes with x2 >= x1"),
    (_set("sub_traj", 3), r"\[3\]\['sub_traj'\] to be a list of \[x1, y1, x2, y2\] boxes"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("edit", "match"), BAD)
def test_bad_input(impl, edit, match):
    with pytest.raises(ValueError, match=r"greedy_relation_association: .*" + match):
        greedy_relation_association(edit(_good()), impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inference_topk": 0}, "inference_topk to be a positive integer"),
        ({"association_topk": -1}, "association_topk to be a positive integer"),
        ({"association_topk": 2.0}, "association_topk to be a positive integer"),
        ({"linkage_threshold": float("nan")}, "linkage_threshold to be a finite real"),
        ({"nms": None}, "nms to be a finite real"),
        ({"temporal_tolerance": float("inf")}, "temporal_tolerance to be a finite real"),
    ],
)
def test_bad_params(impl, kwargs, match):
    with pytest.raises(ValueError, match=match):
        greedy_relation_association(_good(), impl=impl, **kwargs)


@needs_ext
def test_cpp_core_rejects_inconsistent_arrays():
    c = _ext.ext()
    z = np.zeros(0, dtype=np.int64)
    args = dict(
        linkage_threshold=0.5,
        linkage_threshold_f32=0.5,
        temporal_tolerance=30.0,
        association_topk=1,
        nms=1.0,
        compensated_sum=False,
    )
    with pytest.raises(ValueError, match="segment_offsets to end"):
        c.greedy_relation_association(
            np.array([0, 1]), z, np.zeros(0), np.zeros((0, 4), np.int64), np.array([0]), np.zeros((0, 4)), **args
        )
    one = dict(triplets=np.array([0]), scores=np.array([1.0]), spans=np.array([[0, 2, 0, 2]]))
    with pytest.raises(ValueError, match="own 4 boxes"):
        c.greedy_relation_association(
            np.array([0, 1]), box_offsets=np.array([0, 3]), boxes=np.zeros((3, 4)), **one, **args
        )
    with pytest.raises(ValueError, match="finite"):
        c.greedy_relation_association(
            np.array([0, 1]), box_offsets=np.array([0, 4]), boxes=np.full((4, 4), np.nan), **one, **args
        )


# ----------------------------------------------------------------------------------------------------------------
# Anything hypothesis generates: no crash, same answer or the same ValueError from both paths
# ----------------------------------------------------------------------------------------------------------------

_coord = st.one_of(st.integers(-3, 40), st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([float("nan"), 1e308]))
_box = st.lists(_coord, min_size=3, max_size=5)
_frame = st.one_of(st.integers(-1, 12), st.sampled_from([2.0, None]))


@st.composite
def _relation(draw):
    b = draw(_frame)
    e = draw(st.one_of(st.integers(0, 14), _frame))
    n = e - b if isinstance(b, int) and isinstance(e, int) and 0 <= e - b <= 8 else draw(st.integers(0, 3))
    rel = {
        "triplet": draw(st.lists(st.sampled_from("ab"), min_size=2, max_size=4)),
        "score": draw(st.one_of(st.sampled_from([0.5, 1.0]), st.floats(allow_nan=True, allow_infinity=True))),
        "duration": [b, e],
        "sub_traj": draw(st.lists(_box, min_size=n, max_size=n)),
        "obj_traj": draw(st.lists(_box, min_size=n, max_size=n)),
    }
    if draw(st.booleans()):
        del rel[draw(st.sampled_from(list(rel)))]
    return rel


@needs_ext
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.dictionaries(
        st.tuples(st.integers(-1, 12), st.integers(0, 14)), st.lists(_relation(), max_size=4), max_size=4
    ),
    threshold=st.sampled_from([0.0, 0.5, -0.1, 2.0]),
    tolerance=st.sampled_from([0, 3, 30]),
    nms=st.sampled_from([0.5, 1.0]),
)
def test_fuzz_both_paths_agree(groups, threshold, tolerance, nms):
    results = []
    for impl in ("ref", "cpp"):
        try:
            results.append(
                greedy_relation_association(
                    groups, linkage_threshold=threshold, temporal_tolerance=tolerance, nms=nms, impl=impl
                )
            )
        except ValueError as exc:
            results.append(str(exc))
    assert results[0] == results[1]
