"""greedy_relation_association on columns: SegmentRelations in, AssociationArrays out, against the dict API."""

from __future__ import annotations

import numpy as np
import pytest

from tests.common import needs_ext
from tests.ops.test_association import random_params, random_video
from uasan.ops import AssociationArrays, SegmentRelations, greedy_relation_association, greedy_relation_association_ref

IMPLS = ["ref", pytest.param("cpp", marks=needs_ext)]


def shared_duration(groups: dict) -> dict:
    """The relations whose subject and object share one duration (the official format; what columns hold)."""
    return {key: [r for r in rels if "duration" in r] for key, rels in groups.items()}


def to_columns(groups: dict) -> SegmentRelations:
    """The same relations as columns, rows in the order the dict lists them, triplets interned in that order."""
    return SegmentRelations.from_groups(groups)


def rows_of(groups: dict) -> list[dict]:
    return [r for rels in groups.values() for r in rels]


def assert_arrays_equal(got: AssociationArrays, want: AssociationArrays) -> None:
    for field in ("origin", "triplet", "score", "duration", "offsets", "sub_boxes", "obj_boxes"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        np.testing.assert_array_equal(a, b, err_msg=field)
    assert got.triplets == want.triplets


def assert_arrays_match_dicts(arrs: AssociationArrays, dicts: list[dict], groups: dict) -> None:
    """Every field of the arrays says what the dict output says; each origin is a relation of that triplet."""
    n = len(dicts)
    assert arrs.origin.shape == arrs.triplet.shape == arrs.score.shape == (n,)
    assert arrs.duration.shape == (n, 2) and arrs.offsets.shape == (n + 1,) and arrs.offsets[0] == 0
    assert arrs.sub_boxes.shape == arrs.obj_boxes.shape == (int(arrs.offsets[-1]), 4)
    rows = rows_of(groups)
    for k, d in enumerate(dicts):
        assert list(arrs.triplets[arrs.triplet[k]]) == d["triplet"]
        assert list(rows[arrs.origin[k]]["triplet"]) == d["triplet"]
        assert arrs.score[k] == d["score"] and arrs.duration[k].tolist() == d["duration"]
        lo, hi = arrs.offsets[k], arrs.offsets[k + 1]
        assert arrs.sub_boxes[lo:hi].tolist() == d["sub_traj"] and arrs.obj_boxes[lo:hi].tolist() == d["obj_traj"]
    assert arrs.to_dicts() == dicts


@pytest.mark.parametrize("impl", IMPLS)
def test_array_output_matches_dict_output(rng, impl):
    for _ in range(60):
        groups, params = random_video(rng), random_params(rng)  # sub/obj durations that differ included
        dicts = greedy_relation_association_ref(groups, **params)
        arrs = greedy_relation_association(groups, impl=impl, output="arrays", **params)
        assert_arrays_match_dicts(arrs, dicts, groups)
        if impl == "cpp":
            assert_arrays_equal(arrs, greedy_relation_association_ref(groups, output="arrays", **params))


@pytest.mark.parametrize("impl", IMPLS)
def test_columns_in_match_dicts_in(rng, impl):
    """Columnar input gives the dict input's output, as dicts and as arrays (same origins, same triplet ids)."""
    linked = 0
    for _ in range(60):
        groups, params = shared_duration(random_video(rng)), random_params(rng)
        cols = to_columns(groups)
        want = greedy_relation_association_ref(groups, **params)
        assert greedy_relation_association(cols, impl=impl, **params) == want
        arrs = greedy_relation_association(cols, impl=impl, output="arrays", **params)
        assert_arrays_equal(arrs, greedy_relation_association_ref(groups, output="arrays", **params))
        assert_arrays_match_dicts(arrs, want, groups)
        longest = max((e - b for r in rows_of(groups) for b, e in [r["duration"]]), default=0)
        linked += sum(e - b > longest for b, e in arrs.duration.tolist())  # spans more than one segment
    assert linked > 0


@needs_ext
def test_columns_awkward_layouts(rng):
    """Non-contiguous views, float32 scores and boxes, int32 frames, ids without names, no relation at all."""
    groups = shared_duration(random_video(rng, n_frames=150, per_segment=8, jitter=0.5))
    cols = to_columns(groups)
    want = greedy_relation_association_ref(cols, output="arrays")
    wide = np.zeros((len(cols.boxes), 8))
    wide[:, ::2] = cols.boxes
    odd = cols._replace(
        boxes=wide[:, ::2],  # strided
        duration=cols.duration.astype(np.int32),
        segments=np.asfortranarray(cols.segments),
        triplet=cols.triplet.astype(np.int32),
        triplets=None,
    )
    got = greedy_relation_association(odd, impl="cpp", output="arrays")
    assert_arrays_equal(got, want._replace(triplets=None))
    assert_arrays_equal(greedy_relation_association_ref(odd, output="arrays"), want._replace(triplets=None))
    f32 = cols._replace(score=cols.score.astype(np.float32), boxes=cols.boxes.astype(np.float32))
    assert_arrays_equal(
        greedy_relation_association(f32, impl="cpp", output="arrays"),
        greedy_relation_association_ref(f32, output="arrays"),
    )
    # already in processing order and nothing cut: the C++ path takes the boxes as they are
    ordered = {k: sorted(groups[k], key=lambda r: r["score"], reverse=True) for k in sorted(groups)}
    cols = to_columns(ordered)
    assert_arrays_equal(
        greedy_relation_association(cols, impl="cpp", output="arrays"),
        greedy_relation_association_ref(cols, output="arrays"),
    )
    assert greedy_relation_association(cols, impl="cpp") == greedy_relation_association_ref(ordered)
    empty = to_columns({})
    assert greedy_relation_association(empty, impl="cpp") == [] == greedy_relation_association_ref(empty)
    none = to_columns({(0, 30): [], (15, 45): []})
    out = greedy_relation_association(none, impl="cpp", output="arrays")
    assert out.origin.shape == (0,) and out.offsets.tolist() == [0] and out.sub_boxes.shape == (0, 4)
    assert_arrays_equal(out, greedy_relation_association_ref(none, output="arrays"))


def _one() -> SegmentRelations:
    box = [[0.0, 0.0, 10.0, 10.0]] * 4
    rel = {"triplet": ["a", "p", "b"], "score": 0.5, "duration": [0, 4], "sub_traj": box, "obj_traj": box}
    return to_columns({(0, 4): [rel, dict(rel)]})


BAD = [
    (lambda c: c._replace(score=np.array([0.5, np.nan])), r"relations.score to be finite, but row 1"),
    (lambda c: c._replace(duration=np.array([[0, 4], [4, 4]])), r"relations.duration .* row 1 is \[4, 4\]"),
    (lambda c: c._replace(duration=np.array([[0, 4], [0.0, 4.0]])), r"relations.duration to be an integer array"),
    (lambda c: c._replace(boxes=c.boxes[:-1]), r"relations.boxes to be a real array of shape \(16, 4\)"),
    (
        lambda c: c._replace(boxes=np.where(np.arange(16)[:, None] == 9, np.nan, c.boxes)),
        r"relations.boxes to be finite .* box row 9 \(relation 1\)",
    ),
    (lambda c: c._replace(boxes=c.boxes[:, ::-1]), r"relations.boxes .* x2 >= x1 .* box row 0 \(relation 0\)"),
    (lambda c: c._replace(segments=np.array([[4, 4]])), r"relations.segments to hold \[fstart, fend\)"),
    (
        lambda c: c._replace(segments=np.array([[0, 4], [0, 4]]), segment_offsets=np.array([0, 1, 2])),
        r"each segment once",
    ),
    (lambda c: c._replace(segment_offsets=np.array([0, 1])), r"relations.segment_offsets to run from 0 to 2"),
    (
        lambda c: c._replace(segment_offsets=np.array([0, 1, 2])),
        r"relations.segment_offsets to be an integer array of shape",
    ),
    (lambda c: c._replace(triplet=np.array([0, 1])), r"relations.triplet to index relations.triplets"),
    (lambda c: c._replace(score=[0.5]), r"relations.score to be a real array of shape \(2,\)"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("edit", "match"), BAD)
def test_bad_columns(impl, edit, match):
    for output in ("arrays", "dicts"):
        with pytest.raises(ValueError, match=r"greedy_relation_association: expected " + match):
            greedy_relation_association(edit(_one()), impl=impl, output=output)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_output_options(impl):
    with pytest.raises(ValueError, match=r"output to be 'dicts' or 'arrays', but got 'json'"):
        greedy_relation_association(_one(), impl=impl, output="json")
    with pytest.raises(ValueError, match=r"the dict output needs relations.triplets"):
        greedy_relation_association(_one()._replace(triplets=None), impl=impl)
    with pytest.raises(ValueError, match=r"relation_groups to be a dict .*, or SegmentRelations, but got tuple"):
        greedy_relation_association_ref(tuple(_one()), output="arrays")
