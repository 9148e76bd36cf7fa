"""Configuration: frozen dataclasses loaded from YAML, with ``key.sub=value`` overrides.

The machinery is generic (any tree of frozen dataclasses) and strict: an unknown key, a value of the wrong type or a
value outside a ``Literal`` raises ``ValueError`` naming the dotted key and where it came from (the YAML file or the
override), so a typo never silently falls back to a default.

    cfg = load_config(TrainConfig, "synth", ["optim.lr=3e-4", "model.variant=B"])
    cfg.optim.lr            # 0.0003 (float)
    dump_config(cfg, "runs/x/config.yaml")   # atomic; load_config(TrainConfig, "runs/x/config.yaml") gives it back

Override values are parsed with ``yaml.safe_load``, so ``3`` is an int, ``0.1`` a float, ``true`` a bool, ``[1, 2]`` a
list and ``null`` is None. Missing keys keep the dataclass defaults.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from uasan.engine._atomic import atomic_write_text

__all__ = [
    "TrainConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "LoopConfig",
    "InferConfig",
    "BUILTIN_CONFIGS",
    "load_config",
    "from_dict",
    "apply_overrides",
    "to_dict",
    "dump_config",
    "resolve_config_path",
]

T = TypeVar("T")

BUILTIN_CONFIGS = ("synth", "vidvrd", "vidor")

# PyYAML follows YAML 1.1, where "1e-3" (no dot) is a string, not a float. Float fields accept such strings
# when they spell a number, because that is what the user meant; anything else stays a type error.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


# --------------------------------------------------------------------------------------------------------------------
# The UASAN training configuration (defaults = the paper's settings; the packaged YAML files pick per data set)
# --------------------------------------------------------------------------------------------------------------------


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
        _check_min(self, "num_workers", 0, "data")
        _check_min(self, "batch_segments", 1, "data")
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
class ModelConfig:
    """UASAN architecture (DESIGN §6). Field names follow the paper's symbols."""

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
        for name in ("d", "L", "heads", "embed_dim"):
            _check_min(self, name, 1, "model")
        for name in ("L_mot", "L_rel", "lora_r"):
            _check_min(self, name, 0, "model")
        if self.bridge_layers is not None:
            _check_min(self, "bridge_layers", 1, "model")
        if self.d % self.heads:
            raise ValueError(f"model.d: expected a multiple of model.heads ({self.heads}), got {self.d}")
        if not self.tau_init > 0:
            raise ValueError(f"model.tau_init: expected > 0, got {self.tau_init}")
        if not self.lora_alpha > 0:
            raise ValueError(f"model.lora_alpha: expected > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"model.lora_dropout: expected a number in [0, 1), got {self.lora_dropout}")


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
            _check_min(self, name, 0, "optim")
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
            _check_min(self, name, 0, "pretrain")
        _check_min(self, "batch", 2, "pretrain")
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
        _check_min(self, "log_every", 1, "train")
        _check_min(self, "eval_every_epoch", 0, "train")
        _check_min(self, "num_threads", 0, "train")
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
    out). RePro's VidVRD stage-2 config: 10 / 200 / 0.5 / 1.0 / 200, triplet score ``mean``.
    """

    pred_topk: int = 10  # predicates kept per pair (RePro eval_cfg.pred_topk)
    topk_per_segment: int = 200  # RePro eval_cfg.return_triplets_topk = association inference_topk
    triplet_score: Literal["product", "mean"] = "mean"  # RePro's camera-ready: mean; UASAN's released eval: product
    association_topk: int = 200
    association_linkage: float = 0.5  # RePro 0.5; UASAN's released config 0.8
    association_nms: float = 1.0  # 1.0 = no NMS (RePro); UASAN's released config 0.8

    def __post_init__(self) -> None:
        _check_min(self, "pred_topk", 1, "infer")
        _check_min(self, "topk_per_segment", 1, "infer")
        _check_min(self, "association_topk", 1, "infer")
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


def _check_min(obj: Any, name: str, lo: int, section: str) -> None:
    value = getattr(obj, name)
    if value < lo:
        raise ValueError(f"{section}.{name}: expected >= {lo}, got {value}")


# --------------------------------------------------------------------------------------------------------------------
# Generic machinery
# --------------------------------------------------------------------------------------------------------------------


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
    """Build ``cls`` (a frozen dataclass) from a YAML file or built-in name, then apply ``key.sub=value`` overrides.

    ``path_or_name=None`` starts from the dataclass defaults. Raises ``ValueError`` naming the key and the file (or the
    override) on an unknown key, a wrong type or an invalid value, ``FileNotFoundError`` for a missing file.
    """
    if path_or_name is None:
        source, raw = "<defaults>", {}
    else:
        path = resolve_config_path(path_or_name)
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{source}: not valid YAML: {e}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    cfg = from_dict(cls, raw, source=source)
    # Overrides go one at a time on top of the validated file so that an error names the override that caused it.
    data = to_dict(cfg)
    for item in overrides:
        data = apply_overrides(data, [item])
        cfg = from_dict(cls, data, source=f"override {item!r} (on {source})")
    return cfg


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the nested dict ``data`` with each ``"a.b.c=value"`` applied (value parsed by ``yaml.safe_load``).

    Intermediate mappings are created when missing; whether the key exists is checked when the dict becomes a
    dataclass (``from_dict``), where the schema is known.
    """
    out = _deep_copy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"override {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ValueError(f"override {item!r}: value is not valid YAML: {e}") from None
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ValueError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "<dict>", prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a nested mapping, checking every key and value against the annotations."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: key '{prefix or '<root>'}': expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in names]
    if unknown:
        key = _join(prefix, str(unknown[0]))
        raise ValueError(f"{source}: unknown key '{key}' (known in '{prefix or '<root>'}': {', '.join(sorted(names))})")
    kwargs = {name: _convert(hints[name], data[name], source, _join(prefix, name)) for name in data}
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ checks name their key already; add the source
        raise ValueError(f"{source}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a dataclass tree (tuples become lists, so the result dumps as plain YAML)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"to_dict: expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(cfg)


def dump_config(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as YAML to ``path`` atomically; ``load_config(type(cfg), path)`` reads it back equal."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    return atomic_write_text(path, text)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    """``value`` checked (and, where lossless, converted) against the annotation ``tp``; ValueError names ``key``."""

    def fail() -> typing.NoReturn:
        raise ValueError(f"{source}: key '{key}': expected {_type_name(tp)}, got {_describe(value)}")

    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            fail()
        return from_dict(tp, value, source, key)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            fail()
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _convert(arm, value, source, key)
            except ValueError:
                continue
        fail()
    if origin is Literal:
        # `True == 1` in Python; compare types too so that `variant: 1` is not taken for a Literal[1] and vice versa.
        if any(value == a and type(value) is type(a) for a in args):
            return value
        fail()
    if tp is type(None):
        if value is None:
            return None
        fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                fail()
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_convert(a, v, source, f"{key}[{i}]") for i, (a, v) in pairs)
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            fail()
        k_tp, v_tp = args if args else (Any, Any)
        return {_convert(k_tp, k, source, key): _convert(v_tp, v, source, _join(key, str(k))) for k, v in value.items()}
    raise TypeError(f"config field '{key}': unsupported annotation {tp!r}")
