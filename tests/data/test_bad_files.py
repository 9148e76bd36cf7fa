"""Every bad file raises ValueError naming the file and the field; a bad root names the expected layouts."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from tests.data import fixtures as fx
from uasan.data import (
    SegmentDataset,
    detect_dataset,
    load_groundtruth,
    load_split,
    read_annotation,
    read_features,
    read_proposals,
)


def raises_naming(path: Path, field: str):
    return pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + re.escape(field))


def annotation_with(tmp_path: Path, edit) -> Path:
    raw = fx.video_annotation("vidA", 40)
    edit(raw)
    return fx.write_json(tmp_path / "vidA.json", raw)


ANNOTATION_CASES = {
    "missing trajectories": (lambda a: a.pop("trajectories"), "'trajectories'"),
    "missing relation field": (lambda a: a["relation_instances"][1].pop("end_fid"), "relation_instances[1].end_fid"),
    "missing bbox coordinate": (lambda a: a["trajectories"][3][1]["bbox"].pop("ymax"), "trajectories[3][1].bbox.ymax"),
    "x2 < x1": (lambda a: a["trajectories"][5][0]["bbox"].update(xmax=1), "trajectories[5][0].bbox"),
    "null box": (lambda a: a["trajectories"][2][0].update(bbox=None), "trajectories[2][0].bbox"),
    "unknown box tid": (lambda a: a["trajectories"][4][1].update(tid=9), "trajectories[4][1].tid"),
    "relation tid not an object": (
        lambda a: a["relation_instances"][0].update(subject_tid=9),
        "relation_instances[0].subject_tid",
    ),
    "relation tid without boxes": (
        lambda a: a["relation_instances"][3].update(begin_fid=0),
        "relation_instances[3].object_tid",
    ),
    "relation past the end": (
        lambda a: a["relation_instances"][0].update(end_fid=99),
        "relation_instances[0].begin_fid",
    ),
    "duplicate tid in frame": (
        lambda a: a["trajectories"][1].append(a["trajectories"][1][0]),
        "trajectories[1][2].tid",
    ),
    "video_id mismatch": (lambda a: a.update(video_id="other"), "'video_id'"),
    "frame_count string": (lambda a: a.update(frame_count="40"), "'frame_count'"),
}


@pytest.mark.parametrize("case", list(ANNOTATION_CASES))
def test_bad_annotation(tmp_path, case):
    edit, field = ANNOTATION_CASES[case]
    path = annotation_with(tmp_path, edit)
    with raises_naming(path, field):
        read_annotation(path)


def test_not_json_and_unreadable(tmp_path):
    path = tmp_path / "vidA.json"
    path.write_text("{not json")
    with raises_naming(path, "<document>"):
        read_annotation(path)
    with raises_naming(path, "<document>"):
        read_proposals(path)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "dir.json")) + ".*cannot read"):
        read_annotation(tmp_path / "dir.json")
    with pytest.raises(ValueError, match="does not exist"):
        read_annotation(tmp_path / "missing.json")


PROPOSAL_CASES = {
    "missing bboxes": (lambda p: p[1].pop("bboxes"), "[1].bboxes"),
    "missing fstart": (lambda p: p[0].pop("fstart"), "[0].fstart"),
    "x2 < x1": (lambda p: p[1]["bboxes"][3].__setitem__(2, 0), "[1].bboxes[3]"),
    "null box": (lambda p: p[2]["bboxes"].__setitem__(4, None), "[2].bboxes[4]"),
    "3 coordinates": (lambda p: p[2]["bboxes"].__setitem__(1, [1, 2, 3]), "[2].bboxes[1]"),
    "empty bboxes": (lambda p: p[0].update(bboxes=[]), "[0].bboxes"),
    "negative fstart": (lambda p: p[1].update(fstart=-2), "[1].fstart"),
    "past the segment": (lambda p: p[3].update(fstart=25), "[3].bboxes"),
    "entry not an object": (lambda p: p.clear() or p.append(7), "'[0]'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PROPOSAL_CASES))
def test_bad_proposals(tmp_path, case):
    edit, field = PROPOSAL_CASES[case]
    props = fx.segment_proposals(0, 30, gt=False)
    edit(props)
    path = fx.write_json(tmp_path / "vidA-0000-0030.json", props)
    with raises_naming(path, field):
        read_proposals(path, segment_length=30)


def test_bad_gt_proposals(tmp_path):
    props = fx.segment_proposals(0, 30, gt=True)
    props[1].pop("tid")
    path = fx.write_json(tmp_path / "vidA-0000-0030.json", props)
    with raises_naming(path, "[1].tid"):
        read_proposals(path, gt=True)


def test_bad_features(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 3, 4, 5), dtype=np.float32))
    with raises_naming(tmp_path / "f.npy", "shape"):
        read_features(tmp_path / "f.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with raises_naming(tmp_path / "s.npy", "dtype"):
        read_features(tmp_path / "s.npy")
    with open(tmp_path / "d.pkl", "wb") as f:
        pickle.dump({"features": 1}, f)
    with raises_naming(tmp_path / "d.pkl", "<array>"):
        read_features(tmp_path / "d.pkl")
    (tmp_path / "g.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "g.npy")) + ".*cannot read"):
        read_features(tmp_path / "g.npy")


class _Hostile:
    """A pickle that would create a marker file when loaded with plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_feature_pickles_cannot_run_code(tmp_path):
    marker = tmp_path / "ran"
    with open(tmp_path / "h.pkl", "wb") as f:
        pickle.dump(_Hostile(marker), f)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "h.pkl")) + ".*refused to load posix.system"):
        read_features(tmp_path / "h.pkl")
    assert not marker.exists()
    # what real feature pickles hold still reads: a NumPy array (any dtype), a torch.save file of a tensor
    arr = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    with open(tmp_path / "a.pkl", "wb") as f:
        pickle.dump(arr, f)
    np.testing.assert_array_equal(read_features(tmp_path / "a.pkl"), arr)
    torch = pytest.importorskip("torch")
    torch.save(torch.ones(3, 5), tmp_path / "t.pkl")
    np.testing.assert_array_equal(read_features(tmp_path / "t.pkl"), np.ones((3, 5), np.float32))


