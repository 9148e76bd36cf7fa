"""Data-parallel training helpers for ``torchrun`` (gloo on the CPU, nccl on CUDA).

Launch: ``torchrun --nproc_per_node=N -m uasan.train ...``. Every helper is a cheap no-op in a single process, so the
same code runs with and without torchrun:

    info = init_distributed()                  # reads RANK / WORLD_SIZE / LOCAL_RANK; no-op when WORLD_SIZE is 1
    model = wrap_ddp(model.to(info.device))    # DDP only when world_size > 1
    loader = build_dataloader(...)             # DistributedSampler shards; EpochLoader.set_epoch per epoch
    if is_main_process(): ...                  # only rank 0 writes checkpoints, logs and plots
    losses = reduce_dict(losses)               # mean over processes, for logging
    cleanup_distributed()

Gradients are averaged by DDP, so a step on W processes with B samples each equals a single-process step on the
W·B samples when the loss is a mean over the batch.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_local_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "all_reduce_mean",
    "all_gather_object",
    "reduce_dict",
    "wrap_ddp",
    "unwrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device


def is_distributed() -> bool:
    """True when a process group with more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_local_rank() -> int:
    """``LOCAL_RANK`` as torchrun sets it (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints progress."""
    return get_rank() == 0


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    With ``WORLD_SIZE`` unset or 1 nothing is initialised. ``backend`` defaults to nccl when CUDA is available and
    gloo otherwise. On CUDA each process takes device ``LOCAL_RANK``. Calling it twice is harmless.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = get_local_rank()
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(device)  # before init so that nccl binds this process to its own GPU
        dist.init_process_group(
            backend=backend or ("nccl" if use_cuda else "gloo"),
            init_method="env://",
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistInfo(rank=get_rank(), local_rank=local_rank, world_size=get_world_size(), device=device)


def cleanup_distributed() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over processes (a new tensor; the input is left alone)."""
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= get_world_size()
    return out


def reduce_dict(values: Mapping[str, torch.Tensor], average: bool = True) -> dict[str, torch.Tensor]:
    """Sum (or mean) each scalar tensor over processes with ONE collective. Every process must pass the same keys."""
    if not values:
        return {}
    keys = sorted(values)  # same order on every rank regardless of insertion order
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    if is_distributed():
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        if average:
            stacked /= get_world_size()
    return dict(zip(keys, stacked.unbind(0), strict=True))


def wrap_ddp(model: nn.Module, **ddp_kwargs) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` itself. Place the model on its device
    first; on CUDA the device id is taken from the model's parameters."""
    if not is_distributed():
        return model
    param = next(model.parameters(), None)
    if param is not None and param.device.type == "cuda":
        ddp_kwargs.setdefault("device_ids", [param.device.index])
        ddp_kwargs.setdefault("output_device", param.device.index)
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP (or ``torch.compile``) wrapper: what checkpoints save and evaluation uses."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def all_gather_object(obj: object) -> list[object]:
    """``[obj from rank 0, obj from rank 1, ...]`` (``[obj]`` in a single process). Every process must call it."""
    if not is_distributed():
        return [obj]
    out: list[object] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out
