"""A DDP rank whose shard is empty (issue 14, item 2): no hang, no NaN, and the step is the right one.

Two processes (gloo, CPU) take one stage-1 step and one stage-2 step of the real UASAN model through
``DistributedDataParallel(find_unused_parameters=True)`` (as ``uasan.train`` wraps it). Rank 0 has a segment of N = 3
trajectories; rank 1 has nothing (0 trajectories, 0 pairs: a shard made of segments without proposals). Each rank's
loss is the mean over its own batch, 0 on the empty one with zero gradients, and DDP averages the gradients, so the
step equals a one-process step on rank 0's batch with its loss halved. In float64 (see test_ddp_model.py for why)
the parameters after the step agree with that reference to 1e-9; on both ranks they are identical.

This file is also the worker: ``python -m torch.distributed.run --standalone --nproc_per_node=2 test_ddp_empty.py
OUT`` (each rank writes OUT/rank<r>.pt).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# first: it skips the module without the model's text encoder
from tests.engine.ddp_uasan import DTYPE, OBJECTS, PREDICATES, SPEC, run_beside_reference, segment
from uasan.engine.distributed import (
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    wrap_ddp,
)
from uasan.models import UASAN

N = 3


def step(stage: int, inputs: dict[str, torch.Tensor], scale: float) -> tuple[dict[str, torch.Tensor], float]:
    """One AdamW step of a fresh (seeded) model on ``inputs``, loss × ``scale`` → (trainable params, loss)."""
    torch.manual_seed(0)
    model = UASAN(SPEC).to(DTYPE)
    if stage == 2:
        model.freeze_bridge()
    model.train()
    params = model.bridge_parameters() if stage == 1 else model.relation_parameters()
    names = {id(p): n for n, p in model.named_parameters()}
    ddp = wrap_ddp(model, find_unused_parameters=True)
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    if stage == 1:
        labels = inputs["traj_labels"].clone()
        losses = ddp(1, traj_feats=inputs["traj_feats"], labels=labels, names=OBJECTS)
    else:
        losses = ddp(2, **inputs, object_names=OBJECTS, predicate_names=PREDICATES)
    loss = sum(losses.values()) * scale
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for p in params:
        assert p.grad is None or torch.isfinite(p.grad).all(), names[id(p)]
    opt.step()
    return {names[id(p)]: p.detach().clone() for p in params}, float(loss.detach())


def main(out: str) -> None:
    init_distributed(backend="gloo")
    assert get_world_size() == 2
    inputs = segment(N if get_rank() == 0 else 0, seed=100)
    result = {stage: step(stage, inputs, 1.0) for stage in (1, 2)}
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save(result, Path(out) / f"rank{get_rank()}.pt")
    cleanup_distributed()


def test_ddp_step_with_an_empty_rank(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def reference():  # one process on rank 0's batch, its loss halved
        return {stage: step(stage, segment(N, seed=100), 0.5) for stage in (1, 2)}

    ref = run_beside_reference(__file__, tmp_path, reference, 240)  # a hang fails on the timeout
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for stage in (1, 2):
        (p0, loss0), (p1, loss1) = ranks[0][stage], ranks[1][stage]
        ref_params, ref_loss = ref[stage]
        assert loss1 == 0.0 and loss0 == pytest.approx(2 * ref_loss, rel=1e-12)
        assert set(p0) == set(p1) == set(ref_params)
        for n, v in ref_params.items():
            assert torch.equal(p0[n], p1[n]), n  # DDP kept the replicas identical
            torch.testing.assert_close(p0[n], v, atol=1e-9, rtol=1e-9, msg=f"stage {stage}: {n}")


if __name__ == "__main__":
    main(sys.argv[1])
