"""Generic training engine: config machinery (frozen dataclasses + YAML + ``key.sub=value`` overrides), a trainer
with one ``run_step`` and hooks (logging, evaluation, atomic checkpoints, curves), exact resume, and DDP helpers.

The engine knows nothing about UASAN: a model plugs in through ``loss_fn(model, batch) -> dict[str, Tensor]`` and an
``eval_fn(model) -> dict[str, float]``.
"""

from uasan.engine.checkpoint import CHECKPOINT_NAME, find_last_checkpoint, load_checkpoint, save_checkpoint
from uasan.engine.config import apply_overrides, dump_config, from_dict, load_config, to_dict
from uasan.engine.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    reduce_dict,
    unwrap_model,
    wrap_ddp,
)
from uasan.engine.hooks import CheckpointHook, EvalHook, LoggingHook, PlotHook, default_hooks, plot_curves
from uasan.engine.jsonl import read_jsonl
from uasan.engine.repro import EpochLoader, build_dataloader, resolve_device, seed_everything, to_device
from uasan.engine.trainer import HookBase, LossFn, Trainer, build_optimizer, warmup_cosine_schedule
from uasan.files import check_min

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointHook",
    "DistInfo",
    "EpochLoader",
    "EvalHook",
    "HookBase",
    "LoggingHook",
    "LossFn",
    "PlotHook",
    "Trainer",
    "apply_overrides",
    "check_min",
    "barrier",
    "build_dataloader",
    "build_optimizer",
    "cleanup_distributed",
    "default_hooks",
    "dump_config",
    "find_last_checkpoint",
    "from_dict",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "load_checkpoint",
    "load_config",
    "plot_curves",
    "read_jsonl",
    "reduce_dict",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "to_dict",
    "to_device",
    "unwrap_model",
    "warmup_cosine_schedule",
    "wrap_ddp",
]
