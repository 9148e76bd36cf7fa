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
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from uasan.engine._atomic import atomic_write

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "find_last_checkpoint", "safe_torch_load"]

CHECKPOINT_NAME = "last.pt"  # the latest checkpoint in a run folder, replaced atomically each epoch


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically: a failure mid-way leaves the previous file at ``path`` intact."""
    return atomic_write(path, lambda f: torch.save(state, f))


def safe_torch_load(path: str | os.PathLike[str], what: str) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, every failure a ``ValueError`` naming ``what`` (the
    option or role of the file, e.g. ``"--checkpoint"``) and the file.

    ``weights_only=True`` unpickles tensors, plain containers and primitives only: a crafted file cannot run code
    (a pickle's ``__reduce__`` may name any callable, e.g. ``os.system``). Such a file, a truncated one and one that
    is not a torch file at all are told apart in the message.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        ref = re.search(r"GLOBAL ([\w.]+)", text)
        if ref is None and "Weights only load failed" not in text or "Unsupported operand" in text:
            raise ValueError(f"{what}: {path} is not a torch file (or is corrupt): cannot unpickle it") from None
        holds = f"a reference to {ref.group(1)}" if ref else "objects other than tensors and plain values"
        raise ValueError(
            f"{what}: {path} holds {holds}; it is not loaded, since unpickling it could run code "
            "(torch.load with weights_only=True). uasan files hold only tensors and plain values: this one is "
            "not a uasan file, or it was tampered with"
        ) from None
    except Exception as exc:  # torch raises several types for torn or foreign files; name the file in all cases
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
        raise ValueError(f"{what}: {path} cannot be read (truncated or not a torch file? {detail})") from None


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
        raise ValueError(f"checkpoint {str(path)!r}: cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise ValueError(f"checkpoint {str(path)!r}: not a uasan trainer checkpoint (no 'model' / 'epoch')")
    return state


def find_last_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """``folder/last.pt`` if it exists, else None (a fresh run)."""
    path = Path(folder) / CHECKPOINT_NAME
    return path if path.is_file() else None
