"""One data-parallel training run of a tiny model, for test_distributed.py (not collected by pytest).

    python ddp_worker.py OUT                                   # 1 process, global batch 8
    torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT # 2 processes (gloo), 4 samples each per step

Both see the same global batches (DistributedSampler, same seed), so with DDP's gradient averaging the parameters
after each step must agree. Rank 0 writes OUT/params.pt, OUT/log.jsonl and OUT/last.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from uasan.engine import (
    CheckpointHook,
    LoggingHook,
    Trainer,
    build_dataloader,
    cleanup_distributed,
    get_world_size,
    init_distributed,
    is_main_process,
    unwrap_model,
    wrap_ddp,
)

GLOBAL_BATCH = 8


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 4, generator=g)
        self.y = torch.sin(self.x.sum(1, keepdim=True))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"mse": nn.functional.mse_loss(model(batch["x"]), batch["y"])}


def main(out: str) -> None:
    info = init_distributed(backend="gloo")
    torch.manual_seed(0)  # same initial parameters on every process (DDP also broadcasts rank 0's)
    model = wrap_ddp(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = build_dataloader(Pairs(), batch_size=GLOBAL_BATCH // get_world_size(), seed=3)
    hooks = [LoggingHook(log_every=1, progress=False), CheckpointHook()]
    Trainer(model, optimizer, loader, loss_fn, max_epochs=1, hooks=hooks, out_dir=out).train()
    if is_main_process():
        torch.save({"params": unwrap_model(model).state_dict(), "world_size": info.world_size}, Path(out) / "params.pt")
    cleanup_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
