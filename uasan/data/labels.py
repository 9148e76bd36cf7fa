"""Label assignment (DESIGN §4), vectorised through :mod:`uasan.ops`.

* A proposal takes the label of the ground-truth trajectory with the largest vIoU when that vIoU is > 0.5
  (ties: the first), else background.
* A proposal pair (s, o) takes predicates from the ground-truth relation instances r with
  ``m[pair, r] = min(vPoI(s, sub_r), vPoI(o, obj_r)) > 0.9`` (vPoI = the proposal's box volume inside the
  ground truth over its volume, within their temporal overlap): the best-matching instance fixes the ground-truth
  subject–object pair (tid pair), and the pair's label is the multi-hot union of the predicates of every matching
  instance of that tid pair (several predicates hold between two objects at once). No match: background.

Label codes: trajectory labels are class ids ≥ 0, :data:`BACKGROUND` (-1), or :data:`IGNORE` (-100, PyTorch's
default ``ignore_index``) for a proposal matched to a ground truth whose label is IGNORE. A relation whose
predicate id is negative still matches, but adds no positive; a pair whose matches are all such relations is not
background but ignored (``valid`` False). :class:`~uasan.data.SegmentDataset` uses these codes for annotations
outside the label split with ``outside_split="ignore"``; by default it drops such annotations before matching.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from uasan import ops

BACKGROUND = -1
IGNORE = -100

Trajectory = tuple[int, np.ndarray]  # (start_frame, boxes (T, 4))


def all_pairs(n: int) -> np.ndarray:
    """(n(n−1), 2) int64: every ordered pair (s, o), s ≠ o, row-major over (s, o)."""
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    k = np.arange(n * (n - 1), dtype=np.int64)
    s, r = k // (n - 1), k % (n - 1)
    return np.stack([s, r + (r >= s)], axis=1)


def pair_rows(index: np.ndarray, n: int) -> np.ndarray:
    """Rows of the ordered pairs of ``index`` (kept trajectories, ascending) in an n-trajectory union file."""
    p = all_pairs(len(index))
    s, o = index[p[:, 0]], index[p[:, 1]]
    return s * (n - 1) + o - (o > s)


def assign_trajectory_labels(
    proposals: Sequence[Trajectory], gts: Sequence[Trajectory], gt_labels: np.ndarray, *, threshold: float = 0.5
) -> np.ndarray:
    """(n,) int64 label per proposal: ``gt_labels[g*]`` of its best-vIoU ground truth g* if vIoU > threshold,
    else :data:`BACKGROUND`. ``gt_labels`` (G,) may hold :data:`IGNORE`."""
    n, G = len(proposals), len(gts)
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(G)
    if n == 0 or G == 0:
        return np.full(n, BACKGROUND, dtype=np.int64)
    v = np.asarray(ops.viou_matrix(proposals, gts))  # (n, G)
    best = v.argmax(1)
    return np.where(v[np.arange(n), best] > threshold, gt_labels[best], BACKGROUND).astype(np.int64)


def assign_predicate_labels(
    proposals: Sequence[Trajectory],
    pairs: np.ndarray,
    rel_subjects: Sequence[Trajectory],
    rel_objects: Sequence[Trajectory],
    rel_predicates: np.ndarray,
    num_predicates: int,
    *,
    rel_groups: np.ndarray | None = None,
    threshold: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot predicate labels of proposal pairs.

    ``pairs`` (P, 2) index ``proposals``; relation r has trajectories ``rel_subjects[r]``, ``rel_objects[r]``,
    predicate id ``rel_predicates[r]`` (< 0: outside the label split) and ground-truth pair id ``rel_groups[r]``
    (default: each relation its own). Returns ``labels`` (P, C) float32 in {0, 1} and ``valid`` (P,) bool.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    R = len(rel_subjects)
    if len(pairs) == 0 or R == 0:
        return np.zeros((len(pairs), num_predicates), dtype=np.float32), np.ones(len(pairs), dtype=bool)
    vs = np.asarray(ops.vpoi_matrix(proposals, rel_subjects))  # (n, R)
    vo = np.asarray(ops.vpoi_matrix(proposals, rel_objects))  # (n, R)
    m = np.minimum(vs[pairs[:, 0]], vo[pairs[:, 1]])  # (P, R)
    groups = np.arange(R) if rel_groups is None else np.asarray(rel_groups)
    return combine_matches(m, m > threshold, groups, np.asarray(rel_predicates, dtype=np.int64), num_predicates)


def combine_matches(
    score: np.ndarray, hit: np.ndarray, groups: np.ndarray, predicates: np.ndarray, num_predicates: int
) -> tuple[np.ndarray, np.ndarray]:
    """From per-(pair, relation) scores (P, R) and hits (P, R): the best hit's group, the multi-hot union of the
    predicates of that group's hits, and validity (see the module docstring)."""
    P, R = hit.shape
    if P == 0 or R == 0:
        return np.zeros((P, num_predicates), dtype=np.float32), np.ones(P, dtype=bool)
    best = np.where(hit, score, -np.inf).argmax(1)  # (P,)
    same = hit & (groups[None, :] == groups[best][:, None])  # (P, R)
    pos = same & (predicates >= 0)[None, :]
    onehot = np.zeros((R, num_predicates), dtype=np.float32)  # (R, C)
    r = np.flatnonzero(predicates >= 0)
    onehot[r, predicates[r]] = 1.0
    labels = np.minimum(pos.astype(np.float32) @ onehot, 1.0)  # (P, C)
    valid = ~hit.any(1) | pos.any(1)
    return labels, valid
