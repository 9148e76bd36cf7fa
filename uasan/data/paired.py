"""Segments with their ground-truth trajectories' features: stage 2's input (seed paper Eq. 4).

Stage 2 trains the relation model on the detected proposals of each training segment (SGDet items, labelled as
DESIGN §4 says) and distils the bridge on the *ground-truth* trajectories of the same segment (L_dis: "a small amount
of manually annotated object trajectories"). :class:`WithGroundTruth` pairs the two datasets by segment tag;
:func:`collate_with_ground_truth` batches them as ``(SegmentBatch, gt_features)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from uasan.data.dataset import Segment, SegmentBatch, SegmentDataset, collate_segments


@dataclass
class SegmentWithGroundTruth:
    segment: Segment  # the detected proposals (SGDet item)
    gt_features: np.ndarray | None  # (n_gt, [S,] D) features of the segment's ground-truth trajectories


@dataclass
class BatchWithGroundTruth:
    """A :class:`SegmentBatch` and the ground-truth trajectories' features of its segments (N_gt, [S,] D)."""

    batch: SegmentBatch
    gt_features: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> BatchWithGroundTruth:
        return BatchWithGroundTruth(
            self.batch.to(device, non_blocking=non_blocking), self.gt_features.to(device, non_blocking=non_blocking)
        )

    def pin_memory(self) -> BatchWithGroundTruth:
        return BatchWithGroundTruth(self.batch.pin_memory(), self.gt_features.pin_memory())


class WithGroundTruth(Dataset):
    """Item i = ``det[i]`` with the features of the ground-truth trajectories of the same segment in ``gt`` (a
    ``mode="PredCls"`` dataset of the same subset; a segment without ground-truth trajectories gets 0 rows)."""

    def __init__(self, det: SegmentDataset, gt: SegmentDataset) -> None:
        if det.mode != "SGDet" or gt.mode == "SGDet":
            raise ValueError("WithGroundTruth: expected an SGDet dataset and a ground-truth (SGCls/PredCls) dataset")
        self.det, self.gt = det, gt
        self._gt_index = {gt.tag(i): i for i in range(len(gt))}

    def __len__(self) -> int:
        return len(self.det)

    def __getitem__(self, i: int) -> SegmentWithGroundTruth:
        seg = self.det[i]
        j = self._gt_index.get(seg.tag)
        feats = self.gt[j].features if j is not None else None
        if feats is None and seg.features is not None:
            feats = np.zeros((0, *seg.features.shape[1:]), dtype=seg.features.dtype)
        return SegmentWithGroundTruth(seg, feats)


def collate_with_ground_truth(items: Sequence[SegmentWithGroundTruth]) -> BatchWithGroundTruth:
    batch = collate_segments([it.segment for it in items])
    gts = [it.gt_features for it in items if it.gt_features is not None and it.gt_features.shape[0]]
    if gts:
        gt = np.concatenate(gts)
    else:
        tail = batch.traj_features.shape[1:] if batch.traj_features is not None else (0,)
        gt = np.zeros((0, *tail), dtype=np.float32)
    return BatchWithGroundTruth(batch, torch.from_numpy(np.ascontiguousarray(gt, dtype=np.float32)))
