"""Vision towers load from local checkpoints strictly: a full BLIP-2 folder gives exactly its vision model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from uasan.extract.towers import load_vision_tower


@pytest.fixture(scope="module")
def blip2_full(tmp_path_factory):
    """A tiny full BLIP-2 (Blip2ForImageTextRetrieval: ViT, Q-Former, projections), the bridge's layout."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, BlipImageProcessor

    torch.manual_seed(1)
    cfg = Blip2Config(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8, initializer_range=0.2),
        qformer_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            encoder_hidden_size=16, vocab_size=64),
        num_query_tokens=2, image_text_hidden_size=8,
    )  # fmt: skip
    model = Blip2ForImageTextRetrieval(cfg).eval()
    folder = tmp_path_factory.mktemp("blip2_full")
    model.save_pretrained(folder)
    BlipImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder, model


def test_full_blip2_checkpoint_gives_its_vision_model(blip2_full, tmp_path):
    folder, model = blip2_full
    tower = load_vision_tower(folder, "cpu")
    assert (tower.dim, tower.num_tokens) == (16, 5)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(9, 9), (3, 14), (20, 5)]]
    pixels = tower.preprocess(crops)
    assert pixels.shape == (3, 3, 16, 16)
    with torch.inference_mode():
        out = model.vision_model(pixel_values=pixels)
    torch.testing.assert_close(tower.encode(pixels, tokens=True), out.last_hidden_state)
    torch.testing.assert_close(tower.encode(pixels, tokens=False), out.pooler_output)
    for pool, want in (("cls", out.last_hidden_state[:, 0]), ("mean", out.last_hidden_state.mean(1))):
        torch.testing.assert_close(load_vision_tower(folder, "cpu", pool=pool).encode(pixels, False), want)
    # the same from an old-style pytorch_model.bin checkpoint
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(model.state_dict(), legacy / "pytorch_model.bin")
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(folder / name, legacy)
    torch.testing.assert_close(load_vision_tower(legacy, "cpu").encode(pixels, True), out.last_hidden_state)


def test_square_padding_uses_the_processor_mean(blip2):
    tower = load_vision_tower(blip2, "cpu")
    assert tower.fill.tolist() == [123, 117, 104]  # BLIP's image_mean × 255: zero after normalisation


def test_bad_checkpoints_are_clear_errors(blip2, tmp_path):
    with pytest.raises(ValueError, match="not a vision tower checkpoint folder"):
        load_vision_tower(tmp_path, "cpu")
    broken = tmp_path / "broken"
    shutil.copytree(blip2, broken)
    (broken / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="no preprocessor_config.json"):
        load_vision_tower(broken, "cpu")
    other = tmp_path / "other"
    shutil.copytree(blip2, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["num_hidden_layers"] = 2  # the checkpoint holds one layer: layer 1's weights are missing
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not hold the vision tower's weights"):
        load_vision_tower(other, "cpu")
    with pytest.raises(ValueError, match="pool: expected one of"):
        load_vision_tower(blip2, "cpu", pool="max")
