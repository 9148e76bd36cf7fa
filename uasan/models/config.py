"""UASAN's model configuration: one frozen dataclass for the config file's ``model`` section and the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from uasan.files import check_min

__all__ = ["IMPLS", "VARIANTS", "ModelConfig", "spec_differences"]

VARIANTS = ("A", "B", "C", "full")
IMPLS = ("auto", "triton", "torch")


@dataclass(frozen=True)
class ModelConfig:
    """UASAN architecture (DESIGN §6), the ``model`` section of a run's config and the model's own spec (one
    dataclass). Field names follow the paper's symbols. ``visual_dim`` is the input features' width: ``None`` in a
    config (the run reads it from the data, :func:`uasan.predict.model_spec`); set in a model's spec."""

    visual_dim: int | None = None  # width of the trajectory / union features; None = from the data
    d: int = 512  # hidden width of the relation model
    L: int = 32  # query tokens per trajectory / union region
    L_mot: int = 2  # motion tokens
    L_rel: int = 10  # learnable prompt context tokens
    heads: int = 8
    variant: Literal["full", "A", "B", "C"] = "full"  # ablation: A pair, B +union/motion, C +SACEncoder, full +URA
    bridge_layers: int | None = None  # Q-Former depth of a text-model bridge; None = every layer of the text model
    bridge_path: str | None = None  # local BLIP-2 checkpoint folder; None = packaged MiniLM + stage 0 (synthetic)
    embed_dim: int = 256  # ITC width of a text-model bridge (a BLIP-2 checkpoint brings its own: 256)
    lora_r: int = 8  # UASAN's LoRA adapter on the bridge: rank, alpha, dropout (0 rank: no adapter)
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    tau_init: float = 0.07  # initial softmax temperature of the bridge and of the predicate heads (learnable)
    distil_union: bool = False  # L_dis also on the union regions of the training pairs (the paper: trajectories)
    impl: Literal["auto", "triton", "torch"] = "auto"  # attention kernels: auto = Triton on CUDA, reference elsewhere

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant: expected one of {VARIANTS}, got {self.variant!r}")
        if self.impl not in IMPLS:
            raise ValueError(f"model.impl: expected one of {IMPLS}, got {self.impl!r}")
        if self.visual_dim is not None:
            check_min(self, "visual_dim", 1, "model")
        for name in ("d", "L", "heads", "embed_dim"):
            check_min(self, name, 1, "model")
        for name in ("L_mot", "L_rel", "lora_r"):
            check_min(self, name, 0, "model")
        if self.bridge_layers is not None:
            check_min(self, "bridge_layers", 1, "model")
        if self.d % self.heads:
            raise ValueError(f"model.d: expected a multiple of model.heads ({self.heads}), got {self.d}")
        if not self.tau_init > 0:
            raise ValueError(f"model.tau_init: expected > 0, got {self.tau_init}")
        if not self.lora_alpha > 0:
            raise ValueError(f"model.lora_alpha: expected > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"model.lora_dropout: expected a number in [0, 1), got {self.lora_dropout}")


def spec_differences(stored: Mapping[str, Any], spec: ModelConfig, fields: Iterable[str]) -> list[str]:
    """``"model.<field>: <stored> → <spec>"`` for each of ``fields`` where a saved spec (as a dict) differs from
    ``spec``: why weights saved for one model do not fit another."""
    return [f"model.{f}: {stored.get(f)!r} → {getattr(spec, f)!r}" for f in fields if stored.get(f) != getattr(spec, f)]