@pytest.fixture
def root(tmp_path):
    return fx.make_vidvrd(tmp_path / "vrd")


def test_feature_rows_differ_from_proposals(root):
    path = root / "features" / "train" / "vidA" / "vidA-0015-0045.npy"
    np.save(path, np.zeros((3, fx.D), dtype=np.float32))  # the file has 5 proposals
    ds = SegmentDataset(root, "train")
    ds[0]
    with raises_naming(path, "shape[0]"):
        ds[1]


def test_union_rows_differ_from_pairs(root):
    path = root / "union_features" / "train" / "vidA" / "vidA-0000-0030.npy"
    np.save(path, np.zeros((4 * 3 - 1, fx.D), dtype=np.float32))
    with raises_naming(path, "shape[0]"):
        SegmentDataset(root, "train")[0]


def test_missing_feature_file(root):
    (root / "features" / "train" / "vidA" / "vidA-0030-0060.npy").unlink()
    with pytest.raises(ValueError, match="vidA-0030-0060.npy.*does not exist"):
        SegmentDataset(root, "train")[2]


def test_category_outside_split(root):
    raw = fx.video_annotation("vidA")
    raw["subject/objects"][1]["category"] = "unicorn"
    path = fx.write_json(root / "train" / "vidA.json", raw)
    with raises_naming(path, "subject/objects[1].category"):
        SegmentDataset(root, "train")[0]


def test_bad_split_file(tmp_path):
    path = fx.write_json(tmp_path / "s.json", {"objects": {"base": ["a"]}, "predicates": {"base": [], "novel": []}})
    with raises_naming(path, "objects.novel"):
        load_split(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_split(tmp_path / "nope.json")


def test_bad_roots(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist.*VidVRD.*train/<vid>\.json.*VidOR.*annotation/training"):
        detect_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"does not exist.*expected"):
        load_groundtruth(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no annotation directories.*VidVRD.*VidOR"):
        detect_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "test").mkdir()
    with pytest.raises(ValueError, match=r"no annotation files"):
        load_groundtruth(tmp_path / "empty")
    root = fx.make_vidvrd(tmp_path / "vrd")
    with pytest.raises(ValueError, match=r"proposal directory does not exist.*gt_proposals"):
        SegmentDataset(root, "test", mode="PredCls")
    with pytest.raises(ValueError, match="subset"):
        SegmentDataset(root, "validation2")


def test_json_round_trip_of_groundtruth(root):
    gt = load_groundtruth(root, "train")
    back = json.loads(json.dumps(gt))
    assert back["vidA"][0]["triplet"] == list(gt["vidA"][0]["triplet"])
