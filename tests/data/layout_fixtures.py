"""Small data sets written in each published layout (real formats, real tag arithmetic), for the layout tests and
for end-to-end runs on fixture data (``python -m uasan.train --config vidvrd --data-root ROOT ...``).

A :class:`World` is built once (annotations + per-segment trajectory lists + features) and written by

* :func:`write_annotations` — VidVRD ``ROOT/{train,test}/<vid>.json`` (no ``version``, as VidVRD-helper's ``VidVRD``
  expects) or VidOR ``ROOT/annotation/{training,validation}/<group>/<vid>.json`` (``VERSION 1.0`` with
  ``video_path``, as VidVRD-helper's ``VidOR`` expects);
* :func:`write_uasan` — this package's tree;
* :func:`write_repro` — RePro's release: VidVRD flat ``<tag>.json`` / ``<tag>.npy`` folders (detections of every
  subset in one folder, ground truth split into train and test folders), VidOR per-video ``<group>_<vid>.json``
  ``{tag: [...], "n_trajs": [...]}`` with ``<group>_<vid>_traj_features.npy`` stacked, plus an optional
  ``video2seg`` file;
* :func:`write_uasan_public` — UASAN's release: the same trajectory lists, ``vit/…/<tag>.pkl`` features and
  segment-level union-frame ``.pkl`` files.

Union features per pair, which RePro does not ship, are written as an "extracted" flat folder (``<key>.npy``) when
asked, standing in for ``python -m uasan.extract features``. Every writer returns the ``data.*`` overrides a run
needs (``["data.layout=repro", "data.union_features=..."]``). Feature values are float16-exact, so every storage
dtype reads back to the same float32 numbers.

Odd cases in the default VidVRD world: segment ``…00010001-0045-0075`` has no detection at all (an empty list and
a (0, D) feature file) and one 10-frame ground-truth trajectory; ``…00010001-0030-0060`` has a single detection and
a single ground-truth trajectory; the first segment of each video also has a background detection and a 10-frame
one the default filter drops. The VidOR world has an empty detection list in ``1010_8872539414-0045-0075``.
"""

from __future__ import annotations

import json
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uasan.data.segments import segment_tag, segments

VIDVRD_TRAIN = ("ILSVRC2015_train_00005003", "ILSVRC2015_train_00010001", "ILSVRC2015_train_00066007")
VIDVRD_TEST = ("ILSVRC2015_train_00010018",)
VIDOR_TRAIN = (("0000", "2401075277"), ("0000", "2401075278"), ("1010", "8872539414"))
VIDOR_VAL = (("0001", "2793806282"),)


@dataclass
class Video:
    subset: str  # annotation folder: train / test (VidVRD), training / validation (VidOR), or val
    vid: str
    group: str  # VidOR group folder ("" for VidVRD)
    annotation: dict


@dataclass
class SegmentFiles:
    """One segment's content: trajectory lists (RePro's entry format) and the arrays aligned with them."""

    video: Video
    fs: int
    fe: int
    det: list[dict]
    gt: list[dict]
    det_features: np.ndarray  # (n_det, D), one row per entry of ``det``
    gt_features: np.ndarray  # (n_gt, D)
    det_union: np.ndarray  # (n_det(n_det-1), D) ordered pairs of ``det`` entries, row-major
    gt_union: np.ndarray
    det_frames: np.ndarray  # (fe - fs, D) UASAN's segment-level union-frame features
    gt_frames: np.ndarray

    @property
    def tag(self) -> str:
        return segment_tag(self.video.vid, self.fs, self.fe)

    @property
    def repro_tag(self) -> str:
        """RePro's tag: VidOR videos are named ``<group>_<vid>``."""
        name = f"{self.video.group}_{self.video.vid}" if self.video.group else self.video.vid
        return segment_tag(name, self.fs, self.fe)


@dataclass
class World:
    dataset: str  # "vidvrd" or "vidor"
    videos: list[Video]
    segments: list[SegmentFiles] = field(default_factory=list)
    dim: int = 8


# --------------------------------------------------------------------------------------------------------------------
# building a world
# --------------------------------------------------------------------------------------------------------------------


def _box(rng: np.random.Generator, start: np.ndarray, f: int) -> list[float]:
    x1, y1 = start[0] + 1.5 * f, start[1] + 0.5 * f
    return [float(round(x1)), float(round(y1)), float(round(x1 + start[2])), float(round(y1 + start[3]))]


