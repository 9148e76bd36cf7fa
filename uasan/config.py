"""UASAN's run configuration: the schema of ``python -m uasan.train`` (the ``data``, ``model``, ``pretrain``,
``optim``, ``train`` and ``infer`` sections; defaults = the paper's settings, the packaged YAML files pick per data
set) and the built-in config names. The YAML machinery is the engine's (:mod:`uasan.engine.config`).

    cfg = load_config(TrainConfig, "synth", ["optim.lr=3e-4", "model.variant=B"])
    dump_config(cfg, "runs/x/config.yaml")   # load_config(TrainConfig, "runs/x/config.yaml") gives it back
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from uasan.engine.config import apply_overrides, dump_config, from_dict, to_dict
from uasan.engine.config import load_config as load_yaml_config
from uasan.files import check_min
from uasan.models.config import ModelConfig

__all__ = [
    "BUILTIN_CONFIGS",
    "DataConfig",
    "InferConfig",
    "LoopConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "TrainConfig",
    "apply_overrides",
    "dump_config",
    "from_dict",
    "load_config",
    "resolve_config_path",
    "to_dict",
]

T = TypeVar("T")

BUILTIN_CONFIGS = ("synth", "vidvrd", "vidor")


@dataclass(frozen=True)
class DataConfig:
    """Where the data lives, how it is laid out, the held-out validation videos, and how it is batched.

    ``layout`` and the per-kind folders say where a real data set's files are (``uasan.data.layouts``): each of
    ``proposals`` … ``gt_union_features`` is a folder or a list of folders (searched in order), absolute or relative
    to the working directory; ``null`` = the layout's published folder name under ``root``. ``video2seg``: RePro's
    VidOR segment lists (optional, saves parsing every per-video file at start-up).
    """

    root: str | None = None  # data set root (the annotations); None for synth = generated under the run folder
    dataset: Literal["synth", "vidvrd", "vidor"] = "synth"
    layout: Literal["auto", "uasan", "repro", "uasan-public"] = "auto"  # auto = detected from the folders
    proposals: str | list[str] | None = None  # detected segment trajectories (SGDet)
    features: str | list[str] | None = None  # their trajectory features
    union_features: str | list[str] | None = None  # their per-pair union features
    gt_proposals: str | list[str] | None = None  # ground-truth segment trajectories (SGCls, PredCls)
    gt_features: str | list[str] | None = None
    gt_union_features: str | list[str] | None = None
    video2seg: str | list[str] | None = None  # RePro VidOR: VidOR{train,val}_video2seg.json
    union_segment_mean: bool = False  # uasan-public: every pair gets its segment's mean union feature (UASAN's code)
    val_fraction: float = 0.1  # training videos held out for validation (never a gradient step); ROOT/val wins
    val_seed: int = 0  # seed of the hash that picks them (stable across machines; independent of train.seed)
    num_workers: int = 0  # DataLoader worker processes
    batch_segments: int = 8  # video segments per batch (per process under DDP)

    def __post_init__(self) -> None:
        check_min(self, "num_workers", 0, "data")
        check_min(self, "batch_segments", 1, "data")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"data.val_fraction: expected a number in [0, 1), got {self.val_fraction}")
        for name in _DATA_PATH_KINDS:
            value = getattr(self, name)
            if isinstance(value, list) and not value:
                raise ValueError(f"data.{name}: an empty list; give a folder, a list of folders, or null")

    def dataset_options(self) -> dict[str, Any]:
        """The keyword arguments of ``uasan.data.SegmentDataset`` that this section sets (layout, folders, split)."""
        return {
            "layout": self.layout,
            "paths": {k: getattr(self, k) for k in _DATA_PATH_KINDS if getattr(self, k) is not None},
            "val_fraction": self.val_fraction,
            "val_seed": self.val_seed,
            "union_segment_mean": self.union_segment_mean,
        }


_DATA_PATH_KINDS = (
    "proposals",
    "features",
    "union_features",
    "gt_proposals",
    "gt_features",
    "gt_union_features",
    "video2seg",
)


@dataclass(frozen=True)
class OptimConfig:
    """Stages 1 and 2: Adam (the paper's) or AdamW, a constant learning rate or linear warm-up then cosine decay per
    optimizer step."""

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0  # AdamW's decoupled decay (matrices only); must be 0 for adam
    schedule: Literal["constant", "warmup_cosine"] = "constant"
    warmup_steps: int = 0  # warmup_cosine only
    epochs_stage1: int = 50  # stage 1: bridge trajectory classification
    epochs_stage2: int = 50  # stage 2: relations
    grad_clip: float | None = None  # max global L2 norm; None disables clipping

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"optim.lr: expected > 0, got {self.lr}")
        for name in ("warmup_steps", "epochs_stage1", "epochs_stage2"):
            check_min(self, name, 0, "optim")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay: expected >= 0, got {self.weight_decay}")
        if self.optimizer == "adam" and self.weight_decay:
            raise ValueError(f"optim.weight_decay: Adam has none (use optimizer: adamw), got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"optim.grad_clip: expected > 0 or null, got {self.grad_clip}")


@dataclass(frozen=True)
class PretrainConfig:
    """Stage 0 (``uasan.pretrain``): ITC pretraining of a text-model bridge on ``ROOT/pretrain``, the synthetic
    world's stand-in for BLIP-2's pretraining; skipped when ``model.bridge_path`` names a BLIP-2 checkpoint."""

    epochs: int = 10
    batch: int = 128  # corpus items per batch (in-batch negatives)
    lr: float = 1e-3  # AdamW, warm-up then cosine decay
    weight_decay: float = 0.05
    warmup_steps: int = 50
    label_smoothing: float = 0.0  # of the ITC targets (LAVIS: 0.1)
    tune: Literal["new", "query", "all"] = "query"  # what it trains (uasan.pretrain's docstring)
    val_items: int = 512  # held-out corpus items for its validation (never trained on)

    def __post_init__(self) -> None:
        for name in ("epochs", "warmup_steps", "val_items"):
            check_min(self, name, 0, "pretrain")
        check_min(self, "batch", 2, "pretrain")
        if not self.lr > 0:
            raise ValueError(f"pretrain.lr: expected > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"pretrain.weight_decay: expected >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"pretrain.label_smoothing: expected a number in [0, 1), got {self.label_smoothing}")


@dataclass(frozen=True)
class LoopConfig:
    """The training loop itself (the ``train:`` section)."""

    seed: int = 0
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:N"
    amp_bf16: bool = True  # bf16 autocast; only ever enabled on CUDA
    log_every: int = 50  # optimizer steps between log records
    eval_every_epoch: int = 1  # evaluate every N epochs (0: only at the end of training)
    num_threads: int = 0  # CPU intra-op threads (torch.set_num_threads); 0 = auto (uasan.train.configure_threads)

    def __post_init__(self) -> None:
        check_min(self, "log_every", 1, "train")
        check_min(self, "eval_every_epoch", 0, "train")
        check_min(self, "num_threads", 0, "train")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ValueError(f"train.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class InferConfig:
    """Inference: per-segment scoring and video-level association (DESIGN §5), RePro's protocol by default.

    Per segment: each pair (no background member) keeps its ``pred_topk`` highest-scored predicates; each candidate
    (pair, predicate) gets the triplet score ``triplet_score`` of its subject, predicate and object scores; the
    ``topk_per_segment`` best candidates are kept, then those whose subject and object share no frame are dropped
    (RePro ``EvalFmtCvtor.to_eval_json_format``: top-k first). Per video, VidVRD-II's greedy association (linkage
    ``association_linkage``, NMS ``association_nms`` (1.0 = none), ``topk_per_segment`` in, ``association_topk``
    out). RePro's VidVRD stage-2 config: 10 / 200 / 0.5 / 1.0 / 200.

    The triplet score is ``product`` (p · s · o, as UASAN's released ``tools/eval_relation_cls.py``) by default:
    the association sums a chain's segment scores, and with ``mean`` ((p + s + o) / 3, RePro's
    ``tools/eval_relation_cls.py``) a wrong triplet between two confident objects still scores ≥ 2/3 per segment,
    so long chains of it outrank short true relations and the metric stops being monotone in the scores' quality:
    oracle scores reach 97 novel PredCls R@50 with ``product`` and 12 with ``mean`` (``python -m uasan.ceilings``).
    """

    pred_topk: int = 10  # predicates kept per pair (RePro eval_cfg.pred_topk)
    topk_per_segment: int = 200  # RePro eval_cfg.return_triplets_topk = association inference_topk
    triplet_score: Literal["product", "mean"] = "product"  # UASAN's released eval; RePro's: mean (not monotone)
    association_topk: int = 200
    association_linkage: float = 0.5  # RePro 0.5; UASAN's released config 0.8
    association_nms: float = 1.0  # 1.0 = no NMS (RePro); UASAN's released config 0.8

    def __post_init__(self) -> None:
        check_min(self, "pred_topk", 1, "infer")
        check_min(self, "topk_per_segment", 1, "infer")
        check_min(self, "association_topk", 1, "infer")
        if not 0.0 <= self.association_linkage < 1.0:
            raise ValueError(f"infer.association_linkage: expected in [0, 1), got {self.association_linkage}")
        if not 0.0 < self.association_nms <= 1.0:
            raise ValueError(f"infer.association_nms: expected in (0, 1] (1 = no NMS), got {self.association_nms}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a UASAN training run needs. Load with ``load_config(TrainConfig, "synth", overrides)``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    infer: InferConfig = field(default_factory=InferConfig)


def resolve_config_path(path_or_name: str | Path) -> Path:
    """A built-in config name (``"synth"``) → its packaged YAML; anything else is taken as a file path."""
    text = str(path_or_name)
    if text in BUILTIN_CONFIGS:
        return Path(str(resources.files("uasan") / "configs" / f"{text}.yaml"))
    path = Path(text).expanduser()
    if not path.is_file():
        hint = f"; built-in names are {', '.join(BUILTIN_CONFIGS)}" if "/" not in text and "." not in text else ""
        raise FileNotFoundError(f"config {text!r}: no such file{hint}")
    return path


def load_config(cls: type[T], path_or_name: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """:func:`uasan.engine.config.load_config` with the built-in names: ``"synth"``, ``"vidvrd"``, ``"vidor"`` are
    the packaged YAML files (:func:`resolve_config_path`); ``None`` starts from the dataclass defaults."""
    path = None if path_or_name is None else resolve_config_path(path_or_name)
    return load_yaml_config(cls, path, overrides)
