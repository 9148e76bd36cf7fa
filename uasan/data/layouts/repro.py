"""The ``repro`` layout: RePro's released trajectories and features (Dawn-LX/OpenVoc-VidVRD), read as published.

Facts, from ``dataloaders/dataset_vidvrd_v2.py``, ``dataloaders/dataset_vidor_v3.py``, the ``experiments/*/cfg_.py``
files and the README's data-release list (commit 0a52d10):

VidVRD — flat per-segment folders (``VidVRDUnifiedDataset``, ``VidVRDGTDatasetForTrain``):

* ``<traj_dir>/<vid>-<fs:04d>-<fe:04d>.json``: a list of ``{"fstart", "score", "bboxes", "label"}`` (detections;
  ``label`` = VinVL class id) or ``{"fstart", "score": -1, "bboxes", "class", "tid"}`` (ground truth). The key is
  ``fstart``, relative to the segment (the docstrings' ``fstarts`` is a typo the code does not read); boxes are
  ``[x1, y1, x2, y2]``, one per frame from ``fstart``. One folder holds every video of every subset; the subset is
  picked by the video id in the file name (``prepare_segment_tags``).
* ``<feat_dir>/<tag>.npy``: ``(n, 2048)`` VinVL RoI features averaged over the trajectory's frames, one row per
  list entry in file order, read with ``.astype("float32")``. The detection files are *unfiltered*: RePro keeps a
  trajectory with >= 15 boxes and max height and width >= 5 (``traj_len_th``, ``min_region_th``) and takes the
  feature rows ``ids_left`` of the kept ones — which is this package's default SGDet filter. Ground-truth files are
  read unfiltered (``traj_len_th = -1`` in ``GTeval_dataset_cfg``).
* Folders (README; the defaults under the data root): detections ``VidVRD_segment30_tracking_results`` with
  ``VidVRD_traj_features_seg30`` (all 1,000 videos); ground truth ``VidVRD_tracking_results_gt`` +
  ``VidVRD_gt_traj_features_seg30`` (800 train videos) and ``VidVRDtest_tracking_results_gt`` +
  ``VidVRDtest_gt_traj_features_seg30`` (200 test videos). The ``_th-15-5`` variants are pre-filtered copies (rows
  aligned with their own lists); the ALPRO ``*TrajFeatures256*`` folders hold ``(n, 1 + 256)`` rows whose first
  column is a trajectory id — distillation targets, not features this package reads.

VidOR — one file per video (``VidORGTDatasetForTrain``, ``VidORUnifiedDataset``):

* Video name = ``<group>_<vid>`` (``gid + "_" + filename``, e.g. ``0001_2793806282``); segment tags
  ``<group>_<vid>-<fs:04d>-<fe:04d>``.
* ``<traj_dir>/<video name>.json`` = ``{segment tag: [trajectory entries as above], ..., "n_trajs": [...]}``.
  The segment order is ``sorted(keys other than "n_trajs")`` (``_get_video2seg_cache``); ``n_trajs[i]`` is the
  length of the i-th segment's list (checked here; a mismatch is a ``ValueError``).
* ``<feat_dir>/<video name>_traj_features.npy``: ``(sum(n_trajs), 2048)``, all segments stacked in that order and
  split by ``n_trajs`` (``get_traj_features``: ``torch.split(features, n_trajs)``).
* The segment list: RePro builds ``video2seg`` from those keys and caches it; the older ``VidORTrajDataset`` reads
  the released ``VidOR{train,val}_video2seg.json`` = ``{video name: [tags]}``. Both formats can be given as
  ``data.video2seg`` to list segments without parsing every per-video file at start-up (the per-video file is
  still the truth: a tag it lacks is a ``ValueError``).
* Folders: ``VidORtrainVideoLevel_tracking_results_th-15-5`` / ``VidORtrain_traj_features_th-15-5`` and
  ``VidORvalVideoLevel_tracking_results_th-15-5`` / ``VidORval_traj_features_th-15-5`` (detections, already
  filtered), ``VidORtrainVideoLevel_tracking_results_gt_th-15-5`` / ``VidORtrain_gt_traj_features_th-15-5`` and
  ``VidORvalVideoLevel_tracking_results_gt`` / ``VidORval_gt_traj_features`` (ground truth).

RePro releases no union (pair) features; union features extracted by ``python -m uasan.extract features`` are read
from ``data.union_features`` as ``<folder>/<key>.npy``, ``(n(n-1), [S,] D)`` per segment, ``key`` = the layout's
segment tag (RePro's, so ``<group>_<vid>-…`` for VidOR).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from uasan.data._io import bad_file, load_json
from uasan.data.layouts.base import Layout, SegmentKey, first_file
from uasan.data.layouts.flat import FlatLayout, _flat_tag_json
from uasan.data.proposals import Proposals, parse_proposals
from uasan.data.segments import parse_segment_tag, segment_tag

_VIDVRD = {
    "proposals": ("VidVRD_segment30_tracking_results",),
    "features": ("VidVRD_traj_features_seg30",),
    "gt_proposals": ("VidVRD_tracking_results_gt", "VidVRDtest_tracking_results_gt"),
    "gt_features": ("VidVRD_gt_traj_features_seg30", "VidVRDtest_gt_traj_features_seg30"),
}
_VIDOR = {
    "proposals": ("VidORtrainVideoLevel_tracking_results_th-15-5", "VidORvalVideoLevel_tracking_results_th-15-5"),
    "features": ("VidORtrain_traj_features_th-15-5", "VidORval_traj_features_th-15-5"),
    "gt_proposals": ("VidORtrainVideoLevel_tracking_results_gt_th-15-5", "VidORvalVideoLevel_tracking_results_gt"),
    "gt_features": ("VidORtrain_gt_traj_features_th-15-5", "VidORval_gt_traj_features"),
}
N_TRAJS = "n_trajs"
STACKED_SUFFIX = "_traj_features.npy"


class ReproVidVRDLayout(FlatLayout):
    name = "repro"
    datasets = ("vidvrd",)
    feature_suffix = ".npy"

    @classmethod
    def default_folders(cls, root: Path, dataset: str, kind: str) -> tuple[Path, ...]:
        return tuple(Path(root) / n for n in _VIDVRD.get(kind, ()))

    def check_union(self) -> None:
        if not self.folders["union_features"]:
            kind = self.kinds["union_features"]
            raise ValueError(
                f"data.{kind}: the repro layout has no union features (RePro releases trajectories and trajectory "
                f"features only); extract them with `python -m uasan.extract features` and point data.{kind} at "
                "that folder"
            )


class ReproVidORLayout(Layout):
    name = "repro"
    datasets = ("vidor",)

    @classmethod
    def default_folders(cls, root: Path, dataset: str, kind: str) -> tuple[Path, ...]:
        return tuple(Path(root) / n for n in _VIDOR.get(kind, ()))

    @classmethod
    def probe(cls, root: Path, dataset: str, explicit: Mapping[str, tuple[Path, ...]]) -> str | None:
        if dataset != "vidor":
            return None
        for kind in ("proposals", "gt_proposals"):
            for d in explicit.get(kind) or cls.default_folders(root, dataset, kind):
                if first_file(d, (".json",)) is None or _flat_tag_json(d):
                    continue
                feat = "gt_features" if kind.startswith("gt_") else "features"
                for f in explicit.get(feat) or cls.default_folders(root, dataset, feat):
                    if first_file(f, (STACKED_SUFFIX,)) is not None:
                        return f"{d}/<group>_<vid>.json with {f}/<group>_<vid>{STACKED_SUFFIX} (repro layout)"
        return None

    check_union = ReproVidVRDLayout.check_union

    def video_name(self, vid: str) -> str:
        """RePro's name of a VidOR video: ``<group folder>_<vid>``."""
        return f"{self.videos.videos[vid].parent.name}_{vid}"

    def key(self, vid: str, fs: int, fe: int) -> str:
        return segment_tag(self.video_name(vid), fs, fe)

    def _video_file(self, role: str, vid: str, suffix: str) -> Path | None:
        name = self.video_name(vid) + suffix
        return next((p for f in self.folders[role] if (p := f / name).is_file()), None)

    def proposal_file(self, vid: str, fs: int, fe: int) -> Path:
        path = self._video_file("proposals", vid, ".json")
        if path is None:
            folders = ", ".join(map(str, self.folders["proposals"])) or "(no folder)"
            raise ValueError(f"data.{self.kinds['proposals']}: no {self.video_name(vid)}.json in {folders}")
        return path

    def feature_file(self, vid: str, fs: int, fe: int) -> Path:
        path = self._video_file("features", vid, STACKED_SUFFIX)
        if path is None:
            folders = ", ".join(map(str, self.folders["features"])) or "(no folder)"
            raise ValueError(f"data.{self.kinds['features']}: no {self.video_name(vid)}{STACKED_SUFFIX} in {folders}")
        return path

    def segments(self) -> list[SegmentKey]:
        lists = self._segment_lists()
        out: list[SegmentKey] = []
        for vid in self.videos.videos:
            path = self._video_file("proposals", vid, ".json")
            if path is None:
                continue
            name = self.video_name(vid)
            tags, source = lists[name] if name in lists else (self._load(vid)[1], path)
            for tag in tags:
                try:
                    v, fs, fe = parse_segment_tag(tag)
                except ValueError as exc:
                    raise ValueError(f"{source}: {exc} (video {name})") from None
                if v != name:
                    raise ValueError(f"{source}: segment tag {tag!r} is not a segment of video {name!r}")
                out.append((vid, fs, fe))
        return sorted(set(out))

    def _segment_lists(self) -> dict[str, tuple[list[str], Path]]:
        """``{video name: ([tags], file)}`` from the ``data.video2seg`` files (RePro's released or cached format)."""
        out: dict[str, tuple[list[str], Path]] = {}
        for path in self.options.get("video2seg") or ():
            raw = load_json(path, "video2seg")
            table = raw.get("video2seg", raw) if isinstance(raw, dict) else None
            if not isinstance(table, dict) or not all(
                isinstance(v, list) and all(isinstance(t, str) for t in v) for v in table.values()
            ):
                raise bad_file(path, "<document>", "expected {video name: [segment tags]} (RePro's video2seg)")
            out.update({name: (tags, Path(path)) for name, tags in table.items()})
        return out

    def _load(self, vid: str) -> tuple[Path, list[str], np.ndarray, dict[str, Any]]:
        """(file, segment tags in RePro's order, offsets (S + 1,) into the stacked features, the parsed JSON)."""
        cache: OrderedDict = self.__dict__.setdefault("_cache_json", OrderedDict())
        if vid in cache:
            cache.move_to_end(vid)
            return cache[vid]
        path = self.proposal_file(vid, 0, 0)
        data = load_json(path, "proposal")
        if not isinstance(data, dict) or not isinstance(data.get(N_TRAJS), list):
            raise bad_file(path, N_TRAJS, "expected {segment tag: [trajectories], ..., 'n_trajs': [int, ...]}")
        tags = sorted(k for k in data if k != N_TRAJS)
        counts = data[N_TRAJS]
        if len(counts) != len(tags):
            raise bad_file(path, N_TRAJS, f"{len(counts)} counts for {len(tags)} segments")
        for i, (tag, c) in enumerate(zip(tags, counts, strict=True)):
            n = len(data[tag]) if isinstance(data[tag], list) else -1
            if type(c) is not int or c != n:
                raise bad_file(path, f"{N_TRAJS}[{i}]", f"{c!r} but segment {tag} (sorted position {i}) lists {n}")
        offsets = np.zeros(len(tags) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        cache[vid] = (path, tags, offsets, data)
        while len(cache) > 4:  # a VidOR detection file can be tens of MB
            cache.popitem(last=False)
        return cache[vid]

    def read_proposals(self, vid: str, fs: int, fe: int, **kwargs: Any) -> Proposals:
        path, _, _, data = self._load(vid)
        tag = self.key(vid, fs, fe)
        if tag not in data:
            raise bad_file(path, tag, "missing: the segment is listed (data.video2seg) but not in the video's file")
        return parse_proposals(data[tag], path, field=tag, **kwargs)

    def features(self, vid: str, fs: int, fe: int, prop: Proposals) -> np.ndarray:
        _, tags, offsets, _ = self._load(vid)
        i = tags.index(self.key(vid, fs, fe))
        path = self.feature_file(vid, fs, fe)
        arr = _stacked(path)
        if arr.shape[0] != offsets[-1]:
            raise bad_file(
                path, "shape[0]", f"{arr.shape[0]} rows but {prop.path} lists sum(n_trajs) = {offsets[-1]} trajectories"
            )
        rows = arr[offsets[i] : offsets[i + 1]]  # (n_in_file, ...) memory-mapped
        return np.asarray(rows[prop.index], dtype=np.float32)

    def expected_rows(self, vid: str, fs: int, fe: int, prop: Proposals, union: bool = False) -> int | None:
        if union:
            return super().expected_rows(vid, fs, fe, prop, union=True)
        return int(self._load(vid)[2][-1])  # the video's stacked file: sum(n_trajs) rows

    def reset_caches(self) -> None:
        self.__dict__.pop("_cache_json", None)


def _stacked(path: Path) -> np.ndarray:
    """A per-video stacked feature array, memory-mapped (read only the segment's rows)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the feature file ({type(exc).__name__}: {exc})") from None
    if arr.dtype.kind not in "fiu":
        raise bad_file(path, "dtype", f"expected real numbers, got {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise bad_file(path, "shape", f"expected (sum(n_trajs), D) or (sum(n_trajs), S, D), got {arr.shape}")
    return arr
