"""Random relation data sets for the evaluation tests: few triplet types so that predictions compete for the same
ground truth, tied scores, predictions overlapping several ground truths, empty and missing prediction lists."""

from __future__ import annotations

from typing import Any

import numpy as np


def track(rng: np.random.Generator, frames: int, integer: bool) -> np.ndarray:
    """(frames, 4) smoothly moving box; integer pixel coordinates make exact vIoU ties likely."""
    xy = rng.uniform(0, 200, 2) + np.cumsum(rng.normal(0, 3, (frames, 2)), axis=0)
    wh = rng.uniform(10, 80, 2) * np.exp(np.cumsum(rng.normal(0, 0.02, (frames, 2)), axis=0))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    return np.round(boxes) if integer else boxes


def jitter(rng: np.random.Generator, boxes: np.ndarray, scale: float, integer: bool) -> np.ndarray:
    out = boxes + rng.normal(0, scale, boxes.shape)
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])
    return np.round(out) if integer else out


def relation(triplet, begin: int, end: int, sub: np.ndarray, obj: np.ndarray, score=None) -> dict[str, Any]:
    r = {"triplet": list(triplet), "duration": [begin, end], "sub_traj": sub.tolist(), "obj_traj": obj.tolist()}
    if score is not None:
        r["score"] = score
    return r


def dataset(
    rng: np.random.Generator,
    n_videos: int = 8,
    max_gt: int = 6,
    max_pred: int = 25,
    n_cats: int = 2,
    n_preds: int = 2,
) -> tuple[dict, dict]:
    """(groundtruth, prediction) in the official evaluator's format."""
    cats = [f"c{i}" for i in range(n_cats)]
    preds = [f"p{i}" for i in range(n_preds)]
    gt, pred = {}, {}
    for v in range(n_videos):
        vid = f"v{v:03d}"
        frames = int(rng.integers(8, 40))
        integer = bool(rng.random() < 0.5)
        objs = [(cats[rng.integers(n_cats)], track(rng, frames, integer)) for _ in range(int(rng.integers(2, 5)))]
        gts = []
        for _ in range(int(rng.integers(0, max_gt + 1))):
            s, o = rng.choice(len(objs), 2, replace=False)
            b = int(rng.integers(0, frames - 2))
            e = int(rng.integers(b + 1, frames + 1))
            trip = (objs[s][0], preds[rng.integers(n_preds)], objs[o][0])
            gts.append(relation(trip, b, e, objs[s][1][b:e], objs[o][1][b:e]))
        if rng.random() < 0.1:
            gts.append(dict(gts[-1])) if gts else None  # exact duplicate ground truth
        gt[vid] = gts
        if rng.random() < 0.1:
            continue  # no predictions for this video
        score_pool = np.round(rng.random(4), 2)  # few distinct scores: many ties
        out = []
        for _ in range(int(rng.integers(0, max_pred + 1))):
            tied = rng.random() < 0.5
            score = float(score_pool[rng.integers(4)]) if tied else float(rng.random())
            if gts and rng.random() < 0.6:
                g = gts[rng.integers(len(gts))]
                b0, e0 = g["duration"]
                b = int(np.clip(b0 + rng.integers(-3, 4), 0, frames - 1))
                e = int(np.clip(e0 + rng.integers(-3, 4), b + 1, frames))
                si = [i for i, (c, _) in enumerate(objs)]
                s = rng.choice(si)
                o = rng.choice([i for i in si if i != s])
                sub, obj = objs[s][1][b:e], objs[o][1][b:e]
                if rng.random() < 0.7:  # follow the ground truth's own boxes, jittered
                    gs = np.asarray(g["sub_traj"]), np.asarray(g["obj_traj"])
                    lo, hi = max(b, b0), min(e, e0)
                    sub, obj = sub.copy(), obj.copy()
                    if lo < hi:
                        sub[lo - b : hi - b] = gs[0][lo - b0 : hi - b0]
                        obj[lo - b : hi - b] = gs[1][lo - b0 : hi - b0]
                    scale = float(rng.choice([0.0, 1.0, 4.0]))
                    sub, obj = jitter(rng, sub, scale, integer), jitter(rng, obj, scale, integer)
                trip = list(g["triplet"]) if rng.random() < 0.8 else [cats[0], preds[rng.integers(n_preds)], cats[-1]]
            else:
                b = int(rng.integers(0, frames - 1))
                e = int(rng.integers(b + 1, frames + 1))
                s, o = rng.choice(len(objs), 2, replace=False)
                sub, obj = objs[s][1][b:e], objs[o][1][b:e]
                trip = [objs[s][0], preds[rng.integers(n_preds)], objs[o][0]]
            out.append(relation(trip, b, e, sub, obj, score))
        pred[vid] = out
    if rng.random() < 0.3:
        pred["unknown-video"] = [relation(["c0", "p0", "c1"], 0, 1, np.zeros((1, 4)), np.zeros((1, 4)), 0.5)]
    return gt, pred
