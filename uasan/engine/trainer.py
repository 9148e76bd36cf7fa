"""The training loop: one ``run_step`` and hooks for everything else (detectron2's SimpleTrainer + HookBase).

    model = wrap_ddp(MyModel().to(device))
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    loader = build_dataloader(dataset, batch_size=8, seed=0, collate_fn=collate)
    scheduler = warmup_cosine_schedule(optimizer, warmup_steps=20, total_steps=epochs * len(loader))

    def loss_fn(model, batch) -> dict[str, Tensor]:     # every value is a scalar; their sum is the loss
        out = model(batch)
        return {"traj": out.loss_traj, "union": out.loss_union}

    trainer = Trainer(model, optimizer, loader, loss_fn, max_epochs=epochs, scheduler=scheduler, out_dir="runs/x",
                      hooks=default_hooks(eval_fn=evaluate, items_fn=lambda b: b.num_pairs, items_name="pairs"))
    trainer.resume("runs/x", missing_ok=True)   # continue a killed run from its last epoch checkpoint, if any
    trainer.train()

The learning-rate scheduler is stepped inside ``run_step`` after every optimizer step (a per-step schedule such as
warm-up + cosine); it is saved and restored with the rest of the state. Hooks run in ascending ``priority`` (ties:
registration order): user hooks (50) < LoggingHook (55) < EvalHook (60) < CheckpointHook (80) < PlotHook (90), so
the epoch checkpoint is written after the epoch's log records and evaluation, and the plot comes last.

Exact resume: a checkpoint is taken at an epoch boundary and holds the model, optimizer, scheduler, counters, hook
states and the global RNG states of every process; the data order is a function of (seed, epoch) when the loader
comes from ``build_dataloader``. Resuming therefore replays the remaining epochs bit for bit on the CPU, and a killed
run loses at most the epoch in progress.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from uasan.engine import distributed as dist_utils
from uasan.engine.checkpoint import find_last_checkpoint, load_checkpoint
from uasan.engine.jsonl import append_jsonl
from uasan.engine.repro import get_rng_state, set_rng_state, to_device

__all__ = ["Trainer", "HookBase", "LossFn", "build_optimizer", "warmup_cosine_schedule"]

LossFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
"""``loss_fn(model, batch) -> {name: scalar tensor}``; the trainer back-propagates the sum of the values."""

CHECKPOINT_FORMAT = 1


class HookBase:
    """Base class of trainer hooks; every method is a no-op (the hooks themselves are in ``uasan.engine.hooks``).

    ``self.trainer`` is set on registration to a ``weakref.proxy`` of the ``Trainer``: a trainer holds its hooks, and
    a hook's back reference must not keep the trainer (its model, optimizer and data loader) alive.
    """

    priority: int = 50
    trainer: Trainer

    def before_train(self) -> None:
        """Once, before the first epoch (also of a resumed run)."""

    def after_train(self) -> None:
        """Once at the end, also after a failure (``trainer.completed`` tells which)."""

    def before_epoch(self) -> None:
        """Before each epoch's first step; ``trainer.epoch`` is set."""

    def after_epoch(self) -> None:
        """After each epoch's last step; ``trainer.epochs_done == trainer.epoch + 1``."""

    def before_step(self) -> None:
        """Before each ``run_step``."""

    def after_step(self) -> None:
        """After each ``run_step``; ``trainer.losses`` / ``trainer.batch`` hold this step's values."""

    def state_dict(self) -> dict[str, Any]:
        """State saved in each checkpoint."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back ``state_dict()`` on resume."""


