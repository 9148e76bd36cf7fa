"""RelationColumns (conversions, selection, the official JSON writer, its checks) and the annotation reader against
uasan.data's ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.common import needs_ext
from tests.evaluation.gen import dataset
from tests.evaluation.test_relations import assert_same
from uasan import _ext
from uasan.evaluation import (
    RelationColumns,
    evaluate_files,
    evaluate_relations,
    evaluate_relations_ref,
    filter_groundtruth,
    read_annotations,
    read_groundtruth,
    read_predictions,
)


def canonical(data: dict) -> dict:
    """Official dicts with list triplets / durations and float boxes (what a JSON round trip gives)."""
    return {vid: [{**r, "triplet": list(r["triplet"]), "duration": list(r["duration"]),
                   "sub_traj": np.asarray(r["sub_traj"], dtype=float).tolist(),
                   "obj_traj": np.asarray(r["obj_traj"], dtype=float).tolist()} for r in rels]
            for vid, rels in data.items()}  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_round_trips(tmp_path, seed):
    gt, pred = dataset(np.random.default_rng(seed), n_videos=7)
    cols = RelationColumns.from_dicts(pred, scores=True)
    assert cols.to_dicts() == canonical(pred)
    gcols = RelationColumns.from_dicts(gt, scores=False)
    assert gcols.to_dicts() == {vid: [{k: v for k, v in r.items() if k != "score"} for r in rels]
                                for vid, rels in canonical(gt).items()}  # fmt: skip
    if _ext.HAS_EXT:
        path = cols.write_json(tmp_path / "pred.json")
        back = read_predictions(path)
        assert back.videos == cols.videos and back.triplets == cols.triplets
        assert (back.boxes.view(np.int64) == cols.boxes.view(np.int64)).all()  # bit for bit
        np.testing.assert_array_equal(back.score, cols.score)
        assert json.loads(path.read_text())["results"] == canonical(pred)
    assert_same(evaluate_relations(gcols, cols, per_video=True), evaluate_relations_ref(gt, pred, per_video=True))


def test_concat_select_filter():
    gt, pred = dataset(np.random.default_rng(5), n_videos=6, n_cats=3)
    vids = list(pred)
    parts = [RelationColumns.from_dicts({v: pred[v]}, scores=True) for v in vids]
    whole = RelationColumns.concat(parts)
    assert whole.to_dicts() == canonical({v: pred[v] for v in vids})
    assert RelationColumns.concat([]).to_dicts() == {}
    rng = np.random.default_rng(0)
    keep = rng.random(len(whole)) < 0.5
    sel = whole.select(keep)
    flat = [(v, r) for v, rels in whole.to_dicts().items() for r in rels]
    expected = {v: [] for v in whole.videos}
    for (v, r), k in zip(flat, keep, strict=True):
        if k:
            expected[v].append(r)
    assert sel.to_dicts() == expected
    gcols = RelationColumns.from_dicts(gt, scores=False)
    objects, predicates = {"c0", "c2"}, {"p1"}
    assert gcols.filter(objects, predicates).to_dicts() == {
        v: [{k: x for k, x in r.items() if k != "score"} for r in rels]
        for v, rels in canonical(filter_groundtruth(gt, objects, predicates)).items()
    }
    assert isinstance(filter_groundtruth(gcols, objects, None), RelationColumns)


def test_from_trajectories_is_the_association_layout():
    rng = np.random.default_rng(1)
    lengths = np.array([3, 1, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    sub, obj = rng.random((6, 4)), rng.random((6, 4)) + 1
    sub[:, 2:] += 1
    obj[:, 2:] += 1
    dur = np.array([[0, 3], [5, 6], [1, 3]])
    cols = RelationColumns.from_trajectories("v", [("a", "p", "b"), ("c", "q", "d")], [1, 0, 1], dur,
                                             [0.5, 0.7, 0.1], offsets, sub, obj)  # fmt: skip
    rels = cols.to_dicts()["v"]
    for k, r in enumerate(rels):
        np.testing.assert_array_equal(r["sub_traj"], sub[offsets[k] : offsets[k + 1]])
        np.testing.assert_array_equal(r["obj_traj"], obj[offsets[k] : offsets[k + 1]])
    assert [r["triplet"] for r in rels] == [["c", "q", "d"], ["a", "p", "b"], ["c", "q", "d"]]


def _cols(**edit):
    base = dict(
        videos=("a", "b"), video_offsets=[0, 1, 2], triplets=[("s", "p", "o")], triplet=[0, 0],
        duration=[[0, 1], [3, 5]], score=[0.5, 0.25], box_offsets=[0, 2, 6], boxes=[[0, 0, 1, 1]] * 6,
    )  # fmt: skip
    base.update(edit)
    return RelationColumns(**base)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (dict(score=[0.5, np.nan]), r"\['b'\]\[0\] field 'score': expected a finite number"),
        (dict(duration=[[0, 1], [5, 5]]), r"\['b'\]\[0\] field 'duration'"),
        (dict(boxes=[[0, 0, 1, 1]] * 5 + [[2, 0, 1, 1]]), r"\['b'\]\[0\] field 'obj_traj'.*box 1 is"),
        (dict(boxes=[[0, np.inf, 1, 1]] + [[0, 0, 1, 1]] * 5), r"\['a'\]\[0\] field 'sub_traj'.*box 0"),
        (dict(box_offsets=[0, 2, 5], boxes=[[0, 0, 1, 1]] * 5), r"\['b'\]\[0\] field 'sub_traj'"),
        (dict(video_offsets=[0, 2, 1]), r"video_offsets"),
        (dict(videos=("a", "a")), r"each video once"),
        (dict(triplet=[0, 3]), r"triplet to index triplets"),
        (dict(triplet=[0.5, 0]), r"integer array"),
        (dict(score=[0.5]), r"score of shape"),
    ],
)
def test_columns_check_their_input(edit, pattern):
    _cols()  # valid
    with pytest.raises(ValueError, match=pattern):
        _cols(**edit)


# ---- annotations ------------------------------------------------------------------------------------------------


def _annotation(rng: np.random.Generator, vid: str) -> dict:
    """A random VidVRD/VidOR annotation: objects with gaps in their trajectories, relations over covered spans."""
    frames = int(rng.integers(5, 40))
    k = int(rng.integers(2, 5))
    boxes = rng.integers(0, 100, (k, frames, 2))
    present = rng.random((k, frames)) < 0.9
    trajs = [[{"tid": 10 + int(t), "bbox": {"xmin": int(boxes[t, f, 0]), "ymin": int(boxes[t, f, 1]),
                                       "xmax": int(boxes[t, f, 0] + 5 + t), "ymax": float(boxes[t, f, 1]) + 7.5},
               "generated": int(f % 2), "tracker": "none"} for t in rng.permutation(k) if present[t, f]]
             for f in range(frames)]  # fmt: skip
    rels = []
    for _ in range(int(rng.integers(0, 8))):
        s, o = (int(x) for x in rng.choice(k, 2, replace=False))
        both = present[s] & present[o]
        b = int(rng.integers(0, frames))
        if not both[b]:
            continue
        e = b
        while e < frames and both[e] and rng.random() < 0.9:
            e += 1
        if e > b:
            rels.append({"subject_tid": 10 + s, "object_tid": 10 + o, "predicate": f"p{rng.integers(3)}",
                         "begin_fid": b, "end_fid": e})  # fmt: skip
    return {"version": "VERSION 1.0", "video_id": vid, "frame_count": frames + 3, "fps": 30,
            "subject/objects": [{"tid": 10 + t, "category": f"c{rng.integers(3)}"} for t in range(k)],
            "trajectories": trajs, "relation_instances": rels}  # fmt: skip


def _write_vidor(root, annos, names=None):
    for i, a in enumerate(annos):
        name = names[i] if names else a["video_id"]
        path = root / "annotation" / "validation" / f"{i % 3:04d}" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(a))
    (root / "annotation" / "training").mkdir(parents=True, exist_ok=True)


@needs_ext
@pytest.mark.parametrize("seed", range(3))
def test_annotations_equal_the_data_package(tmp_path, seed):
    from uasan.data import load_groundtruth

    rng = np.random.default_rng(seed)
    _write_vidor(tmp_path, [_annotation(rng, f"{100 + v}") for v in range(6)])
    want = load_groundtruth(tmp_path)  # uasan.data: VidVRD-helper's get_relation_insts
    got = read_annotations(tmp_path)
    assert got.videos == tuple(want)
    assert got.to_dicts() == {v: [{k: x for k, x in r.items() if k not in ("subject_tid", "object_tid")}
                                  for r in rels] for v, rels in canonical(want).items()}  # fmt: skip
    pred = {vid: [{**r, "score": float(rng.random())} for r in rels] for vid, rels in want.items()}
    pred_path = tmp_path / "pred.json"
    RelationColumns.from_dicts(pred, scores=True).write_json(pred_path)
    assert_same(evaluate_files(tmp_path, pred_path, per_video=True), evaluate_relations_ref(want, pred, per_video=True))
    assert read_groundtruth(tmp_path, "validation").to_dicts() == got.to_dicts()


@needs_ext
@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda a: a.pop("trajectories"), r"field 'trajectories': missing"),
        (lambda a: a["relation_instances"].append({**a["relation_instances"][0], "end_fid": 10**6}), r"begin_fid"),
        (lambda a: a["trajectories"][0][0]["bbox"].update(xmax=-5), r"trajectories\[0\]\[0\]\.bbox"),
        (lambda a: a.update(video_id="other"), r"video_id"),
        (lambda a: a["relation_instances"][0].update(subject_tid=99), r"relation_instances\[0\]\.subject_tid"),
        (lambda a: a.update(relation_instances={}), r"relation_instances"),  # not a list
        (lambda a: a["subject/objects"].append([1]), r"subject/objects\[\d+\]'?: expected an object"),  # not an object
        (lambda a: a["trajectories"][0].append(7), r"trajectories\[0\]\[2\]"),  # not an object
    ],
)
def test_bad_annotation_names_file_and_field(tmp_path, edit, pattern):
    a = _annotation(np.random.default_rng(0), "100")
    a["relation_instances"] = [{"subject_tid": 10, "object_tid": 11, "predicate": "p", "begin_fid": 0, "end_fid": 1}]
    a["trajectories"][0] = [{"tid": 10, "bbox": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}},
                            {"tid": 11, "bbox": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}}]  # fmt: skip
    edit(a)
    _write_vidor(tmp_path, [a], names=["100"])
    with pytest.raises(ValueError, match=r"100\.json.*" + pattern):
        read_annotations(tmp_path)


@needs_ext
def test_refused_annotations_go_through_the_data_package(tmp_path):
    from uasan.data import load_groundtruth

    a = _annotation(np.random.default_rng(1), "100")
    box = {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}
    # a float tid: the C++ reader wants an integer token, uasan.data takes 10.0; its result is used
    a["trajectories"][0] = [{"tid": 10.0, "bbox": box}, {"tid": 11, "bbox": box}]
    a["relation_instances"] = [{"subject_tid": 10, "object_tid": 11, "predicate": "p", "begin_fid": 0, "end_fid": 1}]
    _write_vidor(tmp_path, [a])
    assert read_annotations(tmp_path).to_dicts() == {
        v: [{k: x for k, x in r.items() if k not in ("subject_tid", "object_tid")} for r in rels]
        for v, rels in canonical(load_groundtruth(tmp_path)).items()
    }
    # a string "generated": both refuse it, and the message is uasan.data's
    a["trajectories"][0][0].update(tid=10, generated="yes")
    _write_vidor(tmp_path, [a])
    with pytest.raises(ValueError, match=r"100\.json: field 'trajectories\[0\]\[0\]\.generated'"):
        read_annotations(tmp_path)
