"""A 2-process DDP step of the real UASAN stage-2 loss equals a 1-process step on the same global batch.

The global batch is 2 segments of N = 3 trajectories (all 6 ordered pairs within each segment). Under ``torchrun
--nproc_per_node=2`` (gloo, CPU) each process takes one segment; in a single process the two segments are
concatenated (trajectory ids of the second offset by N). Every stage-2 term is a mean over equally sized segments
(no ignored labels), so the global-batch loss is the mean of the per-process losses, and DDP's gradient average
makes one AdamW step on 2 processes equal one on 1 process.

The step runs in float64. In float32 the two runs differ only by rounding, but the attention key biases (in
nn.MultiheadAttention and our ``k`` projections) have an analytically zero gradient (softmax is shift-invariant per
query), so theirs is pure rounding noise of ~1e-10, and AdamW's first step, lr·g/(|g| + eps), turns that noise into
updates of ~1e-4 that differ between the runs. The key bias does not change the model's function; in float64 the
noise is ~1e-17 and the comparison holds for every parameter at 1e-6.

This file is also the worker: ``python -m torch.distributed.run --standalone --nproc_per_node=2 test_ddp_model.py OUT``
(rank 0 writes OUT/params.pt).
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
    is_main_process,
    unwrap_model,
    wrap_ddp,
)
from uasan.models import UASAN

SEGMENTS, N = 2, 3  # segments in the global batch, trajectories per segment
LR = 1e-2


def global_batch() -> dict[str, torch.Tensor]:
    """All segments concatenated, the trajectory ids of segment i offset by i·N."""
    segs = [segment(N, seed=100 + i) for i in range(SEGMENTS)]
    out = {k: torch.cat([seg[k] for seg in segs]) for k in segs[0] if k not in ("subj", "obj")}
    for k in ("subj", "obj"):
        out[k] = torch.cat([seg[k] + i * N for i, seg in enumerate(segs)])
    return out


def one_step() -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Build the model (seeded), take one AdamW step on this process's share of the global batch through
    ``model(2, ...)``; → (relation parameters after the step, the step's losses before it, averaged over processes)."""
    info = init_distributed(backend="gloo")
    torch.manual_seed(0)  # the same initial weights in every process (DDP also broadcasts rank 0's)
    model = UASAN(SPEC).to(DTYPE)
    model.freeze_bridge()
    model.train()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    ddp = wrap_ddp(model, find_unused_parameters=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)
    inputs = segment(N, seed=100 + get_rank()) if info.world_size > 1 else global_batch()
    assert info.world_size in (1, SEGMENTS)
    losses = ddp(2, **inputs, object_names=OBJECTS, predicate_names=PREDICATES)
    loss = sum(losses.values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    params = dict(unwrap_model(ddp).named_parameters())
    logged = {k: v.detach().clone() for k, v in losses.items()}
    if info.world_size > 1:
        for v in logged.values():
            torch.distributed.all_reduce(v)
            v /= get_world_size()
    return {n: params[n].detach().clone() for n in names}, {k: v.item() for k, v in logged.items()}


def main(out: str) -> None:
    params, losses = one_step()
    if is_main_process():
        Path(out).mkdir(parents=True, exist_ok=True)
        torch.save({"params": params, "losses": losses, "world_size": get_world_size()}, Path(out) / "params.pt")
    cleanup_distributed()


def test_ddp_stage2_step_equals_single_process(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    # the 1-process reference in this process, while the 2-process job starts up
    ref_params, ref_losses = run_beside_reference(__file__, tmp_path / "two", one_step, 180)
    got = torch.load(tmp_path / "two" / "params.pt", weights_only=True)
    assert got["world_size"] == 2
    assert set(got["losses"]) == {"L_dis", "L_traj", "L_union", "L_fg"}
    for k, v in ref_losses.items():  # the mean of the per-process losses is the global-batch loss
        assert got["losses"][k] == pytest.approx(v, abs=1e-6, rel=1e-6), k
    assert set(got["params"]) == set(ref_params)
    assert any(n.startswith("encoder.") for n in ref_params) and any(n.startswith("decoder.") for n in ref_params)
    assert not any(n.startswith("bridge.") for n in ref_params)  # stage 2: the bridge is frozen
    for n, v in ref_params.items():
        torch.testing.assert_close(got["params"][n], v, atol=1e-6, rtol=1e-6, msg=n)
    torch.manual_seed(0)
    initial = dict(UASAN(SPEC).to(DTYPE).named_parameters())
    moved = [n for n, v in ref_params.items() if not torch.equal(v, initial[n].detach())]
    assert len(moved) > len(ref_params) // 2, moved  # the step did move the relation parameters


if __name__ == "__main__":
    main(sys.argv[1])