class Trainer:
    """Epoch-based training with a single ``run_step`` and hooks.

    Args:
        model: the module to train, already on its device (and wrapped by ``wrap_ddp`` under torchrun).
        optimizer: its optimizer.
        data_loader: yields batches; for exact resume, one from ``build_dataloader`` (any loader works otherwise).
            Its ``set_epoch(epoch)`` (or its sampler's) is called before each epoch.
        loss_fn: ``loss_fn(model, batch) -> dict[str, Tensor]`` of scalar losses; their sum is minimised.
        max_epochs: epochs to train in total (a resumed run continues up to it).
        scheduler: a learning-rate scheduler stepped after every optimizer step (optional).
        hooks: ``HookBase`` instances; see ``uasan.engine.hooks.default_hooks``.
        grad_clip: clip the global gradient L2 norm to this value (None: no clipping).
        amp_bf16: bf16 autocast for the forward pass; only ever enabled when the device is CUDA.
        out_dir: run folder for ``log.jsonl``, ``last.pt`` and ``curves.png`` (None: nothing is written).
        steps_per_epoch: optimizer steps per epoch; default ``len(data_loader)``.
        device: where batches go; default the device of the model's first parameter.
        save_frozen: keep the frozen parameters (``requires_grad=False``) in checkpoints. With False a checkpoint
            holds only their names and a fingerprint (BLAKE2b of their bytes), and ``resume`` checks that the model
            it loads into already holds the same frozen values (e.g. loaded from where they came from before): a
            frozen pretrained part is often most of a model and never changes during training.

    State visible to hooks: ``epoch`` (0-based, current), ``epochs_done``, ``start_epoch``, ``step`` (optimizer steps
    completed: in ``after_step`` it includes the step just taken), ``inner_step`` (index within the epoch),
    ``batch``, ``losses`` (detached float32 scalars), ``loss``, ``grad_norm`` (when clipping), ``metrics`` (latest
    evaluation), ``completed`` (True in ``after_train`` after a normal finish).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        data_loader: Iterable[Any],
        loss_fn: LossFn,
        *,
        max_epochs: int,
        scheduler: Any | None = None,
        hooks: Iterable[HookBase] = (),
        grad_clip: float | None = None,
        amp_bf16: bool = False,
        out_dir: str | os.PathLike[str] | None = None,
        steps_per_epoch: int | None = None,
        device: torch.device | str | None = None,
        save_frozen: bool = True,
    ) -> None:
        if max_epochs < 0:
            raise ValueError(f"max_epochs: expected >= 0, got {max_epochs}")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip: expected > 0 or None, got {grad_clip}")
        if steps_per_epoch is None:
            try:
                steps_per_epoch = len(data_loader)  # type: ignore[arg-type]
            except TypeError:
                raise ValueError("steps_per_epoch: required when the data loader has no len()") from None
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch: expected >= 1, got {steps_per_epoch} (is the data set empty?)")
        self.model = model
        self.optimizer = optimizer
        self.data_loader = data_loader
        self.loss_fn = loss_fn
        self.scheduler = scheduler
        self.max_epochs = int(max_epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.grad_clip = grad_clip
        self.save_frozen = save_frozen
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if device is None:
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.use_amp = bool(amp_bf16) and self.device.type == "cuda"

        self.epoch = 0
        self.start_epoch = 0
        self.epochs_done = 0
        self.step = 0
        self.inner_step = 0
        self.batch: Any = None
        self.losses: dict[str, torch.Tensor] = {}
        self.loss: torch.Tensor | None = None
        self.grad_norm: torch.Tensor | None = None
        self.metrics: dict[str, float] = {}
        self.completed = False
        self.extra_state: dict[str, Any] = {}  # saved with each checkpoint: e.g. the stage or the config as a dict
        self._data_iter: Iterator[Any] | None = None
        self._pending_rng: dict[str, Any] | None = None

        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)

    # ---------------------------------------------------------------------------------------------------- hooks

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        """Add hooks; all hooks are kept sorted by ``priority`` (stable: equal priorities keep registration order)."""
        for h in hooks:
            if not isinstance(h, HookBase):
                raise TypeError(f"hooks: expected HookBase instances, got {type(h).__name__}")
            h.trainer = weakref.proxy(self)
            self.hooks.append(h)
        self.hooks.sort(key=lambda h: h.priority)

    def _call(self, event: str) -> None:
        for h in self.hooks:
            getattr(h, event)()

    def _hook_keys(self) -> list[tuple[str, HookBase]]:
        """Stable checkpoint keys: the class name, with ``#n`` for the n-th repeat of a class."""
        seen: dict[str, int] = {}
        out = []
        for h in self.hooks:
            name = type(h).__name__
            n = seen.get(name, 0)
            seen[name] = n + 1
            out.append((name if n == 0 else f"{name}#{n}", h))
        return out

    # ----------------------------------------------------------------------------------------------------- loop

    def train(self) -> None:
        """Train from ``start_epoch`` to ``max_epochs``. ``after_train`` hooks run also when training fails (with
        ``completed`` False); the failure is then re-raised."""
        self.completed = False
        self._call("before_train")
        try:
            if self._pending_rng is not None:
                # Restored here, after every setup step that might have drawn random numbers (model init,
                # before_train hooks), so the next epoch sees exactly the RNG state the checkpoint captured.
                set_rng_state(self._pending_rng)
                self._pending_rng = None
            for epoch in range(self.start_epoch, self.max_epochs):
                self.epoch = epoch
                self._set_loader_epoch(epoch)
                self._data_iter = iter(self.data_loader)
                self.model.train()
                self._call("before_epoch")
                for inner_step in range(self.steps_per_epoch):
                    self.inner_step = inner_step
                    self._call("before_step")
                    self.run_step()
                    self._call("after_step")
                self._data_iter = None  # let worker processes go before evaluation and checkpointing
                self.epochs_done = self.epoch + 1
                self._call("after_epoch")
        except BaseException:
            # Shut DataLoader workers down now rather than whenever the garbage collector reaches this trainer.
            self._data_iter = None
            for h in self.hooks:  # clean up (close bars, plot what there is) without hiding the original error
                try:
                    h.after_train()
                except Exception as e:
                    warnings.warn(f"{type(h).__name__}.after_train failed after a training error: {e}", stacklevel=2)
            raise
        self.completed = True
        self._call("after_train")

    def run_step(self) -> None:
        """One optimizer step: next batch → forward (``loss_fn``) → backward → clip → optimizer and scheduler step."""
        assert self._data_iter is not None, "run_step is called by train()"
        self.batch = None  # drop the previous batch before loading the next one
        try:
            batch = next(self._data_iter)
        except StopIteration:
            raise RuntimeError(
                f"the data loader ran out after {self.inner_step} batches in epoch {self.epoch}, "
                f"but steps_per_epoch is {self.steps_per_epoch}"
            ) from None
        batch = to_device(batch, self.device, non_blocking=self.device.type == "cuda")

        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.use_amp):
            losses = self.loss_fn(self.model, batch)
        if not isinstance(losses, Mapping) or not losses:
            raise TypeError(f"loss_fn must return a non-empty dict of scalar tensors, got {type(losses).__name__}")
        # Sum in float32: under autocast individual losses may come back in bf16.
        loss = sum(v.float() for v in losses.values())
        loss.backward()
        if self.grad_clip is not None:
            self.grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1

        self.batch = batch
        self.losses = {k: v.detach().float() for k, v in losses.items()}
        self.loss = loss.detach()

    def _set_loader_epoch(self, epoch: int) -> None:
        loader = self.data_loader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
            return
        sampler = getattr(loader, "batch_sampler", None)
        sampler = getattr(sampler, "sampler", None) or getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    # ------------------------------------------------------------------------------------------------ logging

    @property
    def log_path(self) -> Path | None:
        """``out_dir/log.jsonl`` (None without an ``out_dir``)."""
        return self.out_dir / "log.jsonl" if self.out_dir is not None else None

    def write_log(self, record: Mapping[str, Any]) -> None:
        """Append one JSON record to ``log.jsonl`` (main process only; tensors become floats)."""
        if self.log_path is not None and dist_utils.is_main_process():
            append_jsonl(self.log_path, record)

    # ------------------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of the run at an epoch boundary (see ``uasan.engine.checkpoint``).

        Collective under DDP (the RNG states of all processes are gathered): call it on every process.
        """
        rng = get_rng_state()
        model = dist_utils.unwrap_model(self.model)
        model_state = model.state_dict()
        frozen = None
        if not self.save_frozen:
            names = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
            model_state = {k: v for k, v in model_state.items() if k not in set(names)}
            frozen = {"names": names, "blake2b": _fingerprint(model, names)}
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model_state,
            "frozen": frozen,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epochs_done,
            "step": self.step,
            "sampler_epoch": self.epochs_done,  # the next epoch the sampler is set to
            "world_size": dist_utils.get_world_size(),
            "rng": rng,
            "rng_per_rank": dist_utils.all_gather_object(rng),
            "metrics": dict(self.metrics),
            "hooks": {key: h.state_dict() for key, h in self._hook_keys()},
            "extra": dict(self.extra_state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict()``; training then continues with epoch ``state["epoch"]``."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint: format {state.get('format')!r} is not {CHECKPOINT_FORMAT}")
        model = dist_utils.unwrap_model(self.model)
        frozen = state.get("frozen")
        if frozen is None:
            model.load_state_dict(state["model"])
        else:
            missing, unexpected = model.load_state_dict(state["model"], strict=False)
            extra = sorted(set(missing) - set(frozen["names"]))
            if unexpected or extra:
                raise ValueError(
                    f"checkpoint: model keys do not match (missing {extra[:3]}, unexpected {unexpected[:3]})"
                )
            if _fingerprint(model, frozen["names"]) != frozen["blake2b"]:
                raise ValueError(
                    "checkpoint: the model's frozen parameters differ from the ones this checkpoint was trained with "
                    "(it keeps only their fingerprint); load the same frozen weights before resuming"
                )
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            if state.get("scheduler") is None:
                raise ValueError("checkpoint: has no scheduler state but the trainer has a scheduler")
            self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = self.epochs_done = self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.metrics = dict(state.get("metrics", {}))
        self.extra_state = dict(state.get("extra", {}))
        hook_states = state.get("hooks", {})
        for key, h in self._hook_keys():
            if key in hook_states:
                h.load_state_dict(hook_states[key])
        per_rank = state.get("rng_per_rank")
        rank = dist_utils.get_rank()
        same_layout = per_rank is not None and state.get("world_size") == dist_utils.get_world_size()
        self._pending_rng = per_rank[rank] if same_layout else state["rng"]

    def resume(self, path: str | os.PathLike[str], *, missing_ok: bool = False, weights_only: bool = True) -> bool:
        """Load the checkpoint at ``path`` (a file, or a run folder → its ``last.pt``) so that ``train()`` continues
        exactly where it was taken. With ``missing_ok`` a run folder without a checkpoint is a fresh start (returns
        False). ``weights_only=False`` only for checkpoints you trust that hold arbitrary objects."""
        p = Path(path)
        if p.is_dir() or (missing_ok and not p.exists()):
            found = find_last_checkpoint(p)
            if found is None:
                if missing_ok:
                    return False
                raise FileNotFoundError(f"checkpoint: no last.pt in {str(p)!r}")
            p = found
        self.load_state_dict(load_checkpoint(p, weights_only=weights_only))
        return True


# ---------------------------------------------------------------------------------------------------------- helpers


def _fingerprint(model: nn.Module, names: list[str]) -> str:
    """BLAKE2b of the named parameters' names, dtypes, shapes and bytes (in the given order)."""
    params = dict(model.named_parameters())
    h = hashlib.blake2b(digest_size=16)
    for n in names:
        if n not in params:
            return f"<no parameter {n}>"
        t = params[n].detach().cpu().contiguous()
        h.update(f"{n}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    return h.hexdigest()


def build_optimizer(
    model: nn.Module | Iterable[nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of a module (or of a parameter list: one stage's part of a model);
    weight decay only on matrices (≥ 2-d), not on biases, norms, scalars such as τ, or embeddings' 1-d vectors
    (nanoGPT's grouping)."""
    params = [p for p in (model.parameters() if isinstance(model, nn.Module) else model) if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


def warmup_cosine_schedule(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Linear warm-up from ~0 to the base lr over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` × base lr at
    ``total_steps`` (constant after). Step it once per optimizer step (the Trainer does)."""
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"warmup_cosine_schedule: bad warmup_steps={warmup_steps} / total_steps={total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
