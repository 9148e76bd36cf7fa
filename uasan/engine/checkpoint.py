"""Checkpoint files: atomic ``torch.save`` and safe loading.

A checkpoint is the dict from ``Trainer.state_dict()``::

    {"format": 1, "model": ..., "frozen": None | {"names": [...], "blake2b": str}, "optimizer": ...,
     "scheduler": ... | None, "epoch": completed epochs,
     "step": optimizer steps so far, "sampler_epoch": next epoch the sampler will see, "rng": get_rng_state(),
     "hooks": {"<index>:<HookClass>": hook.state_dict()}, "extra": {...}}

``frozen`` is set when the trainer runs with ``save_frozen=False``: "model" then lacks the frozen parameters, whose
names and fingerprint stand in for them. Everything in it is tensors and plain python values, so
``torch.load(weights_only=True)`` (the default here) reads it without unpickling arbitrary objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from uasan.files import atomic_write, safe_torch_load, unreadable_torch_file

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "find_last_checkpoint", "safe_torch_load"]

CHECKPOINT_NAME = "last.pt"  # the latest checkpoint in a run folder, replaced atomically each epoch


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically: a failure mid-way leaves the previous file at ``path`` intact."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike[str], weights_only: bool = True) -> dict[str, Any]:
    """Read a checkpoint onto the CPU. ``path`` may be the file or a run folder (then its ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch raises several types for torn or foreign files; name the file in all cases
        raise ValueError(f"checkpoint {path} {unreadable_torch_file(path, e)}") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise ValueError(f"checkpoint {str(path)!r}: not a uasan trainer checkpoint (no 'model' / 'epoch')")
    return state


def find_last_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """``folder/last.pt`` if it exists, else None (a fresh run)."""
    path = Path(folder) / CHECKPOINT_NAME
    return path if path.is_file() else None
