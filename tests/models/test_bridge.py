"""The bridge from a real BLIP-2 checkpoint (issue 9): it keeps what BLIP-2's ITC uses, and before LoRA training
moves anything its embeddings and scores equal the checkpoint's own (``Blip2ForImageTextRetrieval``, ITC path)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
pytest.importorskip("peft")
from tests.models.tiny_blip2 import write_tiny_blip2  # noqa: E402
from uasan.models import UASAN, BridgeEncoder, ModelConfig  # noqa: E402

D_V, L, E = 24, 4, 16
PROMPTS = ["person ride horse", "dog walk_left", "bird fly_toward", "a ball/sports_ball"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_blip2(tmp_path_factory.mktemp("blip2"), visual_dim=D_V, num_queries=L, embed_dim=E)


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The checkpoint's own ITC outputs on random images and the prompts."""
    from transformers import Blip2ForImageTextRetrieval

    model = Blip2ForImageTextRetrieval.from_pretrained(checkpoint).eval()
    bridge = BridgeEncoder.from_blip2(checkpoint, D_V)
    ids, mask = bridge.tokenize(PROMPTS)
    pixels = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=ids, attention_mask=mask, use_image_text_matching_head=False)
        tokens = model.vision_model(pixel_values=pixels).last_hidden_state  # the vision tower's features (B, S, D_v)
    return {"out": out, "tokens": tokens, "ids": ids, "mask": mask}


def bridges(checkpoint):
    """The bridge as loaded, and with UASAN's LoRA adapter added (r 8, alpha 32, dropout 0.05), both in eval mode."""
    plain = BridgeEncoder.from_blip2(checkpoint, D_V).eval()
    lora = BridgeEncoder.from_blip2(checkpoint, D_V)
    lora.add_lora(r=8, alpha=32, dropout=0.05)
    return {"loaded": plain, "with LoRA": lora.eval()}


def test_tokenizer_is_the_checkpoints(checkpoint, reference):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    assert tok.convert_ids_to_tokens(reference["ids"][1][:5]) == ["[CLS]", "dog", "walk", "left", "[SEP]"]


@pytest.mark.parametrize("which", ["loaded", "with LoRA"])
def test_text_embedding_equals_the_checkpoints_itc(checkpoint, reference, which):
    bridge = bridges(checkpoint)[which]
    with torch.no_grad():
        ours = F.normalize(bridge.encode_text(reference["ids"], reference["mask"]), dim=-1)  # (C, e)
    torch.testing.assert_close(ours, reference["out"].text_embeds, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("which", ["loaded", "with LoRA"])
def test_visual_embedding_equals_the_checkpoints_itc(checkpoint, reference, which):
    bridge = bridges(checkpoint)[which]
    with torch.no_grad():
        ours = F.normalize(bridge.encode_visual(reference["tokens"]), dim=-1)  # (B, L, e)
    assert ours.shape == (3, L, E)
    torch.testing.assert_close(ours, reference["out"].image_embeds, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("which", ["loaded", "with LoRA"])
def test_max_over_queries_equals_logits_per_image(checkpoint, reference, which):
    bridge = bridges(checkpoint)[which]
    with torch.no_grad():
        text = bridge.encode_text(reference["ids"], reference["mask"])
        sim = bridge.similarity(bridge.encode_visual(reference["tokens"]), text)
        logits = bridge.classify(bridge.encode_visual(reference["tokens"]), bridge.encode_names(PROMPTS))
    want = reference["out"].logits_per_image  # (B, C), raw cosine
    torch.testing.assert_close(sim, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, want / bridge.tau, atol=1e-4, rtol=1e-5)  # Eq. 3: ÷ τ (0.07)
    # the query tokens differ (randomised): the max is not the mean, and not one fixed token
    per_token = torch.einsum("ble,ce->blc", F.normalize(bridge.encode_visual(reference["tokens"]), dim=-1),
                             reference["out"].text_embeds)  # fmt: skip
    assert not torch.allclose(per_token.max(1).values, per_token.mean(1), atol=1e-3)


def test_lora_is_uasans_adapter(checkpoint):
    bridge = bridges(checkpoint)["with LoRA"]
    names = {n for n, p in bridge.named_parameters() if p.requires_grad}
    wrapped = {n.rsplit(".lora_A", 1)[0] for n in names if ".lora_A" in n}
    assert len(wrapped) == 2 * 4 + 2  # 2 layers × (self, cross) × (query, value) + both projections
    assert {"vision_projection", "text_projection"} <= wrapped
    assert all("lora_" in n or n == "logit_scale" for n in names)  # the checkpoint's weights are frozen
    assert bridge.vision_projection.scaling["default"] == 32 / 8
    assert bridge.vision_projection.lora_dropout["default"].p == 0.05
    assert bridge.embed_dim == E and bridge.hidden_size == 32


def test_uasan_keeps_the_projections_and_maps_d_into_the_itc_space(checkpoint):
    spec = ModelConfig(visual_dim=D_V, d=32, L=L, L_mot=1, L_rel=2, heads=4, bridge_path=str(checkpoint))
    model = UASAN(spec).eval()
    reference = BridgeEncoder.from_blip2(checkpoint, D_V).eval()
    x = torch.randn(2, 5, D_V)
    with torch.no_grad():
        torch.testing.assert_close(model.bridge.encode_visual(x), reference.encode_visual(x))
    assert isinstance(model.to_itc, torch.nn.Linear) and model.to_itc.out_features == E  # d = 32 → e = 16


def test_bad_checkpoints_are_named(checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"model.bridge_path: .*cross-attends to 24-d vision tokens .* 40-d"):
        BridgeEncoder.from_blip2(checkpoint, 40)
    with pytest.raises(ValueError, match=r"model.L: .* has 4 query tokens, got 8"):
        BridgeEncoder.from_blip2(checkpoint, D_V, num_queries=8)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((checkpoint / "config.json").read_text())
    with pytest.raises(ValueError, match="holds no model.safetensors"):
        BridgeEncoder.from_blip2(empty, D_V)
