"""The relation model's losses (uasan.models.losses) against their definitions, and L_dis's ground-truth inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uasan.models.losses import cross_entropy, distillation_loss, relation_focal_loss, sigmoid_focal_loss


def test_sigmoid_focal_loss_is_fvcores_without_alpha(rng):
    x = torch.from_numpy(rng.normal(size=(5, 7)) * 3)
    t = torch.from_numpy((rng.random((5, 7)) > 0.6).astype(np.float64))
    p = torch.sigmoid(x)
    # per element: −log p (1 − p)² for a positive, −log(1 − p) p² for a negative (γ = 2)
    want = torch.where(t > 0, -torch.log(p) * (1 - p) ** 2, -torch.log1p(-p) * p**2)
    torch.testing.assert_close(sigmoid_focal_loss(x, t), want)
    x.requires_grad_(True)
    torch.autograd.gradcheck(lambda z: sigmoid_focal_loss(z, t).sum(), (x,))


def test_relation_focal_loss_averages_positive_and_background_pairs_apart(rng):
    x = torch.from_numpy(rng.normal(size=(6, 4)))
    t = torch.zeros(6, 4, dtype=torch.float64)
    t[0, 1] = t[1, 2] = t[1, 3] = 1.0  # 2 positive pairs, 4 background pairs
    f = sigmoid_focal_loss(x, t)
    want = f[:2].mean() + f[2:].mean()  # RePro's loss_on_base: not f.mean()
    torch.testing.assert_close(relation_focal_loss(x, t), want)
    assert not torch.allclose(relation_focal_loss(x, t), f.mean() * 2)


@pytest.mark.parametrize("rows", ["positive only", "background only", "none"])
def test_relation_focal_loss_empty_side_is_zero_not_nan(rows):
    x = torch.randn(0 if rows == "none" else 3, 4, requires_grad=True)
    t = torch.zeros_like(x)
    if rows == "positive only":
        t[:, 0] = 1.0
    loss = relation_focal_loss(x, t)
    assert torch.isfinite(loss)
    want = sigmoid_focal_loss(x, t).mean() if x.shape[0] else torch.tensor(0.0)
    torch.testing.assert_close(loss.detach(), want.detach())
    loss.backward()  # attached to the graph, also when there is nothing to average
    assert x.grad is not None


def test_distillation_loss_is_the_mean_l2_norm_per_token(rng):
    s, t = (torch.from_numpy(rng.normal(size=(3, 5, 8))) for _ in range(2))
    want = torch.stack([torch.linalg.vector_norm(s[i, j] - t[i, j]) for i in range(3) for j in range(5)]).mean()
    torch.testing.assert_close(distillation_loss(s, t), want)
    empty = torch.zeros(0, 5, 8, requires_grad=True)
    assert distillation_loss(empty, torch.zeros(0, 5, 8)).item() == 0.0


def test_cross_entropy_ignores_rows_and_is_zero_without_labels():
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, -1, 2, -1])
    torch.testing.assert_close(
        cross_entropy(logits, labels), torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    )
    assert cross_entropy(logits, torch.full((4,), -1)).item() == 0.0


def test_distillation_reads_the_segments_ground_truth_trajectories(tiny_world):
    """Stage 2's L_dis inputs are the features of each segment's ground-truth trajectories (PredCls items), paired
    by tag with the detected proposals the relation losses train on."""
    from uasan.data import SegmentDataset
    from uasan.data.paired import WithGroundTruth, collate_with_ground_truth

    det = SegmentDataset(tiny_world, "train", mode="SGDet")
    gt = SegmentDataset(tiny_world, "train", mode="PredCls", labels=False)
    paired = WithGroundTruth(det, gt)
    by_tag = {gt.tag(i): i for i in range(len(gt))}
    checked = 0
    for i in range(min(len(paired), 12)):
        item = paired[i]
        j = by_tag.get(item.segment.tag)
        if j is not None and gt[j].features is not None:
            np.testing.assert_array_equal(item.gt_features, gt[j].features)
            checked += int(item.gt_features.shape[0] > 0)
    assert checked > 0
    batch = collate_with_ground_truth([paired[i] for i in range(4)])
    assert batch.gt_features.shape[0] == sum(paired[i].gt_features.shape[0] for i in range(4))
    with pytest.raises(ValueError, match="WithGroundTruth"):
        WithGroundTruth(gt, det)
