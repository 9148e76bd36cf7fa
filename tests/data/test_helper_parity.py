"""Published VidVRD and VidOR (VERSION 1.0) annotation files read exactly as VidVRD-helper reads them.

The reference below restates VidVRD-helper's ``Dataset.get_relation_insts`` (``dataset/dataset.py``): videos are
keyed by the annotation's ``video_id`` (VidOR: without the group folder), ``triplet`` = (subject category,
predicate, object category), ``duration`` = ``(begin_fid, end_fid)`` with the end exclusive, and ``sub_traj`` /
``obj_traj`` = the tid's box ``(xmin, ymin, xmax, ymax)`` in every frame of ``trajectories[begin_fid:end_fid]``.
VidVRD-helper's ``VidVRD`` rejects a ``version`` key, its ``VidOR`` (``DatasetV1``) requires ``"VERSION 1.0"``.
"""

from __future__ import annotations

import json

import pytest

from tests.data import fixtures as fx
from tests.data import layout_fixtures as lf
from uasan.data import load_groundtruth, read_annotation


def helper_relation_insts(anno: dict) -> list[dict]:
    category = {o["tid"]: o["category"] for o in anno["subject/objects"]}
    frames = [
        {b["tid"]: (b["bbox"]["xmin"], b["bbox"]["ymin"], b["bbox"]["xmax"], b["bbox"]["ymax"]) for b in frame}
        for frame in anno["trajectories"]
    ]
    out = []
    for r in anno["relation_instances"]:
        s, o, b, e = r["subject_tid"], r["object_tid"], r["begin_fid"], r["end_fid"]
        out.append(
            {
                "triplet": (category[s], r["predicate"], category[o]),
                "subject_tid": s,
                "object_tid": o,
                "duration": (b, e),
                "sub_traj": [f[s] for f in frames[b:e]],
                "obj_traj": [f[o] for f in frames[b:e]],
            }
        )
    return out


def helper_groundtruth(annotations: list[dict], dataset: str) -> dict[str, list[dict]]:
    for a in annotations:  # the format checks of VidVRD-helper's two dataset classes
        assert ("version" not in a) if dataset == "vidvrd" else (a["version"] == "VERSION 1.0")
    return {a["video_id"]: helper_relation_insts(a) for a in annotations}


def _same(ours: dict, ref: dict) -> None:
    assert list(ours) == sorted(ref)
    for vid, insts in ref.items():
        got = ours[vid]
        assert len(got) == len(insts)
        for g, r in zip(got, insts, strict=True):
            assert (g["triplet"], g["subject_tid"], g["object_tid"], g["duration"]) == (
                r["triplet"], r["subject_tid"], r["object_tid"], r["duration"]
            )  # fmt: skip
            assert g["sub_traj"] == [list(b) for b in r["sub_traj"]]
            assert g["obj_traj"] == [list(b) for b in r["obj_traj"]]
            assert len(g["sub_traj"]) == g["duration"][1] - g["duration"][0]


@pytest.mark.parametrize("dataset", ["vidvrd", "vidor"])
def test_published_annotations_read_as_vidvrd_helper(tmp_path, dataset):
    world = lf.make_world(dataset)
    lf.write_annotations(tmp_path, world)
    for folder in {v.subset for v in world.videos}:
        anns = [v.annotation for v in world.videos if v.subset == folder]
        _same(load_groundtruth(tmp_path, folder, val_fraction=0), helper_groundtruth(anns, dataset))
    short = next(v.annotation for v in world.videos if len(v.annotation["trajectories"]) < v.annotation["frame_count"])
    assert read_annotation(next(tmp_path.rglob(f"{short['video_id']}.json"))).frame_count == short["frame_count"]


def test_odd_but_valid_annotation(tmp_path):
    """Non-contiguous tids, an empty frame inside a trajectory's span, trajectories shorter than frame_count, a
    relation ending on the last annotated frame, extra VidOR keys."""
    b = lambda x1, y1, x2, y2: {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2}  # noqa: E731
    anno = {
        "version": "VERSION 1.0", "video_id": "5555", "video_hash": "ab", "video_path": "0003/5555.mp4",
        "frame_count": 9, "fps": 30, "width": 100, "height": 80, "tags": [],
        "subject/objects": [{"tid": 7, "category": "adult"}, {"tid": 2, "category": "dog"}],
        "trajectories": [
            [{"tid": 2, "bbox": b(1, 2, 3, 4), "generated": 0, "tracker": "none"}, {"tid": 7, "bbox": b(0, 0, 9, 9)}],
            [{"tid": 7, "bbox": b(1, 0, 10, 9)}, {"tid": 2, "bbox": b(2, 2, 4, 4), "generated": 1}],
            [],
            [{"tid": 7, "bbox": b(3, 0, 12, 9)}, {"tid": 2, "bbox": b(4, 2, 6, 4)}],
            [{"tid": 7, "bbox": b(4, 0, 13, 9)}, {"tid": 2, "bbox": b(5, 2, 7, 4)}],
        ],
        "relation_instances": [
            {"subject_tid": 7, "object_tid": 2, "predicate": "watch", "begin_fid": 0, "end_fid": 2},
            {"subject_tid": 2, "object_tid": 7, "predicate": "chase", "begin_fid": 3, "end_fid": 5},
        ],
    }  # fmt: skip
    fx.write_json(tmp_path / "annotation" / "validation" / "0003" / "5555.json", anno)
    _same(load_groundtruth(tmp_path), helper_groundtruth([anno], "vidor"))
    json.dumps(load_groundtruth(tmp_path))
