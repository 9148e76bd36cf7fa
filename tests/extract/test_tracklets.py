"""Tracklets equal ``uasan.ops.seq_nms`` run by hand on the test's detections; ground truth equals the annotation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import world

from uasan import ops
from uasan.data import read_annotation, read_proposals
from uasan.extract.__main__ import main
from uasan.extract.detections import read_detections
from uasan.extract.tracklets import gt_tracklets, segment_tracklets


def _by_hand(det_json: dict, fs: int, fe: int, suppress_iou: float, labels: bool) -> list[dict]:
    """Pads the frames' detections myself, runs Seq-NMS, applies RePro's filter (15 boxes, 5 px)."""
    frames = det_json["frames"][fs:fe]
    B = max(len(fr["boxes"]) for fr in frames)
    boxes = np.zeros((fe - fs, B, 4))
    scores = np.full((fe - fs, B), -np.inf)
    names = sorted({lab for fr in frames for lab in fr["labels"]})
    codes = np.full((fe - fs, B), -1)
    for t, fr in enumerate(frames):
        for i, (b, s, lab) in enumerate(zip(fr["boxes"], fr["scores"], fr["labels"], strict=True)):
            boxes[t, i], scores[t, i], codes[t, i] = b, s, names.index(lab)
    out = []
    for tr in ops.seq_nms(boxes, scores, codes if labels else None, link_iou=0.5, suppress_iou=suppress_iou):
        idx = np.asarray(tr.box_indices)
        tt = np.arange(tr.start_frame, tr.start_frame + len(idx))
        b = boxes[tt, idx]
        if len(idx) >= 15 and (b[:, 2] - b[:, 0]).max() >= 5 and (b[:, 3] - b[:, 1]).max() >= 5:
            votes = np.bincount(codes[tt, idx], minlength=len(names))
            out.append({"fstart": tr.start_frame, "score": tr.score, "bboxes": b, "label": names[int(votes.argmax())]})
    return out


def _same(got: list[dict], want: list[dict]) -> None:
    assert [p["fstart"] for p in got] == [p["fstart"] for p in want]
    assert [p["label"] for p in got] == [p["label"] for p in want]
    np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in want], atol=5e-5)
    for p, q in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(p["bboxes"]), q["bboxes"], atol=0.005 + 1e-9)


def test_cli_tracklets_equal_seq_nms_by_hand(root):
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    total = 0
    for subset, vid, frames, _, _ in world.VIDEOS:
        det = json.loads((root / "detections" / f"{vid}.json").read_text())
        for fs in range(0, frames - 30 + 1, 15):
            tag = f"{vid}-{fs:04d}-{fs + 30:04d}"
            got = json.loads((root / "proposals" / subset / vid / f"{tag}.json").read_text())
            want = _by_hand(det, fs, fs + 30, 0.3, labels=False)
            _same(got, want)
            total += len(got)
            # what the data layer reads back, with its default (RePro) filter, is the whole file
            assert len(read_proposals(root / "proposals" / subset / vid / f"{tag}.json", segment_length=30)) == len(got)
    assert total >= 16  # two or three objects per segment were found


def test_class_aware_and_options(root):
    dets = read_detections(root / "detections/vidA.json")
    det = json.loads((root / "detections/vidA.json").read_text())
    got = segment_tracklets(dets, 15, 45, class_aware=True, suppress_iou=0.7)
    _same(got, _by_hand(det, 15, 45, 0.7, labels=True))
    assert len(segment_tracklets(dets, 15, 45, max_tracklets=1)) == 1
    with pytest.raises(ValueError, match="max_tracklets"):
        segment_tracklets(dets, 15, 45, max_tracklets=0)
    assert segment_tracklets(dets, 15, 45, min_length=31) == []
    avg = segment_tracklets(dets, 0, 30, rescore="avg")
    assert all(0 < p["score"] <= 1 for p in avg)


def test_frames_past_the_detections_have_none(root):
    dets = read_detections(root / "detections/vidB.json")  # 45 frames
    assert segment_tracklets(dets, 45, 75) == []
    part = segment_tracklets(dets, 30, 60)  # 15 frames with detections: tracks of exactly 15 boxes survive
    assert part and all(p["fstart"] == 0 and len(p["bboxes"]) == 15 for p in part)
    assert segment_tracklets(dets, 30, 60, min_length=16) == []


def test_gt_tracklets_follow_the_annotation(root):
    ann = read_annotation(root / "train/vidA.json")
    gt = gt_tracklets(ann, 15, 45)  # the third object appears at frame 20
    assert [(p["tid"], p["class"], p["fstart"], len(p["bboxes"])) for p in gt] == [
        (0, "person", 0, 30),
        (1, "dog", 0, 30),
        (2, "horse", 5, 25),
    ]
    for p in gt:
        want = [world.box_at(0, p["tid"], 15 + p["fstart"] + t) for t in range(len(p["bboxes"]))]
        np.testing.assert_allclose(p["bboxes"], want, atol=0.005)
        assert p["score"] == -1.0 and p["label"] == p["class"]


def test_missing_detections_is_reported_and_others_go_on(root, capsys):
    (root / "detections/vidB.json").unlink()
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED vidB" in out and "vidB.json: no detections file" in out
    assert (root / "proposals/train/vidA/vidA-0000-0030.json").is_file()
    assert not (root / "proposals/train/vidB").exists()


@pytest.mark.parametrize(
    ("frames", "field"),
    [
        ([{"boxes": [[5, 5, 1, 9]], "scores": [0.5]}], "frames[0].boxes"),
        ([{}, {"boxes": [[1, 1, 5, 5]], "scores": [0.5, 0.2]}], "frames[1].scores"),
        ([{"boxes": [[1, 1, 5]], "scores": [0.5]}], "frames[0].boxes"),
        ([{"boxes": [[1, 1, 5, 5]], "scores": [0.5], "labels": ["a", "b"]}], "frames[0].labels"),
        ([{"boxes": [[1, 1, 5, 5]], "scores": [float("nan")]}], "frames[0].scores"),
        ([{"boxes": [[1, 1, 5, 5]], "scores": [0.5], "labels": [[1]]}], "frames[0].labels"),
    ],
)
def test_bad_detection_files_name_the_field(tmp_path, frames, field):
    p = tmp_path / "v.json"
    p.write_text(json.dumps({"frames": frames}))
    with pytest.raises(ValueError, match=rf"v\.json: field '{field}'".replace("[", r"\[").replace("]", r"\]")):
        read_detections(p)


def test_detections_npz_equals_json(root, tmp_path):
    a = read_detections(root / "detections/vidA.json")
    np.savez(tmp_path / "vidA.npz", frame_offsets=a.offsets, boxes=a.boxes, scores=a.scores, labels=np.array(a.labels))
    b = read_detections(tmp_path / "vidA.npz")
    for fs in (0, 15, 30):
        _same(segment_tracklets(b, fs, fs + 30, class_aware=True), segment_tracklets(a, fs, fs + 30, class_aware=True))
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"video_id": "other", "frames": []}))
    with pytest.raises(ValueError, match="field 'video_id'"):
        read_detections(p)