def _annotation(
    rng: np.random.Generator,
    dataset: str,
    vid: str,
    group: str,
    frames: int,
    objects: list[tuple[str, int, int]],
    relations: list[tuple[int, str, int, int, int]],
) -> dict:
    """A published-format annotation: ``objects`` = (category, first frame, end frame) with tid = position."""
    starts = [np.array([rng.integers(0, 200), rng.integers(0, 100), rng.integers(30, 80), rng.integers(30, 80)])
              for _ in objects]  # fmt: skip
    trajs = []
    for f in range(frames):
        items = []
        for tid, (_, lo, hi) in enumerate(objects):
            if lo <= f < hi:
                x1, y1, x2, y2 = _box(rng, starts[tid], f)
                items.append({"tid": tid, "bbox": {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2}, "generated": 0})
        trajs.append(items)
    while trajs and not trajs[-1]:  # published files stop at the last annotated frame
        trajs.pop()
    ann = {
        "video_id": vid,
        "frame_count": frames,
        "fps": 29.97,
        "width": 640,
        "height": 360,
        "subject/objects": [{"tid": t, "category": c} for t, (c, _, _) in enumerate(objects)],
        "trajectories": trajs,
        "relation_instances": [
            {"subject_tid": s, "object_tid": o, "predicate": p, "begin_fid": b, "end_fid": e}
            for s, p, o, b, e in relations
        ],
    }
    if dataset == "vidor":  # VidOR's VERSION 1.0 header (VidVRD-helper's DatasetV1 checks it)
        ann = {"version": "VERSION 1.0", "video_id": vid, "video_hash": f"{zlib.crc32(vid.encode()):08x}",
               "video_path": f"{group}/{vid}.mp4", **{k: v for k, v in ann.items() if k != "video_id"}}  # fmt: skip
        ann["tags"] = []
    return ann


def _gt_entries(ann: dict, fs: int, fe: int) -> list[dict]:
    """RePro's ground-truth segment list: every annotated object with a box in ``[fs, fe)``, in tid order."""
    cats = {o["tid"]: o["category"] for o in ann["subject/objects"]}
    boxes: dict[int, list] = {}
    first: dict[int, int] = {}
    for f in range(fs, min(fe, len(ann["trajectories"]))):
        for it in ann["trajectories"][f]:
            b = it["bbox"]
            boxes.setdefault(it["tid"], []).append([b["xmin"], b["ymin"], b["xmax"], b["ymax"]])
            first.setdefault(it["tid"], f)
    return [
        {"fstart": first[t] - fs, "score": -1, "bboxes": boxes[t], "class": cats[t], "tid": t} for t in sorted(boxes)
    ]


def _det_entries(rng: np.random.Generator, gt: list[dict], fs: int, fe: int, extras: bool) -> list[dict]:
    out = []
    for g in gt:  # a tracker's copy of each object: 1-pixel jitter, VinVL label id
        jit = rng.integers(-1, 2, size=(len(g["bboxes"]), 4)).astype(float)
        boxes = (np.asarray(g["bboxes"], dtype=float) + jit).tolist()
        boxes = [[min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])] for b in boxes]
        out.append({"fstart": g["fstart"], "score": float(np.float16(rng.uniform(0.3, 1))), "bboxes": boxes,
                    "label": int(rng.integers(1, 1595))})  # fmt: skip
    if extras:
        out.append({"fstart": 0, "score": 0.25, "bboxes": [[600.0, 300.0, 630.0, 350.0]] * (fe - fs), "label": 3})
        out.append({"fstart": 4, "score": 0.2, "bboxes": [[0.0, 0.0, 20.0, 20.0]] * 10, "label": 8})  # filtered
    return out


def _f16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float16).astype(np.float32)


def _segments_of(world: World, video: Video, rng: np.random.Generator, empty: set[tuple[str, int]]) -> None:
    ann, D = video.annotation, world.dim
    for k, (fs, fe) in enumerate(segments(ann["frame_count"])):
        gt = _gt_entries(ann, fs, fe)
        det = [] if (video.vid, fs) in empty else _det_entries(rng, gt, fs, fe, extras=k == 0)
        nd, ng = len(det), len(gt)
        world.segments.append(
            SegmentFiles(
                video, fs, fe, det, gt,
                det_features=_f16(rng, (nd, D)), gt_features=_f16(rng, (ng, D)),
                det_union=_f16(rng, (nd * (nd - 1), D)), gt_union=_f16(rng, (ng * (ng - 1), D)),
                det_frames=_f16(rng, (fe - fs, D)), gt_frames=_f16(rng, (fe - fs, D)),
            )
        )  # fmt: skip


