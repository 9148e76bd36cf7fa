"""The world's vocabulary of motion and the category split: actions, categories and their sizes and behaviour,
the spatial relations predicates are composed from, and the phrases the text model embeds.

The split is VidVRD's (the packaged ``uasan/data/splits/vidvrd.json``) unless another is given; every category of
it must be one the world can draw (:data:`CATEGORIES`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from uasan.data.synth.encoders import TextEncoder

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "FPS",
    "HEIGHT",
    "INANIMATE",
    "MIN_PAIR_FRAMES",
    "MOVING_THRESHOLD",
    "RIDEABLE",
    "RIDERS",
    "SPATIAL",
    "SPEED",
    "WIDTH",
    "Vocab",
    "category_phrase",
    "load_split",
    "make_vocab",
    "predicate_phrase",
]

WIDTH, HEIGHT, FPS = 640, 360, 30
MIN_PAIR_FRAMES = 15  # a pair is related in a segment when both exist for at least this many of its frames

# Actions and their nominal speed (pixels per frame at 360p). Order matters: it is the tie order everywhere.
ACTIONS: tuple[str, ...] = ("stop", "stand", "sit", "lie", "creep", "walk", "swim", "move", "jump", "run", "fly")
SPEED = {"stop": 0.0, "stand": 0.0, "sit": 0.0, "lie": 0.0, "creep": 0.5, "walk": 1.2, "swim": 1.4, "move": 2.0,
         "jump": 1.6, "run": 3.0, "fly": 3.0}  # fmt: skip
MOVING_THRESHOLD = 0.4  # px / frame: a subject slower than this is not "moving" for toward/away/past/with

# category: (width, height) at 360p, kind (ground / air / water), {action: weight}
CATEGORIES: dict[str, tuple[tuple[float, float], str, dict[str, float]]] = {
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
RIDERS = ("person", "monkey")
INANIMATE = ("airplane", "bicycle", "bus", "car", "train", "watercraft", "motorcycle", "skateboard", "ball", "frisbee",
             "sofa")  # fmt: skip
RIDEABLE = ("bicycle", "motorcycle", "horse", "skateboard", "elephant")
# Spatial relations in the order they are tried for a pair; the first one that holds and yields a predicate wins.
SPATIAL = ("past", "toward", "away", "with", "above", "beneath", "front", "behind", "next_to", "left", "right")


def category_phrase(category: str) -> str:
    """The text for a category name: ``"domestic_cat"`` → ``"domestic cat"``."""
    return category.replace("_", " ")


def predicate_phrase(predicate: str) -> str:
    """The text for a predicate name: ``"walk_next_to"`` → ``"walk next to"``."""
    return predicate.replace("_", " ")


def load_split(split: str | os.PathLike[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """The category split: a mapping, a JSON path (checked by :func:`uasan.data.load_split`), or ``None`` for the
    packaged ``uasan/data/splits/vidvrd.json``."""
    if isinstance(split, Mapping):
        return dict(split)
    from uasan.data.splits import load_split as load_checked

    return dict(load_checked("vidvrd" if split is None else split))


@dataclass
class Vocab:
    """The world's classes (base first, then novel, as in the split), draw weights and the detector's confusion."""

    objects: list[str]
    predicates: list[str]
    predicate_set: frozenset[str]
    split: dict[str, Any]
    category_weights: np.ndarray
    confusion: np.ndarray  # (C, C) row-stochastic detector confusion among *other* classes


def make_vocab(split: dict[str, Any], enc: TextEncoder) -> Vocab:
    """The vocabulary of ``split``; the detector confuses classes whose names the text model finds similar."""
    objects = list(split["objects"]["base"]) + list(split["objects"]["novel"])
    predicates = list(split["predicates"]["base"]) + list(split["predicates"]["novel"])
    unknown = [c for c in objects if c not in CATEGORIES]
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
    return Vocab(objects, predicates, frozenset(predicates), split, w / w.sum(), conf)
