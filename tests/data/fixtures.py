"""Tiny fixture data sets written into a temporary directory, in the VidVRD and VidOR layouts.

VidVRD video ``vidA`` (60 frames, segments 0-30, 15-45, 30-60): person (tid 0) and dog (tid 1) over all frames,
horse (tid 2, a novel object) over frames 30-59. Relations::

    r0  person  behind  dog     [0, 30)
    r1  person  chase   dog     [0, 60)
    r2  dog     above   person  [15, 45)   (novel predicate)
    r3  person  behind  horse   [30, 60)   (novel object)

Proposal files hold, per segment: an exact copy of each present object's boxes (in tid order), one far-away box
(background) and one 10-frame trajectory the default filter drops. Feature row i of a file is filled with the
value i; union row r with r, so alignment after filtering is visible.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from uasan.data import segment_tag, segments

PERSON, DOG, HORSE = "person", "dog", "horse"
BEHIND, CHASE, ABOVE = "behind", "chase", "above"  # base, base, novel in the bundled VidVRD split
VIDOR = ("adult", "dog", "horse")  # VidOR has no "person"
D = 6  # feature width


def box_at(tid: int, f: int) -> list[float]:
    """The annotated box of ``tid`` at frame ``f`` (moves 1 px per frame to the right)."""
    base = {0: [10, 10, 50, 90], 1: [60, 40, 100, 80], 2: [120, 20, 180, 90]}[tid]
    return [base[0] + f, base[1], base[2] + f, base[3]]


def video_annotation(vid: str = "vidA", frame_count: int = 60, names: tuple = (PERSON, DOG, HORSE)) -> dict:
    frames = []
    for f in range(frame_count):
        items = [{"tid": t, "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), box_at(t, f), strict=True)),
                  "generated": 0} for t in (0, 1)]  # fmt: skip
        if f >= 30:
            items.append({"tid": 2, "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), box_at(2, f), strict=True))})
        frames.append(items)

    def rel(s: int, p: str, o: int, b: int, e: int) -> dict:
        return {"subject_tid": s, "object_tid": o, "predicate": p, "begin_fid": b, "end_fid": min(e, frame_count)}

    return {
        "video_id": vid, "frame_count": frame_count, "fps": 30, "width": 320, "height": 240,
        "subject/objects": [{"tid": t, "category": c} for t, c in enumerate(names)],
        "trajectories": frames,
        "relation_instances": [rel(0, BEHIND, 1, 0, 30), rel(0, CHASE, 1, 0, 60), rel(1, ABOVE, 0, 15, 45),
                               rel(0, BEHIND, 2, 30, 60)],
    }  # fmt: skip


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def segment_proposals(fs: int, fe: int, gt: bool, names: tuple = (PERSON, DOG, HORSE)) -> list[dict]:
    """Proposals of a segment (see the module docstring); ``gt`` gives the ground-truth variant (objects only)."""
    out = []
    for tid, cat in enumerate(names):
        frames = [f for f in range(fs, fe) if tid != 2 or f >= 30]
        if not frames:
            continue
        p = {"fstart": frames[0] - fs, "score": -1.0 if gt else 0.9 - 0.1 * tid,
             "bboxes": [box_at(tid, f) for f in frames], "label": tid}  # fmt: skip
        if gt:
            p.update({"class": cat, "tid": tid})
        out.append(p)
    if not gt:
        out.append({"fstart": 0, "score": 0.3, "bboxes": [[250, 200, 300, 230]] * (fe - fs), "label": 7})
        out.append({"fstart": 5, "score": 0.2, "bboxes": [[0, 0, 20, 20]] * 10, "label": 8})  # too short
    return out


def write_features(folder: Path, vid: str, tag: str, rows: int, ext: str = ".npy", tokens: int = 0) -> None:
    shape = (rows, tokens, D) if tokens else (rows, D)
    arr = np.broadcast_to(np.arange(rows, dtype=np.float32).reshape((rows,) + (1,) * (len(shape) - 1)), shape)
    path = folder / vid / f"{tag}{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".npy":
        np.save(path, np.ascontiguousarray(arr))
    else:
        with open(path, "wb") as f:
            pickle.dump(np.ascontiguousarray(arr), f)


def write_segment_files(
    root: Path,
    subset: str,
    vid: str,
    frame_count: int,
    ext: str = ".npy",
    tokens: int = 0,
    names: tuple = (PERSON, DOG, HORSE),
):
    for prefix, gt in (("", False), ("gt_", True)):
        for fs, fe in segments(frame_count):
            tag = segment_tag(vid, fs, fe)
            props = segment_proposals(fs, fe, gt, names)
            write_json(root / f"{prefix}proposals" / subset / vid / f"{tag}.json", props)
            n = len(props)
            write_features(root / f"{prefix}features" / subset, vid, tag, n, ext, tokens)
            write_features(root / f"{prefix}union_features" / subset, vid, tag, n * (n - 1), ext, tokens)


def make_vidvrd(root: Path, ext: str = ".npy", tokens: int = 0) -> Path:
    """A VidVRD-layout root: ``train/vidA.json`` with segment files, ``test/vidB.json`` (annotation only)."""
    write_json(root / "train" / "vidA.json", video_annotation("vidA"))
    write_json(root / "test" / "vidB.json", video_annotation("vidB", 45))
    write_segment_files(root, "train", "vidA", 60, ext, tokens)
    return root


def make_vidor(root: Path) -> Path:
    """A VidOR-layout root: ``annotation/{training,validation}/0000/<vid>.json`` with segment files for training."""
    write_json(root / "annotation" / "training" / "0000" / "2401075277.json", video_annotation("2401075277", 60, VIDOR))
    write_json(root / "annotation" / "validation" / "0001" / "3001.json", video_annotation("3001", 45, VIDOR))
    write_segment_files(root, "training", "2401075277", 60, names=VIDOR)
    return root
