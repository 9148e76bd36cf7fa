"""The run folder of ``python -m uasan.train``: what a run writes there, what a new run may reuse, and the checks
made before it writes anything (see :mod:`uasan.engine.run_folder` for the generic part).

A fresh run refuses a folder that holds another run (``--overwrite`` deletes that run's entries, RUN_ENTRIES, and
keeps a generated world in ``OUT/data`` when its generation record is this run's); ``--resume`` first checks that
the config equals the stored ``OUT/config.yaml`` and names every key that differs; ``--stage 1`` reuses
``OUT/stage0/bridge.pt`` and ``--stage 2`` (and ``--resume``) ``OUT/stage1/bridge.pt`` only when it was trained for
the same bridge (``STAGE0_FIELDS``, BRIDGE_FIELDS); ``--resume`` on a folder that does not exist or is empty is
refused (nothing to resume). Real data needs a BLIP-2 checkpoint (:func:`check_bridge_source`).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from uasan.config import TrainConfig, load_config, to_dict
from uasan.engine.run_folder import config_diff, plan_run_folder
from uasan.models.config import spec_differences

__all__ = [
    "BRIDGE_FIELDS", "RESUME_FREE_KEYS", "RUN_ENTRIES", "check_bridge_source", "check_run_folder",
    "check_something_to_resume", "read_bridge",
]  # fmt: skip


def world_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """The arguments with which a run generates its synthetic world in ``OUT/data`` (:func:`uasan.data.synth.generate`
    and :func:`~uasan.data.synth.generation_record` take them)."""
    return {"seed": cfg.train.seed}


# Top-level entries a run writes (fnmatch patterns); ".*.tmp" are atomic writes a hard kill left behind.
RUN_ENTRIES = (
    "config.yaml",
    "stage0",
    "stage1",
    "stage2",
    "model.pt",
    "metrics.json",
    "metrics.md",
    "per_video.json",
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
    if resume:
        check_something_to_resume(out)
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
        from uasan.data import synth

        # reused only when it is the world this run would write: seed, sizes, text encoder, feature knobs, format
        diff = synth.world_differences(data, synth.generation_record(**world_arguments(cfg)))
        if diff:
            if not overwrite:
                raise ValueError(
                    f"--out: {data} is not the synthetic world this run generates ({'; '.join(diff[:3])}): pass "
                    f"--overwrite to generate it again, or --data-root {data} to train on it as it is"
                )
            to_clear.append(data)
    return to_clear


def check_bridge_source(cfg: TrainConfig) -> None:
    """Real data needs a BLIP-2 checkpoint: the MiniLM bridge is aligned only by the synthetic world's corpus."""
    if cfg.data.dataset != "synth" and cfg.model.bridge_path is None:
        raise ValueError(
            f"model.bridge_path: the {cfg.data.dataset} config needs a local BLIP-2 checkpoint folder "
            "(Blip2ForImageTextRetrieval layout, e.g. Salesforce/blip2-itm-vit-g saved with save_pretrained): pass "
            "model.bridge_path=/path/to/blip2-itm-vit-g (README, 'Real data'). The MiniLM bridge is aligned only by "
            "the synthetic world's pretraining corpus (stage 0)"
        )
    if cfg.data.dataset != "synth":
        from uasan.models.bridge import is_blip2_folder

        if not is_blip2_folder(cfg.model.bridge_path):
            raise ValueError(
                f"model.bridge_path: {cfg.model.bridge_path} is not a BLIP-2 checkpoint folder (its config.json must "
                "say model_type 'blip-2'; save Salesforce/blip2-itm-vit-g with save_pretrained)"
            )


def check_something_to_resume(out: Path) -> None:
    """``--resume`` needs a run in ``out``: a folder that does not exist, or holds nothing a run writes, is a
    ``ValueError`` (a typo in --out would otherwise start a whole fresh run). A folder holding only a generated
    world (``OUT/data``: the run was stopped while generating it, before its config was written) is a run."""
    names = sorted(os.listdir(out)) if out.is_dir() else []
    names = [n for n in names if not fnmatch.fnmatchcase(n, ".*.tmp")]
    if not names:
        state = "does not exist" if not out.exists() else "is empty"
        raise ValueError(
            f"--resume: there is nothing to resume in {out} (it {state}): check --out, or start a new run there "
            "without --resume"
        )


def read_bridge(bridge_file: Path, spec: Any) -> dict[str, torch.Tensor]:
    """The stage-1 bridge weights (``bridge.*`` and ``background``) of ``bridge_file``, checked to fit ``spec``."""
    from uasan import predict as P

    what = "--stage 2 / --resume (the stage-1 bridge)"
    payload = P.read_model_file(bridge_file, what, model_only=False)  # a stage-1 bridge (or a whole model)
    stored = P.spec_from_payload(payload, bridge_file, what)
    diff = spec_differences(asdict(stored), spec, BRIDGE_FIELDS)
    if diff:
        raise ValueError(
            f"{what}: {bridge_file} was trained for another bridge; it differs in "
            + ", ".join(diff)
            + " (run stage 1 again: --overwrite, or another --out)"
        )
    return {k: v for k, v in payload["state_dict"].items() if k.startswith("bridge.") or k == "background"}
