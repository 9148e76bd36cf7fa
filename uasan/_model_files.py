"""Model files of ``python -m uasan.train`` (``OUT/model.pt``, ``OUT/stage1/bridge.pt``): the model's spec, writing
and reading them safely (``torch.load(weights_only=True)``), and refusing, with the file to use instead, the run's
files that are not trained models. :mod:`uasan.predict` re-exports every name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from uasan.config import TrainConfig, from_dict, to_dict
from uasan.data import Vocabulary
from uasan.files import atomic_write, safe_torch_load
from uasan.models import UASAN, ModelConfig

__all__ = [
    "MODEL_KIND", "STAGE1_KIND", "load_model", "load_state", "model_spec", "read_model_file", "save_model",
    "spec_from_payload",
]  # fmt: skip


def model_spec(cfg: TrainConfig, visual_dim: int, variant: str | None = None, impl: str | None = None) -> ModelConfig:
    """The model's spec: the ``model`` config section with the data's feature width (and a variant / kernel choice
    when given). A ``model.visual_dim`` set in the config must be the data's."""
    m = cfg.model
    if m.visual_dim is not None and m.visual_dim != visual_dim:
        raise ValueError(f"model.visual_dim: the config says {m.visual_dim}, the data's features have {visual_dim}")
    return dataclasses.replace(m, visual_dim=visual_dim, variant=variant or m.variant, impl=impl or m.impl)


# The "kind" field of a file written by save_model: the trained model (OUT/model.pt), or stage 1's output
# (OUT/stage1/bridge.pt: the adapted bridge in a whole model whose relation part is untrained).
MODEL_KIND, STAGE1_KIND = "model", "stage1_bridge"


def save_model(model: UASAN, cfg: TrainConfig, split: dict[str, Any], path: str | Path, kind: str = MODEL_KIND) -> Path:
    """Weights + spec + config + category split + ``kind`` (MODEL_KIND, STAGE1_KIND) in one file, written
    atomically."""
    payload = {
        "kind": kind, "spec": asdict(model.spec), "config": to_dict(cfg), "split": split,
        "state_dict": model.state_dict(),
    }  # fmt: skip
    return atomic_write(path, lambda f: torch.save(payload, f))


def _run_model_file(path: Path) -> str:
    """The model file of the run that ``path`` (a file in OUT/stage*/) belongs to: ``OUT/model.pt``, with a note
    when the run has not written it yet."""
    run = path.parent.parent if path.parent.name.startswith("stage") else path.parent
    model = run / "model.pt"
    if model.is_file():
        return str(model)
    return (
        f"{model}, which uasan.train writes when stage 2 ends (not there yet: finish the run, e.g. python -m "
        f"uasan.train --out {run} --resume ...)"
    )


def _refuse_other_files(payload: Any, path: Path, what: str) -> None:
    """A ``ValueError`` naming the file to use instead for the run's files that are not models: a trainer
    checkpoint (``OUT/stage*/last.pt``), the stage-1 bridge (``OUT/stage1/bridge.pt``: its relation part was never
    trained, its predictions are noise) and the stage-0 bridge (``OUT/stage0/bridge.pt``)."""
    if not isinstance(payload, dict):
        return
    if "model" in payload and "epoch" in payload:
        found = f"a training checkpoint (trainer state for --resume, epoch {payload['epoch']})"
    elif payload.get("kind") == STAGE1_KIND or (
        "kind" not in payload and path.name == "bridge.pt" and path.parent.name == "stage1"  # written before "kind"
    ):
        found = "the stage-1 bridge (stage 1's output: its relation model is untrained)"
    elif "tau" in payload and "metrics" in payload and "split" not in payload:
        found = "the stage-0 bridge (the pretrained bridge alone)"
    else:
        return
    raise ValueError(
        f"{what}: {path} is {found}, not a trained model: use the run's model file, {_run_model_file(path)}"
    )


def read_model_file(path: str | Path, what: str = "--checkpoint", *, model_only: bool = True) -> dict[str, Any]:
    """The payload of a file written by :func:`save_model`, read with ``torch.load(weights_only=True)`` (no code can
    run from it) and checked; every problem is a ``ValueError`` naming ``what`` (the option) and the file. With
    ``model_only`` a stage-1 bridge, a stage-0 bridge or a trainer checkpoint of a run is refused with the name of
    the run's ``model.pt``."""
    path = Path(path)
    payload = safe_torch_load(path, what)
    if model_only:
        _refuse_other_files(payload, path, what)
    fields = {"spec": dict, "config": dict, "split": dict, "state_dict": dict}
    if not isinstance(payload, dict):
        raise ValueError(f"{what}: {path} is not a uasan model file (holds a {type(payload).__name__}, not a dict)")
    for key, kind in fields.items():
        if not isinstance(payload.get(key), kind):
            raise ValueError(
                f"{what}: {path} is not a uasan model file: field '{key}' is missing or not a {kind.__name__}"
            )
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{what}: {path}: field 'state_dict[{bad[0]!r}]' is not a tensor")
    return payload


def spec_from_payload(payload: dict[str, Any], path: str | Path, what: str = "--checkpoint") -> ModelConfig:
    """The model's spec saved in a model file, checked as a config section (a ``ValueError`` names the field)."""
    spec = from_dict(ModelConfig, payload["spec"], source=f"{what}: {path}: field 'spec'", prefix="model")
    if spec.visual_dim is None:
        raise ValueError(f"{what}: {path}: field 'spec': no visual_dim")
    return spec


def load_state(model: UASAN, state: dict[str, torch.Tensor], path: str | Path, what: str, strict: bool = True) -> None:
    """``model.load_state_dict(state)``; a mismatch is a ``ValueError`` naming the file (not a size-mismatch dump)."""
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        detail = "; ".join(lines[:3]) + (f"; ... ({len(lines) - 3} more)" if len(lines) > 3 else "")
        raise ValueError(f"{what}: {path}: field 'state_dict' does not fit the model: {detail}") from None


def load_model(
    path: str | Path, device: str | torch.device = "cpu", what: str = "--checkpoint"
) -> tuple[UASAN, TrainConfig, dict[str, Any]]:
    """A model file written by :func:`save_model` → (model in eval mode on ``device``, its config, its split)."""
    path = Path(path)
    payload = read_model_file(path, what)
    spec = spec_from_payload(payload, path, what)
    cfg = from_dict(TrainConfig, payload["config"], source=f"{what} {path}: field 'config'")
    split = payload["split"]
    try:
        Vocabulary.from_split(split)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {path}: field 'split': {exc}") from None
    model = UASAN(spec)
    load_state(model, payload["state_dict"], path, what)
    return model.to(device).eval(), cfg, split
