"""The pretraining corpus: (visual tokens, caption) pairs through the world's own simulated vision encoder, the
stand-in for the web image–text data a BLIP-2 Q-Former was pretrained on (DESIGN §7).

Written under ``ROOT/pretrain/``::

    features.npy            float16 (N, S, D_v)  the items' visual tokens (the same encoder and token count as
                                                 the task features)
    caption_ids.npy         int32 (N,)           index of each item's caption in captions.json
    kinds.npy               int8 (N,)            0: a concept item (caption = one phrase), 1: a relation item
                                                 (caption = "subject predicate object")
    captions.json           {"captions": [str]}  the distinct captions, in order of first use
    caption_embeddings.npy  float16 (C, 384)     the packaged text model's unit embedding of each caption (the same
                                                 any user of the text model computes; for probes and baselines)

Like real VLM data it is mostly objects: every distractor word (whole-word tokens of the text model's vocabulary)
``per_distractor`` times, every world category ``per_object`` times (half of them while doing one of its actions,
which the caption does not name), every action ``per_action`` times; relation items are a ``relation_fraction`` of
the corpus, rarer and noisier: subject and object are world categories (else distractors), the caption names the
world's predicates in turn (each once per cycle, so every one is named), and with probability ``caption_noise`` the
item shows another predicate than the one named. It
contains every word of the world, novel classes included, as BLIP-2's web data did; it contains no task labels
(no video, no box, no annotation).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uasan.data.synth.encoders import TextEncoder, distractor_concepts, unit
from uasan.data.synth.features import ConceptTable, FeatureConfig, check_fields
from uasan.data.synth.vocab import ACTIONS, CATEGORIES, Vocab, category_phrase, predicate_phrase

__all__ = ["CONCEPT", "RELATION", "Corpus", "CorpusConfig", "make_corpus", "read_corpus", "write_corpus"]

CONCEPT, RELATION = 0, 1


@dataclass(frozen=True)
class CorpusConfig:
    """Composition of the pretraining corpus (see the module docstring)."""

    distractors: int = 3000
    per_distractor: int = 2
    per_object: int = 8
    per_action: int = 10
    relation_fraction: float = 0.4
    caption_noise: float = 0.2
    world_arguments: float = 0.7  # P(a relation's subject / object is a world category rather than a distractor)

    def __post_init__(self) -> None:
        check_fields(
            self,
            nonnegative=("distractors", "per_distractor", "per_object", "per_action"),
            unit_interval=("caption_noise", "world_arguments"),
        )
        if not 0.0 <= self.relation_fraction < 1.0:
            raise ValueError(f"CorpusConfig: expected relation_fraction in [0, 1), got {self.relation_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Corpus:
    """An in-memory corpus: tokens (N, S, D_v), caption ids (N,), kinds (N,), captions (C), embeddings (C, 384)."""

    features: np.ndarray
    caption_ids: np.ndarray
    kinds: np.ndarray
    captions: list[str]
    caption_embeddings: np.ndarray

    def __len__(self) -> int:
        return int(self.caption_ids.shape[0])


def make_corpus(
    seed: int, enc: TextEncoder, table: ConceptTable, vocab: Vocab, feat: FeatureConfig, cfg: CorpusConfig, tokens: int
) -> Corpus:
    """Draws the corpus of world ``seed`` (its own random stream; the task videos do not depend on it)."""
    rng = np.random.default_rng([seed, 3, 0])
    objects = [category_phrase(c) for c in vocab.objects]
    predicates = [predicate_phrase(p) for p in vocab.predicates]
    world = set(objects) | set(ACTIONS) | set(predicates) | {"background"}
    words, emb = distractor_concepts(enc, cfg.distractors, exclude=sorted(world))
    table.add(words, emb)

    # (caption, signal phrases with weights, kind); a concept item's signal is one phrase, a relation's three
    items: list[tuple[str, list[tuple[str, float]], int]] = []
    for w in words:
        items += [(w, [(w, 1.0)], CONCEPT)] * cfg.per_distractor
    for c, p in zip(vocab.objects, objects, strict=True):
        actions = list(CATEGORIES[c][2])
        for k in range(cfg.per_object):
            sig = [(p, 1.0)]
            if actions and k % 2:
                sig.append((actions[int(rng.integers(len(actions)))], feat.w_action))
            items.append((p, sig, CONCEPT))
    for a in ACTIONS:
        items += [(a, [(a, 1.0)], CONCEPT)] * cfg.per_action
    n_rel = round(len(items) * cfg.relation_fraction / (1.0 - cfg.relation_fraction)) if predicates else 0
    n_rel = max(n_rel, len(predicates)) if cfg.relation_fraction > 0 else 0
    pool = words or objects

    def argument() -> str:
        use_world = rng.random() < cfg.world_arguments or not words
        return objects[int(rng.integers(len(objects)))] if use_world else pool[int(rng.integers(len(pool)))]

    cycle: list[int] = []
    for _ in range(n_rel):
        if not cycle:  # every predicate is named once per cycle, in a fresh order
            cycle = rng.permutation(len(predicates)).tolist()
        named = shown = cycle.pop()
        if len(predicates) > 1 and rng.random() < cfg.caption_noise:  # the caption names the wrong predicate
            shown = (named + 1 + int(rng.integers(len(predicates) - 1))) % len(predicates)
        s, o = argument(), argument()
        sig = [(predicates[shown], 1.0), (s, feat.w_pair / 2), (o, feat.w_pair / 2)]
        items.append((f"{s} {predicates[named]} {o}", sig, RELATION))
    order = rng.permutation(len(items))
    items = [items[i] for i in order]

    D, S = feat.visual_dim, tokens
    feats = np.zeros((len(items), S, D), np.float16)
    for i, (_, sig, _) in enumerate(items):
        x = sum(w * table[p] for p, w in sig)
        x = x + feat.w_instance * unit(rng.standard_normal(D)) + feat.w_style * unit(rng.standard_normal(D))
        feats[i] = x[None, :] + rng.standard_normal((S, D)) * (feat.noise / np.sqrt(D))
    captions = list(dict.fromkeys(cap for cap, _, _ in items))
    index = {c: i for i, c in enumerate(captions)}
    ids = np.array([index[cap] for cap, _, _ in items], np.int32)
    kinds = np.array([k for _, _, k in items], np.int8)
    cap_emb = enc.embed_batched(captions).astype(np.float16)
    return Corpus(feats, ids, kinds, captions, cap_emb)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_corpus(folder: Path, corpus: Corpus, write_bytes: Callable[[Path, bytes], None]) -> dict[str, Any]:
    """Writes ``corpus`` under ``folder`` (atomic per file via ``write_bytes``); returns its summary for meta.json."""
    write_bytes(folder / "features.npy", _npy(corpus.features))
    write_bytes(folder / "caption_ids.npy", _npy(corpus.caption_ids))
    write_bytes(folder / "kinds.npy", _npy(corpus.kinds))
    write_bytes(folder / "caption_embeddings.npy", _npy(corpus.caption_embeddings))
    text = json.dumps({"captions": corpus.captions}, sort_keys=True, separators=(",", ":")) + "\n"
    write_bytes(folder / "captions.json", text.encode())
    return {
        "format": {
            "features.npy": "float16 (N, S, D_v) visual tokens",
            "caption_ids.npy": "int32 (N,) index into captions.json",
            "kinds.npy": "int8 (N,) 0 concept item, 1 relation item",
            "captions.json": '{"captions": [str]} distinct captions in order of first use',
            "caption_embeddings.npy": "float16 (C, 384) the packaged text model's unit embedding of each caption",
        },
        "composition": {
            "concept": "caption = one phrase (distractor word, world category, action); tokens = v(phrase) "
            "[+ w_action v(action) for half of the category items] + w_instance a + w_style s + noise",
            "relation": "caption = 'subject predicate object' (world predicates named in turn); tokens = "
            "v(shown predicate) + w_pair (v(subject) + v(object)) / 2 + w_instance a + w_style s + noise; "
            "shown = named except with probability caption_noise",
            "distractors": "whole-word tokens of the text model's vocabulary in a fixed shuffled order, minus the "
            "world's phrases (hashed fallback: pseudo-words)",
        },
        "items": len(corpus),
        "concept_items": int((corpus.kinds == CONCEPT).sum()),
        "relation_items": int((corpus.kinds == RELATION).sum()),
        "captions": len(corpus.captions),
        "tokens": int(corpus.features.shape[1]),
        "dim": int(corpus.features.shape[2]),
    }


def read_corpus(root: str | Path) -> Corpus:
    """Reads ``ROOT/pretrain`` (or a ``pretrain`` folder itself), checking shapes; a bad file raises ``ValueError``
    naming the file and the field."""
    folder = Path(root)
    if not (folder / "features.npy").is_file() and (folder / "pretrain").is_dir():
        folder = folder / "pretrain"

    def load(name: str) -> np.ndarray:
        path = folder / name
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ValueError(f"{path}: the pretraining corpus file does not exist") from None
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the corpus file ({exc})") from None

    feats, ids, kinds, emb = (load(n) for n in ("features.npy", "caption_ids.npy", "kinds.npy",
                                                  "caption_embeddings.npy"))  # fmt: skip
    path = folder / "captions.json"
    try:
        captions = json.loads(path.read_text(encoding="utf-8"))["captions"]
    except FileNotFoundError:
        raise ValueError(f"{path}: the pretraining corpus file does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: field 'captions': expected {{\"captions\": [str, ...]}} ({exc})") from None
    if feats.ndim != 3:
        raise ValueError(f"{folder / 'features.npy'}: expected shape (N, S, D), got {feats.shape}")
    n = feats.shape[0]
    if ids.shape != (n,) or kinds.shape != (n,):
        raise ValueError(f"{folder}: caption_ids.npy {ids.shape} and kinds.npy {kinds.shape} must be ({n},)")
    if n and (ids.min() < 0 or ids.max() >= len(captions)):
        raise ValueError(f"{folder / 'caption_ids.npy'}: ids must index the {len(captions)} captions")
    if emb.ndim != 2 or emb.shape[0] != len(captions):
        raise ValueError(f"{folder / 'caption_embeddings.npy'}: expected ({len(captions)}, D), got {emb.shape}")
    return Corpus(feats, ids, kinds, list(captions), emb)