def make_world(dataset: str = "vidvrd", dim: int = 8, seed: int = 0) -> World:
    """The default small world of ``dataset`` (see the module docstring); deterministic for a seed."""
    rng = np.random.default_rng(seed)
    world = World(dataset, [], dim=dim)
    if dataset == "vidvrd":  # VidVRD relations lie on the 15-frame grid, 30 frames long
        specs = [
            ("train", VIDVRD_TRAIN[0], 60, [("person", 0, 60), ("dog", 0, 60), ("horse", 30, 60)],
             [(0, "behind", 1, 0, 30), (0, "chase", 1, 15, 45), (1, "above", 0, 30, 60), (0, "behind", 2, 30, 60)]),
            ("train", VIDVRD_TRAIN[1], 75, [("person", 0, 55), ("bicycle", 0, 30)], [(0, "ride", 1, 0, 30)]),
            ("train", VIDVRD_TRAIN[2], 45, [("domestic_cat", 0, 45), ("dog", 5, 45)], [(1, "chase", 0, 15, 45)]),
            ("test", VIDVRD_TEST[0], 45, [("person", 0, 45), ("dog", 0, 45)],
             [(0, "behind", 1, 0, 30), (1, "above", 0, 15, 45)]),
        ]  # fmt: skip
        empty = {(VIDVRD_TRAIN[1], 45)}
        groups = {}
    else:
        specs = [
            ("training", VIDOR_TRAIN[0][1], 60, [("adult", 0, 60), ("dog", 3, 52)],
             [(0, "watch", 1, 3, 41), (1, "next_to", 0, 20, 52), (1, "chase", 0, 30, 50)]),
            ("training", VIDOR_TRAIN[1][1], 45, [("child", 0, 45), ("toy", 0, 20)], [(0, "hold", 1, 0, 20)]),
            ("training", VIDOR_TRAIN[2][1], 75, [("adult", 0, 60), ("car", 10, 70)], [(0, "in_front_of", 1, 10, 60)]),
            ("validation", VIDOR_VAL[0][1], 60, [("adult", 0, 60), ("dog", 0, 40)], [(0, "hold", 1, 5, 40)]),
        ]  # fmt: skip
        empty = {(VIDOR_TRAIN[2][1], 45)}
        groups = dict((v, g) for g, v in (*VIDOR_TRAIN, *VIDOR_VAL))
    for subset, vid, frames, objects, relations in specs:
        group = groups.get(vid, "")
        world.videos.append(
            Video(subset, vid, group, _annotation(rng, dataset, vid, group, frames, objects, relations))
        )
    for video in world.videos:
        _segments_of(world, video, rng, empty)
    return world


# --------------------------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------------------------


def _json(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _npy(path: Path, arr: np.ndarray, dtype: str = "float32") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(arr, dtype=dtype))
    return path


