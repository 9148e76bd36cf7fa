"""Reproducibility: seeding, RNG state capture/restore, and a DataLoader whose order depends only on (seed, epoch).

Exact resume needs every source of randomness to be either saved in the checkpoint or a pure function of
(seed, epoch). Here:

* the sample order comes from a ``DistributedSampler`` (also in a single process: ``num_replicas=1``), whose
  permutation is ``randperm(n, seed + epoch)``; the same global order under 1 or W processes;
* the loader's own generator (it draws each epoch's worker base seed) is re-seeded from (seed, epoch) by
  ``EpochLoader.set_epoch``, so it never reads the global RNG and carries no state across epochs;
* the global python / numpy / torch (/ CUDA) RNGs, which the model uses (dropout, sampling), are saved in each
  checkpoint by ``get_rng_state`` and restored by ``set_rng_state``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from uasan.engine import distributed as dist_utils

__all__ = [
    "seed_everything",
    "get_rng_state",
    "set_rng_state",
    "worker_init_fn",
    "EpochLoader",
    "build_dataloader",
    "to_device",
    "resolve_device",
]


def seed_everything(seed: int, deterministic: bool | None = None) -> None:
    """Seed python, numpy and torch (all devices).

    ``deterministic`` (default: on when CUDA is not available) also asks torch for deterministic kernels with
    ``warn_only=True``: on the CPU that costs next to nothing; on CUDA it can be slow and needs
    ``CUBLAS_WORKSPACE_CONFIG``, so it is opt-in there.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG is what third-party code draws from
    torch.manual_seed(seed)
    if deterministic is None:
        deterministic = not torch.cuda.is_available()
    if deterministic:
        if torch.cuda.is_available():
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def get_rng_state() -> dict[str, Any]:
    """The global RNG states as plain python / tensor values (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - saving the global RNG is the point
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)}
        | {"has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``get_rng_state`` captured. CUDA states are restored only when present and CUDA is available."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))  # a checkpoint round trip may turn tuples into lists
    n = state["numpy"]
    keys = np.asarray(n["keys"].numpy() if torch.is_tensor(n["keys"]) else n["keys"], dtype=np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and python in a DataLoader worker from the per-worker torch seed (base seed + worker id).

    Recent torch versions do this themselves; doing it explicitly keeps the behaviour independent of the version.
    """
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG is what third-party code draws from


class EpochLoader(DataLoader):
    """A ``DataLoader`` with ``set_epoch(epoch)``: sets the sampler's epoch and re-seeds the loader's generator.

    Build it with ``build_dataloader``. The trainer calls ``set_epoch`` before iterating each epoch.
    """

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        sampler = self.batch_sampler.sampler if self.batch_sampler is not None else self.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        if self.generator is not None:
            # A large odd multiplier keeps (seed, epoch) pairs from colliding for any realistic seed and epoch.
            self.generator.manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    persistent_workers: bool = False,
) -> EpochLoader:
    """A DataLoader whose batches depend only on (seed, epoch), sharded across DDP processes when there are several.

    ``batch_size`` is per process; the global batch is ``batch_size * world_size``. Under DDP the
    ``DistributedSampler`` pads the data set with repeated samples to a multiple of the world size (unless
    ``drop_last``), as usual. ``persistent_workers`` keeps worker RNG states across epochs, which a checkpoint cannot
    capture: leave it off when the dataset draws random numbers and resume must be exact.
    """
    sampler = DistributedSampler(
        dataset,
        num_replicas=dist_utils.get_world_size(),
        rank=dist_utils.get_rank(),
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    generator = torch.Generator()
    generator.manual_seed(seed)
    loader = EpochLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        worker_init_fn=worker_init_fn if num_workers > 0 else None,
        generator=generator,
        persistent_workers=persistent_workers and num_workers > 0,
    )
    loader.seed = seed
    loader.set_epoch(0)
    return loader


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → this process's CUDA device (``LOCAL_RANK`` under torchrun) if CUDA is available, else the CPU."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_utils.get_local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return device


def to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``obj`` with every tensor moved to ``device``: tensors, mappings, lists, tuples (named too), and any object with
    a ``.to(device)`` method (e.g. ``uasan.data.SegmentBatch``). Other values are returned unchanged."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, device, non_blocking) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    if hasattr(obj, "to") and callable(obj.to):
        try:
            return obj.to(device, non_blocking=non_blocking)
        except TypeError:  # a .to() without non_blocking
            return obj.to(device)
    return obj
