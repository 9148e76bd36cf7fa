"""End-to-end stage-2 training throughput (pairs/s) on the synthetic world: ``model.impl=triton`` vs ``torch``.

GPU only (the interpreter makes Triton meaningless for timing on the CPU). Same world, same model initialisation
and the same batches for both paths; the first steps are warm-up (Triton autotuning, allocator).
"""

from __future__ import annotations

import time

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU benchmark: needs CUDA")

STEPS, WARMUP = 30, 5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from uasan.data import synth

    return synth.generate(tmp_path_factory.mktemp("world"), videos=60, seed=0, progress=False)


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_stage2_throughput(benchmark, world, impl):
    from uasan.data import SegmentDataset, collate_segments
    from uasan.engine.config import TrainConfig, load_config
    from uasan.predict import model_spec
    from uasan.train import stage2_loss

    cfg = load_config(TrainConfig, "vidvrd", ["model.bridge_layers=2", "model.text_residual=true"])  # d = 512, L = 32
    data = SegmentDataset(world, "train", mode="SGDet")
    batches = [collate_segments([data[(i * 32 + j) % len(data)] for j in range(32)]).to("cuda") for i in range(STEPS)]
    torch.manual_seed(0)
    from uasan.models import UASAN

    model = UASAN(model_spec(cfg, int(data[0].features.shape[-1]), impl=impl)).cuda()
    model.freeze_bridge()
    opt = torch.optim.AdamW(model.relation_parameters(), lr=1e-4)
    objects = list(data.vocab.objects[: data.vocab.num_base_objects])
    predicates = list(data.vocab.predicates[: data.vocab.num_base_predicates])

    def step(batch):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = sum(stage2_loss(model, batch, objects, predicates).values())
        loss.backward()
        opt.step()

    for b in batches[:WARMUP]:
        step(b)
    torch.cuda.synchronize()

    def run():
        for b in batches[WARMUP:]:
            step(b)
        torch.cuda.synchronize()

    t0 = time.perf_counter()
    benchmark.pedantic(run, rounds=1, iterations=1)
    elapsed = time.perf_counter() - t0
    pairs = sum(b.num_pairs for b in batches[WARMUP:])
    benchmark.group = "train-stage2-pairs-per-s"
    benchmark.extra_info.update(pairs_per_s=pairs / elapsed, impl=impl, device=torch.cuda.get_device_name())
