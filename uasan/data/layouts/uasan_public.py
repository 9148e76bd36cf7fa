"""The ``uasan-public`` layout: the features UASAN released (ZiyueWu59/UASAN), read as its code reads them.

Facts, from ``dataloaders/dataset_vidvrd.py`` and ``experiments/RelationCls_VidVRD/cfg_.py`` (commit ffa5996):

* Trajectories: RePro's / VidVRD-II's flat per-segment lists, ``<traj_dir>/<vid>-<fs:04d>-<fe:04d>.json``
  (``VidVRD_segment30_tracking_results`` for detections, ``VidVRDtest_tracking_results_gt`` for ground truth; see
  :mod:`uasan.data.layouts.repro`), with RePro's filter (>= 15 boxes, max height and width >= 5) for detections.
* Trajectory features: ``<vit_feat_dir>/<tag>.pkl``, a pickled NumPy array, one 1408-d EVA ViT-g vector per
  trajectory (the model reads them as ``vit_feats[:, None, :]``: one token). Rows are either one per list entry or
  one per *kept* entry: ``get_traj_infos`` takes rows ``ids_left`` only ``if vit_feats.size(0) !=
  ids_left.size(0)``; both are accepted here, any other count is a ``ValueError``. Folders:
  ``vit/VidVRD_traj_features_seg30`` (detections), ``vit/VidVRDtest_gt_traj_features_seg30`` (ground truth, the
  ``_gt`` variant), and for training ground truth ``vit/VidVRD_gt_traj_features_seg30``.
* Union features: ``<traj_union_dir>/<tag>.pkl`` (``vit/VidVRD_union_frame_features_seg30``, ``…_seg30_gt`` for
  ground-truth boxes) are *segment-level*: an ``(R, 1408)`` array per segment, not one row per pair. UASAN's model
  averages it over the rows and gives that one vector to every pair of the segment
  (``models/DistillModels_v1.py`` / ``FinetuneModels_v1.py``, ``generate_rel_emb``: ``union_feats.mean(0)``
  repeated ``n_pair`` times). This package wants a union region per pair, so reading those files needs
  ``data.union_segment_mean=true`` (UASAN's published behaviour, said with a warning at start-up); otherwise
  start-up stops and names the extraction command. Per-pair union features (``.npy``, ``(n(n-1), [S,] D)`` per
  segment, from ``python -m uasan.extract features``) are read as in the other layouts.
* UASAN's test-time ``filter_traj_test_results.pkl`` (detections its trajectory classifier called background) is
  an inference choice of that code, not part of the data, and is not applied.

UASAN's code and configs cover VidVRD only; for VidOR use the ``repro`` or ``uasan`` layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from uasan.data._io import bad_file
from uasan.data.layouts.base import EXTRACT_COMMAND, first_file
from uasan.data.layouts.flat import FlatLayout
from uasan.data.proposals import Proposals, read_features

_VIDVRD = {
    "proposals": ("VidVRD_segment30_tracking_results",),
    "features": ("vit/VidVRD_traj_features_seg30",),
    "union_features": ("vit/VidVRD_union_frame_features_seg30",),
    "gt_proposals": ("VidVRD_tracking_results_gt", "VidVRDtest_tracking_results_gt"),
    "gt_features": ("vit/VidVRD_gt_traj_features_seg30", "vit/VidVRDtest_gt_traj_features_seg30"),
    "gt_union_features": ("vit/VidVRD_union_frame_features_seg30_gt",),
}


class UasanPublicLayout(FlatLayout):
    name = "uasan-public"
    datasets = ("vidvrd",)
    feature_suffix = ".pkl"

    @classmethod
    def default_folders(cls, root: Path, dataset: str, kind: str) -> tuple[Path, ...]:
        return tuple(Path(root) / n for n in _VIDVRD.get(kind, ()))

    def _segment_level(self) -> bool:
        """Whether the union folders hold UASAN's segment-level ``.pkl`` files (rather than per-pair ``.npy``)."""
        names = [first_file(f, (".npy", ".pkl")) for f in self.folders["union_features"]]
        return any(n is not None and n.endswith(".pkl") for n in names)

    def check_union(self) -> None:
        super().check_union()
        if not self._segment_level():
            return
        kind = self.kinds["union_features"]
        if not self.union_segment_mean:
            raise ValueError(
                f"data.{kind}: UASAN's released union features ({', '.join(map(str, self.folders['union_features']))}) "
                "are one (R, D) array per segment (D = 1408, EVA ViT-g), not one row per subject-object pair; UASAN's "
                "code gives every pair of a segment their mean. Set data.union_segment_mean=true to do the same, or "
                f"extract per-pair union features with `{EXTRACT_COMMAND}` and point data.{kind} at that folder"
            )
        warnings.warn(
            f"data.union_segment_mean=true: every pair of a segment gets the mean of the segment's union-frame "
            f"features from {', '.join(map(str, self.folders['union_features']))} (UASAN's published behaviour), "
            "not a feature of its own union region",
            UserWarning,
            stacklevel=2,
        )

    def features(self, vid: str, fs: int, fe: int, prop: Proposals) -> np.ndarray:
        path = self.feature_file(vid, fs, fe)
        arr = read_features(path)
        if arr.shape[0] == len(prop.index) and arr.shape[0] != prop.num_in_file:  # rows of the kept entries only
            return np.asarray(arr, dtype=np.float32)
        return self.select_rows(arr, path, prop)

    def union_features(self, vid: str, fs: int, fe: int, prop: Proposals) -> np.ndarray:
        path = self.union_file(vid, fs, fe)
        arr = read_features(path)
        if path.suffix != ".pkl":
            return self.select_pair_rows(arr, path, prop)
        if not self.union_segment_mean:
            raise bad_file(path, "<array>", "a segment-level union feature; read it with data.union_segment_mean=true")
        if arr.shape[0] == 0:
            raise bad_file(path, "shape[0]", "no rows: a segment-level union feature needs at least one")
        n = len(prop.index)
        mean = arr.astype(np.float32).mean(0)  # (D,) or (S, D): UASAN's union_feats.mean(0)
        return np.ascontiguousarray(np.broadcast_to(mean, (n * (n - 1), *mean.shape)))
