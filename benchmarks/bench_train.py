"""End-to-end stage-2 training throughput (pairs/s) on the synthetic world: ``model.impl=triton`` vs ``torch``.

GPU only (the interpreter makes Triton meaningless for timing on the CPU): the VidVRD model config (d = 512, L = 32,
8 heads), bf16 autocast, 25 timed steps of 32 segments after 5 warm-up steps (Triton autotuning, allocator). Same
world, same model initialisation and the same batches for both paths. With ``UASAN_BENCH_DRY=1`` (``gpu_report.py
--dry-run``) it runs on the CPU with a tiny model (d = 32, L = 2, one head) for one timed step of one segment under
the Triton interpreter: a plumbing check.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import torch

from benchmarks.target import DEVICE, DRY, device_name, needs_gpu, sync

pytestmark = needs_gpu

STEPS, WARMUP, SEGMENTS = (2, 1, 1) if DRY else (30, 5, 32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from uasan.data import synth

    return synth.generate(tmp_path_factory.mktemp("world"), videos=4 if DRY else 60, seed=0, progress=False)


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_stage2_throughput(benchmark, world, impl):
    from uasan.config import TrainConfig, load_config
    from uasan.data import SegmentDataset, collate_segments
    from uasan.models import UASAN
    from uasan.predict import model_spec
    from uasan.train import stage2_loss

    if DRY:
        cfg = load_config(TrainConfig, "synth", ["model.bridge_layers=1", "model.d=32", "model.heads=1", "model.L=2"])
    else:
        cfg = load_config(TrainConfig, "vidvrd", ["model.bridge_layers=2"])
    data = SegmentDataset(world, "train", mode="SGDet")
    items = [data[i] for i in range(len(data))]
    items = [it for it in items if len(it.pairs)]  # segments with at least two trajectories
    batches = [
        collate_segments([items[(i * SEGMENTS + j) % len(items)] for j in range(SEGMENTS)]).to(DEVICE)
        for i in range(STEPS)
    ]
    torch.manual_seed(0)
    model = UASAN(model_spec(cfg, int(items[0].features.shape[-1]), impl=impl)).to(DEVICE)
    model.freeze_bridge()
    opt = torch.optim.AdamW(model.relation_parameters(), lr=1e-4)
    objects = list(data.vocab.objects[: data.vocab.num_base_objects])
    predicates = list(data.vocab.predicates[: data.vocab.num_base_predicates])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if DEVICE.type == "cuda" else contextlib.nullcontext()

    def step(batch):
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = sum(stage2_loss(model, batch, objects, predicates).values())
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()

    for b in batches[:WARMUP]:
        step(b)
    sync()

    def run():
        for b in batches[WARMUP:]:
            step(b)
        sync()

    t0 = time.perf_counter()
    benchmark.pedantic(run, rounds=1, iterations=1)
    elapsed = time.perf_counter() - t0
    pairs = sum(b.num_pairs for b in batches[WARMUP:])
    assert pairs > 0
    benchmark.group = "train-stage2-pairs-per-s"
    benchmark.extra_info.update(pairs_per_s=pairs / elapsed, pairs=pairs, impl=impl, device=device_name())
