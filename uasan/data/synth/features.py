"""The world's feature knobs and the simulated encoder's tokens for the task data (trajectories and union regions).

Every concept the world shows (an object category, an action, a predicate, "background", a distractor word of the
corpus) has one visual code ``v(p)`` (:class:`~uasan.data.synth.encoders.VisionEncoder`, unit norm in expectation).
Per video and per token::

    trajectory token = v(category) + w_action v(action) + w_instance a_obj + w_style s_video + noise
    union token      = sum_k w_k v(predicate_k) / sum_k w_k + w_pair (v(subject) + v(object)) / 2
                       + w_style s_video + noise

``a_obj`` is a unit random appearance vector per object of the video, ``s_video`` one per video (nuisance), the
noise is Gaussian per token with expected norm ``noise``; ``w_k`` is 1 for a pair's primary predicate and
``w_extra`` for its secondary ones (larger, taller, …). A proposal that overlaps a ground-truth object takes that
object's signal, blended towards a background mix (``0.6 v("background") + 0.5 v(random category) + w_instance a``)
as its overlap drops; a pair of proposals takes the ground-truth pair's union signal in the same way, else the mix of
its members. Geometry lives only in the boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from uasan.data.synth.encoders import TextEncoder, VisionEncoder, unit
from uasan.data.synth.vocab import ACTIONS, Vocab, category_phrase, predicate_phrase

__all__ = ["ConceptTable", "FeatureConfig", "FeatureMaker", "check_fields"]


def check_fields(config: Any, *, nonnegative: Sequence[str] = (), unit_interval: Sequence[str] = ()) -> None:
    """Range checks of a config dataclass: each field named in ``nonnegative`` is >= 0, each in ``unit_interval``
    lies in [0, 1]; else a ``ValueError`` naming the class and the field."""
    cls = type(config).__name__
    for name in nonnegative:
        if getattr(config, name) < 0:
            raise ValueError(f"{cls}: expected {name} >= 0, got {getattr(config, name)}")
    for name in unit_interval:
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"{cls}: expected {name} in [0, 1], got {getattr(config, name)}")


@dataclass(frozen=True)
class FeatureConfig:
    """The simulated vision encoder and the feature mix (the calibrated defaults; see ``benchmarks/RESULTS.md``,
    "Synthetic world calibration").

    Attributes:
        visual_dim: D_v of every feature token (1408 like EVA ViT-g; 384 makes raw zero-shot defined).
        hidden: width of the random map's hidden layer.
        omega: frequency of the random map: visual similarity of two meanings decays as exp(-omega² (1 - cos)).
            Higher: what a probe learns from a few classes carries over less to their neighbours.
        identity_share: share of a concept's visual energy that is class-specific (memorisable from labels, no
            carry-over to other classes).
        w_action: weight of the subject's action in a trajectory token.
        w_pair: weight of the subject's and object's codes in a union token.
        w_extra: weight of a pair's secondary predicates (larger, taller, …) beside its primary one.
        w_style: weight of the per-video nuisance direction.
        w_instance: weight of the per-object appearance direction.
        noise: expected norm of the per-token Gaussian noise.
    """

    visual_dim: int = 1408
    hidden: int = 2048
    omega: float = 5.0
    identity_share: float = 0.7
    w_action: float = 0.15
    w_pair: float = 0.3
    w_extra: float = 0.5
    w_style: float = 0.5
    w_instance: float = 0.4
    noise: float = 7.0

    def __post_init__(self) -> None:
        if self.visual_dim < 1 or self.hidden < 1:
            raise ValueError(f"FeatureConfig: expected visual_dim, hidden >= 1, got {self.visual_dim}, {self.hidden}")
        check_fields(
            self,
            nonnegative=("w_action", "w_pair", "w_extra", "w_style", "w_instance", "noise"),
            unit_interval=("identity_share",),
        )
        if not self.omega > 0:
            raise ValueError(f"FeatureConfig: expected omega > 0, got {self.omega}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConceptTable:
    """Visual codes of the world's phrases: ``table[phrase]`` → (D_v,) float64.

    The world's own phrases (categories, actions, predicates, "background") are embedded one at a time by the text
    model (:meth:`TextEncoder.many`); distractor words come with their embeddings. Codes are computed once.
    """

    def __init__(self, enc: TextEncoder, vision: VisionEncoder, vocab: Vocab) -> None:
        self.enc, self.vision = enc, vision
        phrases = (
            [category_phrase(c) for c in vocab.objects]
            + list(ACTIONS)
            + [predicate_phrase(p) for p in vocab.predicates]
            + ["background"]
        )
        phrases = list(dict.fromkeys(phrases))
        self._codes: dict[str, np.ndarray] = {}
        self.add(phrases, enc.many(phrases))

    def add(self, phrases: Sequence[str], embeddings: np.ndarray) -> None:
        """Adds the codes of ``phrases`` (not yet in the table) with text embeddings (n, D_text)."""
        new = [i for i, p in enumerate(phrases) if p not in self._codes]
        codes = self.vision([phrases[i] for i in new], np.asarray(embeddings)[new])
        for i, c in zip(new, codes, strict=True):
            c.setflags(write=False)
            self._codes[phrases[i]] = c

    def __getitem__(self, phrase: str) -> np.ndarray:
        return self._codes[phrase]

    def __contains__(self, phrase: str) -> bool:
        return phrase in self._codes

    def many(self, phrases: Sequence[str]) -> np.ndarray:
        """(n, D_v) codes."""
        return np.stack([self._codes[p] for p in phrases]) if phrases else np.zeros((0, self.vision.dim))


class FeatureMaker:
    """Draws the simulated encoder's tokens for one video (see the module docstring)."""

    def __init__(
        self, rng: np.random.Generator, table: ConceptTable, vocab: Vocab, cfg: FeatureConfig, tokens: int, n: int
    ) -> None:
        self.rng, self.table, self.vocab, self.cfg, self.S, self.D = rng, table, vocab, cfg, tokens, cfg.visual_dim
        self.style = unit(rng.standard_normal(self.D))
        self.appearance = [unit(rng.standard_normal(self.D)) for _ in range(n)]
        self.background = 0.6 * table["background"]

    def category(self, c: str) -> np.ndarray:
        return self.table[category_phrase(c)]

    def object_signal(self, category: str, tid: int, actions: np.ndarray) -> np.ndarray:
        """Signal of object ``tid`` of ``category`` whose per-frame actions in the segment are ``actions`` (-1: none);
        the majority action is shown."""
        sig = self.category(category)
        if (actions >= 0).any():
            a = int(np.bincount(actions[actions >= 0], minlength=len(ACTIONS)).argmax())
            sig = sig + self.cfg.w_action * self.table[ACTIONS[a]]
        return sig + self.cfg.w_instance * self.appearance[tid]

    def background_signal(self) -> np.ndarray:
        c = self.vocab.objects[int(self.rng.integers(len(self.vocab.objects)))]
        return self.background + 0.5 * self.category(c) + self.cfg.w_instance * unit(self.rng.standard_normal(self.D))

    def union_signal(self, ci: str, cj: str, preds: Sequence[str]) -> np.ndarray:
        sig = self.cfg.w_pair * 0.5 * (self.category(ci) + self.category(cj))
        if preds:
            w = np.array([1.0] + [self.cfg.w_extra] * (len(preds) - 1))
            v = self.table.many([predicate_phrase(p) for p in preds])
            sig = sig + (w[:, None] * v).sum(0) / w.sum()
        return sig

    def pair_mix(self, si: np.ndarray, sj: np.ndarray) -> np.ndarray:
        """The union signal of two proposals with no known relation: their members' mix only."""
        return self.cfg.w_pair * (si + sj) / 2

    def tokens(self, signals: np.ndarray) -> np.ndarray:
        """(n, S, D_v) float32 tokens from (n, D_v) signals: signal + style + noise."""
        n = signals.shape[0]
        noise = self.rng.standard_normal((n, self.S, self.D)) * (self.cfg.noise / np.sqrt(self.D))
        out = signals[:, None, :] + self.cfg.w_style * self.style + noise
        return out.astype(np.float32)
