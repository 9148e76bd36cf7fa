"""Losses of the relation model (seed paper Eq. 4, 12; RePro's classification loss).

Every loss is finite on empty inputs (a segment without proposals, a DDP shard without pairs): 0, still attached to
the graph, instead of the NaN of an empty mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Mean cross-entropy over the labelled rows; 0 when there are none (``F.cross_entropy`` gives 0/0 = NaN)."""
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total / (labels != ignore_index).sum().clamp(min=1)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss without α (fvcore's, as RePro and UASAN call it: ``alpha=-1``):
    ce(x, t) · (1 − p_t)^γ, p = σ(x), p_t = p t + (1 − p)(1 − t)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return ce * (1 - p_t) ** gamma


def relation_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """RePro's ``loss_on_base`` (``models/RelationClsModel_v3.py``): positives and negatives averaged separately.

    logits, targets (P, C) over the training (base) predicates; a row with a positive is a positive pair, an all-zero
    row a background pair. L = mean over (positive pairs × C) of focal(logits, targets) + mean over (background pairs
    × C) of focal(logits, 0); an empty side contributes 0."""
    pos = targets.any(dim=1)  # (P,)
    loss = logits.sum() * 0.0  # keeps the graph connected when both sides are empty
    for rows in (pos, ~pos):
        if rows.any():
            loss = loss + sigmoid_focal_loss(logits[rows], targets[rows], gamma).mean()
    return loss


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 4, L_dis = ‖F_v − BridgeEnc(F)‖: the L2 norm of the difference per query token, averaged over tokens and
    trajectories (student, teacher (N, L, e)); 0 when N = 0."""
    if student.shape[0] == 0:
        return student.sum() * 0.0
    return (student - teacher).norm(dim=-1).mean()
