"""Readers: annotations and ground-truth instances, layouts, splits, segments and tags, proposals, features."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.data import fixtures as fx
from uasan.data import (
    detect_dataset,
    load_groundtruth,
    load_split,
    parse_segment_tag,
    read_annotation,
    read_features,
    read_proposals,
    segment_tag,
    segments,
)
from uasan.data.splits import Vocabulary


def tiny_annotation() -> dict:
    b = lambda x1, y1, x2, y2: {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2}  # noqa: E731
    return {
        "video_id": "tiny", "frame_count": 4, "fps": 30, "width": 20, "height": 20,
        "subject/objects": [{"tid": 3, "category": "person"}, {"tid": 7, "category": "dog"}],
        "trajectories": [
            [{"tid": 3, "bbox": b(0, 0, 10, 10), "generated": 0}, {"tid": 7, "bbox": b(5, 5, 15, 15), "generated": 1}],
            [{"tid": 7, "bbox": b(5, 5, 15, 15)}, {"tid": 3, "bbox": b(1, 0, 11, 10)}],
            [{"tid": 3, "bbox": b(2, 0, 12, 10)}],
        ],
        "relation_instances": [
            {"subject_tid": 3, "object_tid": 7, "predicate": "behind", "begin_fid": 0, "end_fid": 2},
            {"subject_tid": 3, "object_tid": 3, "predicate": "self", "begin_fid": 2, "end_fid": 3},
        ],
    }  # fmt: skip


def test_read_annotation_round_trip(tmp_path):
    raw = tiny_annotation()
    ann = read_annotation(fx.write_json(tmp_path / "tiny.json", raw))
    assert (ann.video_id, ann.frame_count, ann.fps, ann.width, ann.height) == ("tiny", 4, 30, 20, 20)
    assert ann.tids.tolist() == [3, 7] and ann.categories == ("person", "dog")
    assert ann.boxes.shape == (2, 3, 4) and ann.num_frames_annotated == 3
    assert ann.valid.tolist() == [[True, True, True], [True, True, False]]
    assert ann.generated.tolist() == [[False, False, False], [True, False, False]]
    for f, frame in enumerate(raw["trajectories"]):
        for it in frame:
            bb = it["bbox"]
            assert ann.boxes[ann.row(it["tid"]), f].tolist() == [bb["xmin"], bb["ymin"], bb["xmax"], bb["ymax"]]
    assert [r.predicate for r in ann.relations] == ["behind", "self"]


def test_relation_instances_by_hand(tmp_path):
    ann = read_annotation(fx.write_json(tmp_path / "tiny.json", tiny_annotation()))
    insts = ann.relation_instances()
    assert insts[0] == {
        "triplet": ("person", "behind", "dog"), "subject_tid": 3, "object_tid": 7, "duration": (0, 2),
        "sub_traj": [[0, 0, 10, 10], [1, 0, 11, 10]], "obj_traj": [[5, 5, 15, 15], [5, 5, 15, 15]],
    }  # fmt: skip
    assert insts[1]["triplet"] == ("person", "self", "person") and insts[1]["sub_traj"] == [[2, 0, 12, 10]]


def test_layouts_and_groundtruth(tmp_path):
    vrd = fx.make_vidvrd(tmp_path / "vrd")
    vor = fx.make_vidor(tmp_path / "vor")
    assert detect_dataset(vrd) == "vidvrd" and detect_dataset(vor) == "vidor"
    gt = load_groundtruth(vrd)  # test subset by default
    assert list(gt) == ["vidB"] and len(gt["vidB"]) == 4
    first = gt["vidB"][0]
    assert first["triplet"] == ("person", "behind", "dog") and first["duration"] == (0, 30)
    assert first["sub_traj"] == [fx.box_at(0, f) for f in range(30)]
    assert first["obj_traj"] == [fx.box_at(1, f) for f in range(30)]
    assert list(load_groundtruth(vrd, "train")) == ["vidA"]
    assert list(load_groundtruth(vor)) == ["3001"]  # validation by default
    assert list(load_groundtruth(vor, "train")) == ["2401075277"]  # alias of "training"
    json.dumps(gt)  # evaluator input is JSON-serialisable


def test_bundled_splits():
    for name in ("vidvrd", "vidor"):
        s = load_split(name)
        v = Vocabulary.from_split(s)
        assert v.objects[: v.num_base_objects] == tuple(s["objects"]["base"])
        assert len(set(v.predicates)) == len(v.predicates)
        assert v.object_mask("base").sum() == v.num_base_objects and v.predicate_mask("all").all()
    assert "horse" in load_split("vidvrd")["objects"]["novel"]


def test_split_from_path(tmp_path):
    split = {"objects": {"base": ["a"], "novel": ["b"]}, "predicates": {"base": ["p"], "novel": []}}
    assert load_split(fx.write_json(tmp_path / "s.json", split)) == split


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 400))
def test_segments_property(frame_count):
    segs = segments(frame_count)
    assert segs == [(i, i + 30) for i in range(0, frame_count - 30 + 1, 15)]
    assert all(0 <= a < b <= frame_count and b - a == 30 for a, b in segs)
    assert len(segs) == (0 if frame_count < 30 else (frame_count - 30) // 15 + 1)


@settings(max_examples=50, deadline=None)
@given(st.text("abcXYZ_0189-", min_size=1, max_size=12), st.integers(0, 9000), st.integers(1, 60))
def test_segment_tag_round_trip(vid, fs, length):
    tag = segment_tag(vid, fs, fs + length)
    assert parse_segment_tag(tag) == (vid, fs, fs + length)


def test_segment_tags_by_hand():
    assert segment_tag("ILSVRC2015_train_00010001", 15, 45) == "ILSVRC2015_train_00010001-0015-0045"
    assert segments(29) == [] and segments(30) == [(0, 30)] and segments(75)[-1] == (45, 75)
    with pytest.raises(ValueError, match="segment tag"):
        parse_segment_tag("vid-15")


def test_read_proposals_and_filter(tmp_path):
    path = fx.write_json(tmp_path / "v-0000-0030.json", fx.segment_proposals(0, 30, gt=False))
    raw = read_proposals(path, filter=False)
    assert len(raw) == 4 and raw.num_in_file == 4 and raw.category is None
    assert raw.length.tolist() == [30, 30, 30, 10] and raw.fstart.tolist() == [0, 0, 0, 5]
    assert raw.label == [0, 1, 7, 8]
    np.testing.assert_allclose(raw.score, [0.9, 0.8, 0.3, 0.2], rtol=1e-6)
    assert raw.boxes[raw.offsets[1] + 2].tolist() == fx.box_at(1, 2)
    kept = read_proposals(path)
    assert kept.index.tolist() == [0, 1, 2] and kept.boxes.shape == (90, 4)
    boxes, valid = raw.padded(30)
    assert boxes.shape == (4, 30, 4) and valid.sum(1).tolist() == [30, 30, 30, 10]
    assert valid[3, 5:15].all() and not valid[3, :5].any() and boxes[3, 5].tolist() == [0, 0, 20, 20]


def test_read_gt_proposals(tmp_path):
    path = fx.write_json(tmp_path / "v-0030-0060.json", fx.segment_proposals(30, 60, gt=True))
    p = read_proposals(path, filter=False, gt=True)
    assert p.category == ["person", "dog", "horse"] and p.tid.tolist() == [0, 1, 2]
    assert p.score.tolist() == [-1, -1, -1]


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_filter_matches_definition(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    props = []
    for _ in range(data.draw(st.integers(0, 6))):
        T = int(rng.integers(1, 31))
        xy = rng.uniform(0, 50, (T, 2))
        wh = rng.uniform(0, 8, (T, 2))
        props.append({"fstart": int(rng.integers(0, 31 - T)), "score": 0.5,
                      "bboxes": np.concatenate([xy, xy + wh], 1).tolist()})  # fmt: skip
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = read_proposals(fx.write_json(Path(d) / "x.json", props), segment_length=30)
    want = [
        i for i, q in enumerate(props)
        if len(q["bboxes"]) >= 15
        and max(b[2] - b[0] for b in q["bboxes"]) >= 5 and max(b[3] - b[1] for b in q["bboxes"]) >= 5
    ]  # fmt: skip
    assert p.index.tolist() == want
    for k, i in enumerate(want):
        np.testing.assert_array_equal(p.boxes[p.offsets[k] : p.offsets[k + 1]], props[i]["bboxes"])


@pytest.mark.parametrize("ext", [".npy", ".pkl"])
@pytest.mark.parametrize("tokens", [0, 3])
def test_read_features(tmp_path, ext, tokens):
    fx.write_features(tmp_path, "v", "v-0000-0030", 5, ext, tokens)
    arr = read_features(tmp_path / "v" / f"v-0000-0030{ext}")
    assert arr.shape == ((5, tokens, fx.D) if tokens else (5, fx.D))
    assert arr[4].min() == arr[4].max() == 4


def test_read_features_empty_and_tensor(tmp_path):
    import pickle

    import torch

    np.save(tmp_path / "e.npy", np.zeros(0, dtype=np.float32))
    assert read_features(tmp_path / "e.npy").shape == (0, 0)
    torch.save(torch.ones(2, 3, dtype=torch.float16), tmp_path / "t.pkl")  # torch.save's zip format
    arr = read_features(tmp_path / "t.pkl")
    assert arr.shape == (2, 3) and arr.dtype == np.float32
    # a tensor pickled with plain pickle rebuilds through torch.load(weights_only=False): refused, the file named
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump(torch.ones(2, 3, dtype=torch.float16), f)
    with pytest.raises(ValueError, match=r"p\.pkl.*refused to load torch"):
        read_features(tmp_path / "p.pkl")
