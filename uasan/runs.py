"""The run folder of ``python -m uasan.train``: what a run writes there, what a new run may reuse, and the checks
made before it writes anything (see :mod:`uasan.engine.run_folder` for the generic part).

A fresh run refuses a folder that holds another run (``--overwrite`` deletes that run's entries, RUN_ENTRIES, and
keeps a generated world of the same seed in ``OUT/data``); ``--resume`` first checks that the config equals the
stored ``OUT/config.yaml`` and names every key that differs; ``--stage 1`` reuses ``OUT/stage0/bridge.pt`` and
``--stage 2`` (and ``--resume``) ``OUT/stage1/bridge.pt`` only when it was trained for the same bridge
(``STAGE0_FIELDS``, BRIDGE_FIELDS).
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from uasan.config import TrainConfig, load_config, to_dict
from uasan.engine.run_folder import config_diff, plan_run_folder
from uasan.models.config import spec_differences

__all__ = ["BRIDGE_FIELDS", "RESUME_FREE_KEYS", "RUN_ENTRIES", "check_run_folder", "read_bridge"]


def synthetic_world_seed(root: Path) -> int | None:
    """The seed recorded in a generated world's ``meta.json`` (None when there is none)."""
    try:
        seed = json.loads((root / "meta.json").read_text(encoding="utf-8")).get("seed")
    except (OSError, ValueError, AttributeError):
        return None
    return seed if isinstance(seed, int) else None


# Top-level entries a run writes (fnmatch patterns); ".*.tmp" are atomic writes a hard kill left behind.
RUN_ENTRIES = (
    "config.yaml",
    "stage0",
    "stage1",
    "stage2",
    "model.pt",
    "metrics.json",
    "metrics.md",
    "curves.png",
    "predictions",
    "visualize",  # OUT/visualize/<first test video>.png (uasan.visualize.run_picture)
    "variant_*",
    "ablation.md",
    "ablation.json",
    ".*.tmp",
    "data",
)
# Keys that may change on --resume: they change how a run is executed, not what it computes.
RESUME_FREE_KEYS = ("data.num_workers", "train.num_threads")
# Model spec fields the bridge's weights depend on: a reused stage-1 bridge must agree on them.
BRIDGE_FIELDS = (
    "visual_dim", "d", "L", "bridge_layers", "bridge_path", "embed_dim", "lora_r", "lora_alpha", "lora_dropout",
)  # fmt: skip


def check_run_folder(cfg: TrainConfig, out: Path, *, stage: int | None, resume: bool, overwrite: bool) -> list[Path]:
    """Checks ``out`` before the run writes anything (see ``uasan.engine.run_folder``); returns what ``--overwrite``
    will clear. On ``--resume`` the config must equal ``OUT/config.yaml`` (up to RESUME_FREE_KEYS)."""
    prior = ["data"] + {1: ["stage0", "config.yaml"], 2: ["stage0", "stage1", "config.yaml"]}.get(stage or 0, [])
    hint = "" if stage in (1, 2) else " (--stage 1 / 2 reuse OUT/stage0, OUT/stage1)"
    to_clear = plan_run_folder(out, owned=RUN_ENTRIES, prior=prior, resume=resume, overwrite=overwrite, hint=hint)
    stored_file = out / "config.yaml"
    if resume and stored_file.is_file():
        try:
            stored = load_config(TrainConfig, stored_file)
        except ValueError as exc:
            raise ValueError(f"--resume: cannot read the run's config: {exc}") from None
        diff = config_diff(to_dict(stored), to_dict(cfg), ignore=RESUME_FREE_KEYS)
        if diff:
            raise ValueError(
                f"--resume: the config differs from the run's {stored_file} in {len(diff)} key(s):\n  "
                + "\n  ".join(diff)
                + "\nresume with the same config and arguments, or start a new run (another --out, or --overwrite)"
            )
    elif resume and out.is_dir():
        names = sorted(n for n in os.listdir(out) if n != "data" and not fnmatch.fnmatchcase(n, ".*.tmp"))
        if names:  # a run writes its config.yaml before anything else
            raise ValueError(f"--resume: {out} holds {', '.join(names[:4])} but no config.yaml: not a run to resume")
    data = out / "data"
    if cfg.data.root is None and (data / "meta.json").is_file():
        seed = synthetic_world_seed(data)
        if seed is not None and seed != cfg.train.seed:
            if not overwrite:
                raise ValueError(
                    f"--out: {data} is a synthetic world of seed {seed}, but train.seed is {cfg.train.seed}: pass "
                    f"--overwrite to generate the world of seed {cfg.train.seed}, or --data-root {data} to train on it"
                )
            to_clear.append(data)
    return to_clear


def read_bridge(bridge_file: Path, spec: Any) -> dict[str, torch.Tensor]:
    """The stage-1 bridge weights (``bridge.*`` and ``background``) of ``bridge_file``, checked to fit ``spec``."""
    from uasan import predict as P

    what = "--stage 2 / --resume (the stage-1 bridge)"
    payload = P.read_model_file(bridge_file, what)
    stored = P.spec_from_payload(payload, bridge_file, what)
    diff = spec_differences(asdict(stored), spec, BRIDGE_FIELDS)
    if diff:
        raise ValueError(
            f"{what}: {bridge_file} was trained for another bridge; it differs in "
            + ", ".join(diff)
            + " (run stage 1 again: --overwrite, or another --out)"
        )
    return {k: v for k, v in payload["state_dict"].items() if k.startswith("bridge.") or k == "background"}
