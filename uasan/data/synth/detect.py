"""The simulated detector and the Seq-NMS proposals: proposals are not copies of the ground truth.

Per frame the detector gives jittered boxes of the visible objects (a slowly varying localisation bias, missed
frames, low-scoring duplicates, labels that are mostly right and otherwise confuse similar classes), persistent
false positives and per-frame clutter; :func:`uasan.ops.seq_nms` links them per segment (class-agnostic, VidVRD-II's
defaults) and the default filter (≥ 15 boxes, max height and width ≥ 5) keeps the trajectories. A proposal's label
is the majority of its boxes' detector labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uasan import ops
from uasan.data.proposals import MIN_LENGTH, MIN_SIZE
from uasan.data.synth.scene import Track, clip_boxes
from uasan.data.synth.vocab import HEIGHT, WIDTH, Vocab

__all__ = ["MIN_PROPOSAL_BOXES", "MIN_PROPOSAL_SIZE", "Detections", "Proposal", "detect", "propose"]

MIN_PROPOSAL_BOXES, MIN_PROPOSAL_SIZE = MIN_LENGTH, MIN_SIZE  # the default proposal filter (DESIGN §3)


@dataclass
class Detections:
    """Per-frame detections: boxes (F, B, 4), scores (F, B) with -inf for absent, labels (F, B) class index."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def detect(rng: np.random.Generator, tracks: list[Track], frames: int, vocab: Vocab) -> Detections:
    """Per-frame detections of a video's ``tracks`` plus false positives and clutter (see the module docstring)."""
    per_frame: list[list[tuple[list[float], float, int]]] = [[] for _ in range(frames)]
    C = len(vocab.objects)
    for tr in tracks:
        T = tr.end - tr.start
        wh = np.stack([tr.boxes[:, 2] - tr.boxes[:, 0] + 1, tr.boxes[:, 3] - tr.boxes[:, 1] + 1], 1).astype(float)
        bias = np.zeros((T, 4))  # slowly varying localisation error, AR(1)
        b = rng.normal(0.0, 0.03, 4)
        for t in range(T):
            b = 0.85 * b + rng.normal(0.0, 0.016, 4)
            bias[t] = b
        cls = vocab.objects.index(tr.category)
        labels = np.full(T, cls)
        for c0 in range(0, T, 30):  # the detector's guess, per 30-frame chunk: mostly right
            if rng.random() < 0.15:
                labels[c0 : c0 + 30] = int(rng.choice(C, p=vocab.confusion[cls]))
        flip = rng.random(T) < 0.05
        labels[flip] = rng.integers(0, C, int(flip.sum()))
        detected = rng.random(T) >= 0.02
        scores = np.clip(rng.normal(0.8, 0.1, T), 0.3, 0.99)
        noise = rng.normal(0.0, 0.015, (T, 4))
        dup = rng.random(T) < 0.25
        dup_noise = rng.normal(0.0, 0.12, (T, 4))
        dup_scores = rng.uniform(0.2, 0.55, T)
        for t in range(T):
            scale = np.array([wh[t, 0], wh[t, 1], wh[t, 0], wh[t, 1]])
            if detected[t]:
                box = tr.boxes[t] + (bias[t] + noise[t]) * scale
                per_frame[tr.start + t].append((box.tolist(), float(scores[t]), int(labels[t])))
            if dup[t]:
                box = tr.boxes[t] + (bias[t] + dup_noise[t]) * scale
                per_frame[tr.start + t].append((box.tolist(), float(dup_scores[t]), int(labels[t])))
    # persistent false positives (background clutter that looks like an object) and per-frame clutter
    for _ in range(int(rng.poisson(0.8))):
        w, h = rng.uniform(20, 120), rng.uniform(20, 120)
        c = np.array([rng.uniform(0.1, 0.9) * WIDTH, rng.uniform(0.2, 0.9) * HEIGHT])
        v = rng.normal(0.0, 0.4, 2)
        t0 = int(rng.integers(0, frames))
        t1 = min(frames, t0 + int(rng.integers(20, 100)))
        lab, p_det = int(rng.integers(0, C)), rng.uniform(0.6, 0.95)
        for t in range(t0, t1):
            c = c + v + rng.normal(0.0, 0.5, 2)
            if rng.random() < p_det:
                box = [c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2]
                per_frame[t].append((box, float(rng.uniform(0.25, 0.6)), lab))
    for t in range(frames):
        for _ in range(int(rng.poisson(1.5))):
            w, h = rng.uniform(10, 150), rng.uniform(10, 150)
            x, y = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            per_frame[t].append(([x, y, x + w, y + h], float(rng.uniform(0.05, 0.4)), int(rng.integers(0, C))))
    B = max([len(d) for d in per_frame] + [1])
    boxes = np.zeros((frames, B, 4))
    scores = np.full((frames, B), -np.inf)
    labels = np.zeros((frames, B), np.int64)
    for t, dets in enumerate(per_frame):
        for i, (box, sc, lab) in enumerate(dets):
            boxes[t, i] = clip_boxes(np.asarray(box))
            scores[t, i] = sc
            labels[t, i] = lab
    # a clipped box may collapse; keep it valid (x2 ≥ x1) and let the filter drop tiny trajectories
    boxes[..., 2] = np.maximum(boxes[..., 2], boxes[..., 0])
    boxes[..., 3] = np.maximum(boxes[..., 3], boxes[..., 1])
    return Detections(boxes, scores, labels)


@dataclass
class Proposal:
    fstart: int  # relative to the segment
    boxes: np.ndarray  # (T, 4)
    score: float
    label: int


def propose(det: Detections, fs: int, fe: int, max_proposals: int) -> list[Proposal]:
    """Seq-NMS trajectories of segment ``[fs, fe)`` that pass the default filter, best score first, at most
    ``max_proposals``; a proposal's label is the majority of its boxes' detector labels."""
    boxes, scores, labels = det.boxes[fs:fe], det.scores[fs:fe], det.labels[fs:fe]
    present = np.isfinite(scores).any(0)
    boxes, scores, labels = boxes[:, present], scores[:, present], labels[:, present]
    if boxes.shape[1] == 0:
        return []
    out: list[Proposal] = []
    for tr in _seq_nms(boxes, scores):
        idx = np.asarray(tr.box_indices, dtype=np.int64)
        frames = np.arange(tr.start_frame, tr.start_frame + len(idx))
        b = boxes[frames, idx]
        if len(idx) < MIN_PROPOSAL_BOXES:
            continue
        if (b[:, 2] - b[:, 0]).max() < MIN_PROPOSAL_SIZE or (b[:, 3] - b[:, 1]).max() < MIN_PROPOSAL_SIZE:
            continue
        lab = int(np.bincount(labels[frames, idx]).argmax())
        out.append(Proposal(int(tr.start_frame), b, float(scores[frames, idx].mean()), lab))
    out.sort(key=lambda p: -p.score)  # stable: ties keep Seq-NMS's emission order
    return out[:max_proposals]


def _seq_nms(boxes: np.ndarray, scores: np.ndarray) -> list[ops.Track]:
    """Class-agnostic Seq-NMS with VidVRD-II's defaults (the proposals' labels are voted afterwards)."""
    return ops.seq_nms(boxes, scores, link_iou=0.5, suppress_iou=0.3)