def _pkl(path: Path, arr: np.ndarray, dtype: str = "float16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(np.asarray(arr, dtype=dtype), f)
    return path


def write_annotations(root: Path, world: World) -> Path:
    """The published annotation files of the world's videos under ``root``."""
    for v in world.videos:
        if world.dataset == "vidvrd":
            _json(root / v.subset / f"{v.vid}.json", v.annotation)
        else:
            _json(root / "annotation" / v.subset / v.group / f"{v.vid}.json", v.annotation)
    return root


def write_uasan(root: Path, world: World) -> list[str]:
    """This package's tree (what the synthetic world writes)."""
    write_annotations(root, world)
    for s in world.segments:
        for pre, items, feats, union in (("", s.det, s.det_features, s.det_union),
                                         ("gt_", s.gt, s.gt_features, s.gt_union)):  # fmt: skip
            _json(root / f"{pre}proposals" / s.video.subset / s.video.vid / f"{s.tag}.json", items)
            _npy(root / f"{pre}features" / s.video.subset / s.video.vid / f"{s.tag}.npy", feats)
            _npy(root / f"{pre}union_features" / s.video.subset / s.video.vid / f"{s.tag}.npy", union)
    return ["data.layout=uasan"]


def write_extracted_union(folder: Path, world: World, gt: bool, key: str = "tag") -> Path:
    """Per-pair union features in a flat folder, ``<key>.npy`` per segment (``key``: ``tag`` or ``repro_tag``)."""
    for s in world.segments:
        _npy(folder / f"{getattr(s, key)}.npy", s.gt_union if gt else s.det_union)
    return folder


def write_repro(root: Path, world: World, *, union: bool = True, video2seg: bool = False) -> list[str]:
    """RePro's release under ``root`` (published folder names, so ``data.layout=auto`` finds it)."""
    write_annotations(root, world)
    out = ["data.layout=repro"]
    if world.dataset == "vidvrd":
        for s in world.segments:
            gt_dir = "VidVRD_tracking_results_gt" if s.video.subset == "train" else "VidVRDtest_tracking_results_gt"
            gt_feat = (
                "VidVRD_gt_traj_features_seg30" if s.video.subset == "train" else "VidVRDtest_gt_traj_features_seg30"
            )
            _json(root / "VidVRD_segment30_tracking_results" / f"{s.tag}.json", s.det)
            _npy(root / "VidVRD_traj_features_seg30" / f"{s.tag}.npy", s.det_features, "float64")
            _json(root / gt_dir / f"{s.tag}.json", s.gt)
            _npy(root / gt_feat / f"{s.tag}.npy", s.gt_features, "float64")
        key = "tag"
    else:
        sub = {"training": "train", "validation": "val"}
        lists: dict[str, dict[str, list[str]]] = {}
        for v in world.videos:
            segs = sorted((s for s in world.segments if s.video is v), key=lambda s: s.repro_tag)
            name = f"{v.group}_{v.vid}"
            lists.setdefault(sub[v.subset], {})[name] = [s.repro_tag for s in segs]
            for gt, traj_dir, feat_dir in (
                (False, f"VidOR{sub[v.subset]}VideoLevel_tracking_results_th-15-5",
                 f"VidOR{sub[v.subset]}_traj_features_th-15-5"),
                (True, "VidORtrainVideoLevel_tracking_results_gt_th-15-5" if v.subset == "training"
                 else "VidORvalVideoLevel_tracking_results_gt",
                 "VidORtrain_gt_traj_features_th-15-5" if v.subset == "training" else "VidORval_gt_traj_features"),
            ):  # fmt: skip
                doc: dict = {s.repro_tag: (s.gt if gt else s.det) for s in segs}
                doc["n_trajs"] = [len(s.gt if gt else s.det) for s in segs]
                _json(root / traj_dir / f"{name}.json", doc)
                stacked = [s.gt_features if gt else s.det_features for s in segs]
                _npy(root / feat_dir / f"{name}_traj_features.npy", np.concatenate(stacked), "float32")
        if video2seg:
            for split, table in lists.items():
                _json(root / f"VidOR{split}_video2seg.json", table)
            out.append(f"data.video2seg=[{root / 'VidORtrain_video2seg.json'}, {root / 'VidORval_video2seg.json'}]")
        key = "repro_tag"
    if union:
        out.append(f"data.union_features={write_extracted_union(root / 'extracted_union', world, False, key)}")
        out.append(f"data.gt_union_features={write_extracted_union(root / 'extracted_gt_union', world, True, key)}")
    return out


def write_uasan_public(root: Path, world: World, *, per_pair_union: bool = True) -> list[str]:
    """UASAN's release under ``root`` (VidVRD): trajectory lists, ``vit/…`` ``.pkl`` features, union-frame ``.pkl``.

    ``per_pair_union`` also writes extracted per-pair union features (``.npy``) and returns the overrides that use
    them; without it the run reads UASAN's segment-level files (and needs ``data.union_segment_mean=true``).
    """
    if world.dataset != "vidvrd":
        raise ValueError("UASAN's release covers VidVRD only")
    write_annotations(root, world)
    for s in world.segments:
        train = s.video.subset == "train"
        _json(root / "VidVRD_segment30_tracking_results" / f"{s.tag}.json", s.det)
        _json(root / ("VidVRD_tracking_results_gt" if train else "VidVRDtest_tracking_results_gt") / f"{s.tag}.json",
              s.gt)  # fmt: skip
        _pkl(root / "vit" / "VidVRD_traj_features_seg30" / f"{s.tag}.pkl", s.det_features)
        gt_feat = "VidVRD_gt_traj_features_seg30" if train else "VidVRDtest_gt_traj_features_seg30"
        _pkl(root / "vit" / gt_feat / f"{s.tag}.pkl", s.gt_features)
        _pkl(root / "vit" / "VidVRD_union_frame_features_seg30" / f"{s.tag}.pkl", s.det_frames)
        _pkl(root / "vit" / "VidVRD_union_frame_features_seg30_gt" / f"{s.tag}.pkl", s.gt_frames)
    out = ["data.layout=uasan-public"]
    if per_pair_union:
        out.append(f"data.union_features={write_extracted_union(root / 'extracted_union', world, False)}")
        out.append(f"data.gt_union_features={write_extracted_union(root / 'extracted_gt_union', world, True)}")
    return out


WRITERS = {"uasan": write_uasan, "repro": write_repro, "uasan-public": write_uasan_public}


def options(overrides: list[str], **extra) -> dict:
    """``SegmentDataset`` keyword arguments from a writer's ``data.*`` overrides (via the config loader), updated by
    ``extra`` (e.g. ``val_fraction=0``)."""
    from uasan.config import TrainConfig, load_config

    return {**load_config(TrainConfig, "vidvrd", overrides).data.dataset_options(), **extra}
