"""Scene simulation and relation composition: objects that move smoothly in a 640×360 video, and the predicates
of every ordered pair per 30-frame segment, composed from the subject's action and the pair's geometry.

Each video holds a few objects of the split's categories with piecewise-constant actions (a per-action speed), a
heading with smooth angular noise, perspective scaling, a vertical bob while jumping. Objects enter and leave (a
trajectory starts and ends mid-video, some walk in from a border or out of the frame). Objects after the first may
be tied to an earlier one (approach it, flee from it, accompany it, follow it, ride it), which produces the relative
motions behind toward / away / past / with / follow / ride. Per segment and ordered pair the predicate is
``<action>_<spatial>`` when that is in the vocabulary, else the bare spatial predicate, else the next geometric
relation that holds (order :data:`SPATIAL`), plus the secondary predicates larger / taller / faster / follow /
chase / ride read from the boxes. Relation instances span the frames where the predicate holds, consecutive
segments merged; only predicates of the vocabulary are emitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uasan.data.segments import segments
from uasan.data.synth.vocab import (
    ACTIONS,
    CATEGORIES,
    HEIGHT,
    INANIMATE,
    MIN_PAIR_FRAMES,
    MOVING_THRESHOLD,
    RIDEABLE,
    RIDERS,
    SPEED,
    WIDTH,
    Vocab,
)

__all__ = ["SIZES", "SynthSize", "Track", "clip_boxes", "relations", "simulate"]


@dataclass(frozen=True)
class SynthSize:
    """A size preset: videos per subset, frames per video and objects per video (inclusive ranges), and the most
    proposals kept per segment."""

    train: int
    val: int
    test: int
    frames: tuple[int, int]
    objects: tuple[int, int]
    max_proposals: int = 12
    distractors: int = 3000  # distractor words of the pretraining corpus (a tiny test world takes fewer)


SIZES: dict[str, SynthSize] = {
    "tiny": SynthSize(train=8, val=2, test=4, frames=(90, 150), objects=(2, 4), distractors=256),
    "small": SynthSize(train=40, val=8, test=16, frames=(120, 240), objects=(2, 5)),
    "medium": SynthSize(train=150, val=25, test=50, frames=(120, 300), objects=(2, 5)),
    "large": SynthSize(train=714, val=100, test=286, frames=(120, 300), objects=(2, 5)),
}


# --------------------------------------------------------------------------------------------------------------
# Scene simulation
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Object:
    category: str
    behavior: str
    target: int  # index of the object it is tied to, -1 when independent
    start: int = 0  # first annotated frame
    end: int = 0  # exclusive end of the annotated frames
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (F, 4) float, unclipped, all frames
    actions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (F,) index into ACTIONS, -1 none
    heading: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (F,) radians


def _moving_actions(category: str) -> dict[str, float]:
    return {a: w for a, w in CATEGORIES[category][2].items() if SPEED[a] > 0}


def _pick(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _action_schedule(rng: np.random.Generator, category: str, frames: int, moving_only: bool) -> np.ndarray:
    weights = _moving_actions(category) if moving_only else CATEGORIES[category][2]
    out = np.full(frames, -1, np.int64)
    if not weights:
        return out
    t = 0
    while t < frames:
        length = int(rng.integers(30, 100))
        out[t : t + length] = ACTIONS.index(_pick(rng, weights))
        t += length
    return out


def _nearest_action(category: str, action: int) -> int:
    """The category's action closest in speed to ``action`` (the same action when the category has it), moving
    for a moving ``action`` and still for a still one whenever the category has such an action."""
    own = CATEGORIES[category][2]
    if action < 0 or not own:
        return -1
    name = ACTIONS[action]
    if name in own:
        return action
    same = [a for a in own if (SPEED[a] > 0) == (SPEED[name] > 0)] or list(own)
    best = min(same, key=lambda a: (abs(SPEED[a] - SPEED[name]), ACTIONS.index(a)))
    return ACTIONS.index(best)


def _perspective(kind: str, cy: float) -> float:
    return 0.6 + 0.8 * cy / HEIGHT if kind == "ground" else 1.0


def simulate(rng: np.random.Generator, vocab: Vocab, size: SynthSize) -> tuple[int, list[_Object]]:
    """Draws one video: frame count and objects with full-video boxes, actions and visible spans."""
    frames = int(rng.integers(size.frames[0], size.frames[1] + 1))
    n = int(rng.integers(size.objects[0], size.objects[1] + 1))
    objs: list[_Object] = []
    for k in range(n):
        cat = vocab.objects[int(rng.choice(len(vocab.objects), p=vocab.category_weights))]
        behavior, target = "independent", -1
        if k > 0:
            options = {"independent": 3.0, "approach": 2.0, "flee": 1.0, "accompany": 2.0, "follow": 1.0}
            rideable = [j for j in range(k) if objs[j].category in RIDEABLE and objs[j].behavior != "ride"]
            if cat in RIDERS and rideable:
                options["ride"] = 4.0
            if not _moving_actions(cat):
                options = {"independent": 1.0}
            behavior = _pick(rng, options)
            if behavior != "independent":
                pool = rideable if behavior == "ride" else list(range(k))
                target = pool[int(rng.integers(len(pool)))]
        objs.append(_Object(cat, behavior, target))

    for k, ob in enumerate(objs):
        _simulate_object(rng, ob, objs[:k], frames)
    return frames, objs


def _simulate_object(rng: np.random.Generator, ob: _Object, earlier: list[_Object], frames: int) -> None:
    (bw, bh), kind, _ = CATEGORIES[ob.category]
    scale = float(rng.uniform(0.75, 1.3))
    speed_scale = float(rng.uniform(0.8, 1.25))
    # alive span: whole video or a random part of it (the visible span is cut from it below)
    start = 0 if rng.random() < 0.6 else int(rng.integers(0, max(1, frames - 45)))
    end = frames if rng.random() < 0.6 else int(rng.integers(min(start + 45, frames), frames + 1))
    tgt = earlier[ob.target] if ob.target >= 0 else None
    if tgt is not None and tgt.end - tgt.start < 30:  # the target is barely visible: act on its own
        ob.behavior, ob.target, tgt = "independent", -1, None
    if tgt is not None:
        start, end = max(start, tgt.start), min(end, tgt.end)
        if end - start < 30:
            start, end = tgt.start, tgt.end
    ob.start, ob.end = start, end

    if ob.behavior in ("accompany", "follow") and tgt is not None:
        actions = np.array([_nearest_action(ob.category, int(a)) for a in tgt.actions], np.int64)
    elif ob.behavior == "ride":
        actions = np.full(frames, ACTIONS.index("sit"), np.int64)
    else:
        actions = _action_schedule(rng, ob.category, frames, moving_only=ob.behavior in ("approach", "flee"))
    ob.actions = actions

    y_lo, y_hi = (0.38, 0.9) if kind == "ground" else (0.1, 0.65) if kind == "air" else (0.4, 0.9)
    stays = rng.random() < 0.65  # an independent object turns back at the border, else it may leave
    centre = np.array([rng.uniform(0.1, 0.9) * WIDTH, rng.uniform(y_lo, y_hi) * HEIGHT])
    theta = (0.0 if rng.random() < 0.5 else math.pi) + rng.normal(0.0, 0.35 if kind == "ground" else 0.6)
    if start > 0 and ob.behavior == "independent" and rng.random() < 0.5 and SPEED[ACTIONS[actions[start]]] > 0:
        side = rng.random() < 0.5  # walk in from a border
        centre[0] = -0.3 * bw * scale if side else WIDTH + 0.3 * bw * scale
        theta = (0.0 if side else math.pi) + rng.normal(0.0, 0.2)
    offset = np.zeros(2)
    if tgt is not None:
        tc = _centre(tgt.boxes[start])
        tw, th = tgt.boxes[start, 2] - tgt.boxes[start, 0], tgt.boxes[start, 3] - tgt.boxes[start, 1]
        if ob.behavior == "approach":
            centre = tc + np.array([rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 4.5) * tw, rng.normal(0, 0.3) * th])
            aim = tc + np.array([0.0, rng.normal(0, 0.3) * th])
            theta = math.atan2(aim[1] - centre[1], aim[0] - centre[0])
        elif ob.behavior == "flee":
            centre = tc + np.array([rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.6) * tw, rng.normal(0, 0.2) * th])
            theta = math.atan2(centre[1] - tc[1], centre[0] - tc[0]) + rng.normal(0, 0.2)
        elif ob.behavior == "accompany":
            gap = 0.5 * (tw + bw * scale) * rng.uniform(1.05, 1.6)
            offset = np.array([rng.choice([-1.0, 1.0]) * gap, rng.normal(0, 0.1) * th])
        elif ob.behavior == "follow":
            offset = np.array([0.5 * (tw + bw * scale) * rng.uniform(1.2, 2.0), 0.0])  # trailing distance
    omega = 0.0
    bob_phase = 0
    wobble_period, wobble_phase = float(rng.uniform(40, 90)), float(rng.uniform(0, 2 * math.pi))
    boxes = np.zeros((frames, 4))
    headings = np.zeros(frames)
    for t in range(frames):
        if t < start:
            boxes[t] = np.nan
            continue
        a = int(actions[t])
        if tgt is not None and ob.behavior in ("accompany", "follow", "ride"):
            tc = _centre(tgt.boxes[t]) if np.isfinite(tgt.boxes[t]).all() else centre
            th_t = tgt.boxes[t, 3] - tgt.boxes[t, 1] if np.isfinite(tgt.boxes[t]).all() else bh
            if tgt.actions[t] >= 0 and SPEED[ACTIONS[tgt.actions[t]]] > 0:  # trail along the target's heading
                theta = float(tgt.heading[t])
            jitter = rng.normal(0.0, 0.6, 2)
            if ob.behavior == "accompany":
                centre = tc + offset + jitter
            elif ob.behavior == "follow":
                centre = tc - offset[0] * np.array([math.cos(theta), math.sin(theta)]) + jitter
            else:  # ride: sit on top of the target
                persp = _perspective(kind, tc[1])
                centre = tc + np.array([0.0, -0.5 * th_t - 0.15 * bh * scale * persp]) + 0.3 * jitter
        else:
            speed = (SPEED[ACTIONS[a]] if a >= 0 else 0.0) * speed_scale
            if kind == "ground":
                speed *= _perspective(kind, centre[1])
            omega = 0.9 * omega + rng.normal(0.0, 0.012)
            theta += omega
            if ob.behavior == "independent" and stays:
                if (centre[0] < 0.08 * WIDTH and math.cos(theta) < 0) or (
                    centre[0] > 0.92 * WIDTH and math.cos(theta) > 0
                ):
                    theta = math.pi - theta
            if (centre[1] < y_lo * HEIGHT and math.sin(theta) < 0) or (
                centre[1] > y_hi * HEIGHT and math.sin(theta) > 0
            ):
                theta = -theta
            centre = centre + speed * np.array([math.cos(theta), math.sin(theta)]) + rng.normal(0.0, 0.15, 2)
        headings[t] = theta
        persp = _perspective(kind, centre[1])
        wob = 1.0 + 0.04 * math.sin(2 * math.pi * t / wobble_period + wobble_phase)
        w, h = bw * scale * persp * wob, bh * scale * persp / wob
        cy = centre[1]
        if a == ACTIONS.index("jump"):
            bob_phase += 1
            cy -= 0.35 * h * abs(math.sin(math.pi * bob_phase / 16))
        else:
            bob_phase = 0
        boxes[t] = [centre[0] - w / 2, cy - h / 2, centre[0] + w / 2, cy + h / 2]
    ob.boxes, ob.heading = boxes, headings

    # visible span: the first contiguous run of frames in [start, end) with ≥ 40 % of the box inside the frame
    clipped = clip_boxes(boxes)
    with np.errstate(invalid="ignore"):
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        vis_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        visible = (vis_area >= 0.4 * area) & (clipped[:, 2] - clipped[:, 0] >= 4) & (clipped[:, 3] - clipped[:, 1] >= 4)
    visible[:start] = False
    visible[end:] = False
    idx = np.flatnonzero(visible)
    if idx.size == 0:
        ob.start = ob.end = 0
        return
    first = int(idx[0])
    gaps = np.flatnonzero(~visible[first:])
    ob.start, ob.end = first, first + (int(gaps[0]) if gaps.size else frames - first)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def clip_boxes(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[..., 0::2] = np.clip(out[..., 0::2], 0, WIDTH - 1)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, HEIGHT - 1)
    return out


# --------------------------------------------------------------------------------------------------------------
# Predicates
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Track:
    """A ground-truth object as annotated: tid, category, frames [start, end), int boxes (T, 4), actions (T,)."""

    tid: int
    category: str
    start: int
    end: int
    boxes: np.ndarray
    actions: np.ndarray


def _spatial_relations(bs: np.ndarray, bo: np.ndarray, airborne: bool) -> tuple[list[str], dict[str, float]]:
    """The spatial relations (in priority order) that hold between subject boxes ``bs`` and object boxes ``bo``
    (T, 4) over common frames, and the pair's motion statistics. Image height means height only when one of
    them is airborne or the boxes touch; between two objects on the ground it means depth (lower is in front)."""
    cs = (bs[:, :2] + bs[:, 2:]) / 2
    co = (bo[:, :2] + bo[:, 2:]) / 2
    ws, hs = bs[:, 2] - bs[:, 0] + 1, bs[:, 3] - bs[:, 1] + 1
    wo, ho = bo[:, 2] - bo[:, 0] + 1, bo[:, 3] - bo[:, 1] + 1
    sx, sy = 0.5 * (ws.mean() + wo.mean()), 0.5 * (hs.mean() + ho.mean())
    d = (cs - co) / np.array([sx, sy])  # (T, 2) normalised offset subject − object
    dist = np.hypot(d[:, 0], d[:, 1])
    steps = max(len(bs) - 1, 1)
    vs, vo = (cs[-1] - cs[0]) / steps, (co[-1] - co[0]) / steps
    sp_s, sp_o = float(np.hypot(*vs)), float(np.hypot(*vo))
    moving = sp_s >= MOVING_THRESHOLD
    out: list[str] = []

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        na, nb = float(np.hypot(*a)), float(np.hypot(*b))
        return float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0

    if moving and np.sign(d[0, 0]) != np.sign(d[-1, 0]) and min(abs(d[0, 0]), abs(d[-1, 0])) >= 0.5 and sp_s >= sp_o:
        out.append("past")
    if moving and dist[-1] < 0.8 * dist[0] and dist[0] - dist[-1] >= 0.3 and cos(vs, -d[0]) >= 0.5:
        out.append("toward")
    if moving and dist[-1] > 1.25 * dist[0] and dist[-1] - dist[0] >= 0.3 and cos(vs, d[0]) >= 0.5:
        out.append("away")
    if moving and float(np.hypot(*(vs - vo))) <= 0.35 * sp_s + 0.2 and dist.mean() <= 2.5:
        out.append("with")
    mx = float(d[:, 0].mean())
    csy, o_top, o_bot = float(cs[:, 1].mean()), float(bo[:, 1].mean()), float(bo[:, 3].mean())
    iw = np.minimum(bs[:, 2], bo[:, 2]) - np.maximum(bs[:, 0], bo[:, 0])
    ih = np.minimum(bs[:, 3], bo[:, 3]) - np.maximum(bs[:, 1], bo[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    touch = float((inter > 0).mean()) >= 0.5
    vertical = abs(mx) < 0.6 and (csy < o_top or csy > o_bot)
    if vertical and (airborne or touch):
        out.append("above" if csy < o_top else "beneath")
    if float((inter / np.minimum(ws * hs, wo * ho)).mean()) >= 0.2 or vertical:
        out.append("front" if float(bs[:, 3].mean()) > float(bo[:, 3].mean()) else "behind")
    if float(dist.mean()) <= 1.6:
        out.append("next_to")
    out.append("left" if mx < 0 else "right")
    u = vo / max(sp_o, 1e-9)  # the object's direction of motion; trail < 0: the subject is behind it
    stats = {"sp_s": sp_s, "sp_o": sp_o, "cos_v": cos(vs, vo), "trail": float(d.mean(0) @ u),
             "aside": abs(float(d.mean(0) @ np.array([-u[1], u[0]]))),
             "dist": float(dist.mean()), "area": float((ws * hs).mean() / (wo * ho).mean()),
             "height": float(hs.mean() / ho.mean()), "mx": mx, "inter": float((inter > 0).mean()),
             "rel_v": float(np.hypot(*(vs - vo)))}  # fmt: skip
    return out, stats


def _pair_predicates(sub: Track, obj: Track, lo: int, hi: int, vocab: Vocab) -> list[str]:
    """Predicates of subject → object over frames [lo, hi) (both exist there): the primary one first."""
    bs = sub.boxes[lo - sub.start : hi - sub.start].astype(np.float64)
    bo = obj.boxes[lo - obj.start : hi - obj.start].astype(np.float64)
    acts = sub.actions[lo - sub.start : hi - sub.start]
    action = int(np.bincount(acts[acts >= 0], minlength=len(ACTIONS)).argmax()) if (acts >= 0).any() else -1
    airborne = "air" in (CATEGORIES[sub.category][1], CATEGORIES[obj.category][1])
    spatial, st = _spatial_relations(bs, bo, airborne)
    preds: list[str] = []
    for rel in spatial:
        for cand in ((f"{ACTIONS[action]}_{rel}",) if action >= 0 else ()) + (rel,):
            if cand in vocab.predicate_set:
                preds.append(cand)
                break
        if preds:
            break
    extras = []
    if (
        sub.category in RIDERS
        and obj.category in RIDEABLE
        and abs(st["mx"]) < 0.5
        and st["inter"] > 0.8
        and "above" in spatial
        and st["rel_v"] <= 0.3 + 0.2 * st["sp_o"]
    ):
        extras.append("ride")
    if (
        sub.category not in INANIMATE
        and min(st["sp_s"], st["sp_o"]) >= MOVING_THRESHOLD
        and st["cos_v"] >= 0.8
        and -3.0 <= st["trail"] <= -0.6
        and st["aside"] <= 0.8
    ):  # right behind a moving object, the same way: following it, or chasing it when running
        extras.append("chase" if action >= 0 and ACTIONS[action] in ("run", "fly", "jump") else "follow")
    if st["area"] >= 2.0:
        extras.append("larger")
    if st["height"] >= 1.5:
        extras.append("taller")
    if st["sp_o"] >= MOVING_THRESHOLD and st["sp_s"] >= 1.6 * st["sp_o"] + 0.3:
        extras.append("faster")
    preds.extend(p for p in extras if p in vocab.predicate_set and p not in preds)
    return preds


def relations(
    tracks: list[Track], frames: int, vocab: Vocab
) -> tuple[list[dict[str, Any]], dict[tuple[int, int, int], list[str]]]:
    """Relation instances of a video (merged over consecutive segments) and the per-(segment, s, o) labels."""
    per_seg: dict[tuple[int, int, int], list[str]] = {}
    spans: dict[tuple[int, int, str], list[list[int]]] = {}
    for g, (fs, fe) in enumerate(segments(frames)):
        for s in tracks:
            for o in tracks:
                if s.tid == o.tid:
                    continue
                lo, hi = max(fs, s.start, o.start), min(fe, s.end, o.end)
                if hi - lo < MIN_PAIR_FRAMES:
                    continue
                preds = _pair_predicates(s, o, lo, hi, vocab)
                per_seg[(g, s.tid, o.tid)] = preds
                for p in preds:
                    runs = spans.setdefault((s.tid, o.tid, p), [])
                    if runs and lo < runs[-1][1]:
                        runs[-1][1] = max(runs[-1][1], hi)
                    else:
                        runs.append([lo, hi])
    instances = [
        {"subject_tid": s, "object_tid": o, "predicate": p, "begin_fid": b, "end_fid": e}
        for (s, o, p), runs in sorted(spans.items())
        for b, e in runs
    ]
    return instances, per_seg
