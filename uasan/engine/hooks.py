"""Trainer hooks: everything around ``run_step`` (logging, evaluation, checkpoints, plots).

A hook subclasses ``HookBase`` (defined beside the ``Trainer`` in ``uasan.engine.trainer``; this module imports it,
never the reverse) and overrides any of ``before_train, before_epoch, before_step, after_step, after_epoch,
after_train``; ``self.trainer`` is a weak proxy of the ``Trainer`` (set on registration). Hooks run in ascending
``priority``, ties in registration order. A hook with state that must survive a resume returns it from
``state_dict()`` (plain values / tensors) and takes it back in ``load_state_dict``.

``log.jsonl`` records (one JSON object per line, written by the main process):

    {"type": "step",  "epoch": e, "step": s, "loss": total, "losses": {name: v}, "lr": lr, "grad_norm": g,
     "items_per_s": r, "items": "pairs"}                        every ``log_every`` steps and at the end of an epoch
    {"type": "epoch", "epoch": e, "step": s, "loss": mean, "losses": {...}, "time_s": t, "items_per_s": r}
    {"type": "eval",  "epoch": e, "step": s, "metrics": {name: v}}

Losses in records are means over the steps since the previous record and over all processes.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from uasan import _console
from uasan.engine import distributed as dist_utils
from uasan.engine.checkpoint import CHECKPOINT_NAME, save_checkpoint
from uasan.engine.jsonl import append_jsonl, read_jsonl
from uasan.engine.trainer import HookBase
from uasan.files import atomic_write, atomic_write_text

# HookBase, append_jsonl and read_jsonl are re-exported: they were defined here before.
__all__ = [
    "HookBase",
    "LoggingHook",
    "EvalHook",
    "CheckpointHook",
    "PlotHook",
    "default_hooks",
    "append_jsonl",
    "read_jsonl",
    "plot_curves",
]


# ----------------------------------------------------------------------------------------------------------- hooks


class LoggingHook(HookBase):
    """Progress bar (tqdm, main process) with loss and throughput, and step / epoch records in ``log.jsonl``.

    Args:
        log_every: optimizer steps between step records (also one at each epoch's end).
        items_fn: ``items_fn(batch) -> number`` of work items in a batch (e.g. ``lambda b: b.num_pairs``) for the
            throughput; default: 1 per batch.
        items_name: the unit shown, e.g. ``"pairs"`` → ``pairs/s``.
        progress: show the progress (main process only): a tqdm bar on a terminal, else a plain line every
            ``uasan._console.PLAIN_INTERVAL_S`` seconds; and one line per epoch.
        name: what the lines and the bar name before "epoch", e.g. ``"stage 1"`` → ``stage 1 epoch 2/8``.

    Under DDP every process must run this hook: the losses are averaged over processes (one all-reduce per record).
    On a resumed run the log is cut back to the records of the epochs the checkpoint covers.
    """

    priority = 55

    def __init__(
        self,
        log_every: int = 50,
        items_fn: Callable[[Any], float | int | torch.Tensor] | None = None,
        items_name: str = "batches",
        progress: bool = True,
        name: str = "",
    ) -> None:
        if log_every < 1:
            raise ValueError(f"log_every: expected >= 1, got {log_every}")
        self.log_every = log_every
        self.items_fn = items_fn
        self.items_name = items_name
        self.progress = progress
        self.name = name
        self._bar: Any = None
        self._plain_t0: float | None = None  # without a terminal: when the last plain progress line was printed
        self._last_loss: float | None = None

    def _epoch_label(self) -> str:
        t = self.trainer
        return f"{self.name + ' ' if self.name else ''}epoch {t.epoch + 1}/{t.max_epochs}"

    def before_train(self) -> None:
        t = self.trainer
        path = t.log_path
        if path is None or not dist_utils.is_main_process():
            return
        if t.start_epoch > 0 and path.exists():
            # Records from the epoch that was in progress when the run died would repeat after the resume.
            kept = [r for r in read_jsonl(path) if int(r.get("epoch", 0)) < t.start_epoch]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        elif t.start_epoch == 0 and path.exists():
            atomic_write_text(path, "")  # a fresh run in an old folder starts a fresh log

    def before_epoch(self) -> None:
        self._interval: dict[str, torch.Tensor] = {}
        self._epoch_sum: dict[str, torch.Tensor] = {}
        self._interval_steps = 0
        self._epoch_steps = 0
        self._interval_items = 0.0
        self._epoch_items = 0.0
        now = time.perf_counter()
        self._interval_t0 = self._epoch_t0 = now
        t = self.trainer
        if self.progress and dist_utils.is_main_process():
            if _console.is_terminal():
                from tqdm.auto import tqdm

                self._bar = tqdm(total=t.steps_per_epoch, desc=self._epoch_label(), leave=False, dynamic_ncols=True)
            else:  # plain lines (a log file): see after_step
                self._plain_t0 = now

    def after_step(self) -> None:
        t = self.trainer
        for k, v in t.losses.items():
            # Sums stay on the device: no host sync per step, only when a record is written.
            self._interval[k] = self._interval[k] + v if k in self._interval else v.clone()
        self._interval_steps += 1
        n = self.items_fn(t.batch) if self.items_fn is not None else 1
        self._interval_items += float(n)
        if self._bar is not None:
            self._bar.update(1)
        if t.step % self.log_every == 0 or t.inner_step == t.steps_per_epoch - 1:
            self._write_step_record()
        if self._plain_t0 is not None:
            now = time.perf_counter()
            if now - self._plain_t0 >= _console.PLAIN_INTERVAL_S:
                self._plain_t0 = now
                loss = f", loss {self._last_loss:.4f}" if self._last_loss is not None else ""
                _console.say(f"{self._epoch_label()}: step {t.inner_step + 1}/{t.steps_per_epoch}{loss}, "
                    f"{now - self._epoch_t0:.0f} s")  # fmt: skip

    def _write_step_record(self) -> None:
        t = self.trainer
        elapsed = time.perf_counter() - self._interval_t0
        sums = dict(self._interval)
        sums["__steps"] = torch.tensor(float(self._interval_steps), device=t.device)
        sums["__items"] = torch.tensor(self._interval_items, device=t.device)
        if t.grad_norm is not None:
            sums["__grad_norm"] = t.grad_norm.detach().float()
        # One all-reduce for everything in the record: losses, step and item counts, gradient norm.
        reduced = {k: v.item() for k, v in dist_utils.reduce_dict(sums, average=False).items()}
        steps, items = reduced.pop("__steps"), reduced.pop("__items")
        grad_norm = reduced.pop("__grad_norm", None)
        losses = {k: v / steps for k, v in reduced.items()}
        total = sum(losses.values())
        if not math.isfinite(total):
            raise FloatingPointError(f"non-finite loss at step {t.step} (epoch {t.epoch}): {losses}")
        for k, v in self._interval.items():
            self._epoch_sum[k] = self._epoch_sum[k] + v if k in self._epoch_sum else v.clone()
        self._epoch_steps += self._interval_steps
        self._epoch_items += items
        rate = items / elapsed if elapsed > 0 else float("nan")
        record: dict[str, Any] = {"type": "step", "epoch": t.epoch, "step": t.step, "loss": total, "losses": losses}
        record["lr"] = t.optimizer.param_groups[0]["lr"]
        if grad_norm is not None:
            record["grad_norm"] = grad_norm / dist_utils.get_world_size()  # the last step's norm, mean over processes
        record["items_per_s"] = rate
        record["items"] = self.items_name
        t.write_log(record)
        self._last_loss = total
        if self._bar is not None:
            self._bar.set_postfix({"loss": f"{total:.4f}", f"{self.items_name}/s": f"{rate:.1f}"}, refresh=False)
        self._interval = {}
        self._interval_steps = 0
        self._interval_items = 0.0
        self._interval_t0 = time.perf_counter()

    def after_epoch(self) -> None:
        t = self.trainer
        if self._interval_steps:  # only when steps_per_epoch changed under us; normally flushed at the last step
            self._write_step_record()
        elapsed = time.perf_counter() - self._epoch_t0
        reduced = {k: v.item() for k, v in dist_utils.reduce_dict(self._epoch_sum, average=True).items()}
        losses = {k: v / max(1, self._epoch_steps) for k, v in reduced.items()}
        t.write_log(
            {
                "type": "epoch",
                "epoch": t.epoch,
                "step": t.step,
                "loss": sum(losses.values()),
                "losses": losses,
                "time_s": elapsed,
                "items_per_s": self._epoch_items / elapsed if elapsed > 0 else float("nan"),
                "items": self.items_name,
            }
        )
        self._close_bar()
        if dist_utils.is_main_process() and self.progress:
            # One persistent line per epoch (the bar itself is transient).
            from tqdm.auto import tqdm

            rate = self._epoch_items / elapsed if elapsed > 0 else float("nan")
            tqdm.write(
                f"{self._epoch_label()}: loss {sum(losses.values()):.4f} "
                f"({', '.join(f'{k} {v:.4f}' for k, v in losses.items())}), "
                f"{rate:.1f} {self.items_name}/s, {elapsed:.1f}s"
            )

    def after_train(self) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        self._plain_t0 = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EvalHook(HookBase):
    """Call ``eval_fn(model) -> {metric: number}`` every ``every`` epochs and at the end; log the metrics.

    The model is the unwrapped module (no DDP), in ``eval()`` mode under ``torch.no_grad()``; training mode is
    restored afterwards. With ``main_only`` (default) only the main process evaluates and the others wait at a
    barrier. The latest metrics are in ``trainer.metrics`` and are saved in the checkpoint.
    """

    priority = 60

    def __init__(
        self,
        eval_fn: Callable[[torch.nn.Module], Mapping[str, float]],
        every: int = 1,
        at_end: bool = True,
        main_only: bool = True,
        name: str = "",
    ) -> None:
        if every < 0:
            raise ValueError(f"every: expected >= 0 (0: only at the end), got {every}")
        self.name = name  # named in the printed line, e.g. "stage 1"
        self.eval_fn = eval_fn
        self.every = every
        self.at_end = at_end
        self.main_only = main_only
        self.last_evaluated = -1  # epochs_done at the last evaluation

    def after_epoch(self) -> None:
        t = self.trainer
        if self.every > 0 and t.epochs_done % self.every == 0:
            self._evaluate()

    def after_train(self) -> None:
        t = self.trainer
        if t.completed and self.at_end and t.epochs_done > 0 and self.last_evaluated != t.epochs_done:
            self._evaluate()

    def _evaluate(self) -> None:
        t = self.trainer
        model = dist_utils.unwrap_model(t.model)
        metrics: dict[str, float] = {}
        if dist_utils.is_main_process() or not self.main_only:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    result = self.eval_fn(model)
            finally:
                model.train(was_training)
            metrics = {str(k): float(v) for k, v in (result or {}).items()}
        dist_utils.barrier()
        self.last_evaluated = t.epochs_done
        t.metrics = metrics
        t.write_log({"type": "eval", "epoch": t.epochs_done - 1, "step": t.step, "metrics": metrics})
        if metrics and dist_utils.is_main_process():
            from tqdm.auto import tqdm

            who = f"{self.name} " if self.name else ""
            tqdm.write(
                f"{who}eval after epoch {t.epochs_done}/{t.max_epochs}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            )

    def state_dict(self) -> dict[str, Any]:
        return {"last_evaluated": self.last_evaluated}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_evaluated = int(state.get("last_evaluated", -1))


class CheckpointHook(HookBase):
    """After every epoch, write ``out_dir/last.pt`` atomically (main process). ``keep_every=k > 0`` also keeps a
    copy ``epoch_XXXX.pt`` every k epochs. Under DDP every process must run it (the RNG states are gathered)."""

    priority = 80

    def __init__(self, keep_every: int = 0) -> None:
        if keep_every < 0:
            raise ValueError(f"keep_every: expected >= 0, got {keep_every}")
        self.keep_every = keep_every

    def before_train(self) -> None:
        if self.trainer.out_dir is None:
            raise ValueError("CheckpointHook: the trainer has no out_dir")

    def after_epoch(self) -> None:
        t = self.trainer
        state = t.state_dict()  # collective under DDP
        if not dist_utils.is_main_process():
            return
        assert t.out_dir is not None
        path = save_checkpoint(state, t.out_dir / CHECKPOINT_NAME)
        if self.keep_every and t.epochs_done % self.keep_every == 0:
            with path.open("rb") as src:
                atomic_write(t.out_dir / f"epoch_{t.epochs_done:04d}.pt", lambda f: f.write(src.read()))


class PlotHook(HookBase):
    """At the end of training, ``out_dir/curves.png`` from ``log.jsonl``: training loss(es) over steps and the
    validation metrics over epochs (main process; needs matplotlib, else a warning and no plot)."""

    priority = 90

    def __init__(self, filename: str = "curves.png", every_epoch: bool = False) -> None:
        self.filename = filename
        self.every_epoch = every_epoch

    def before_train(self) -> None:
        if self.trainer.out_dir is None:
            raise ValueError("PlotHook: the trainer has no out_dir")

    def after_epoch(self) -> None:
        if self.every_epoch:
            self._plot()

    def after_train(self) -> None:
        self._plot()

    def _plot(self) -> None:
        t = self.trainer
        if not dist_utils.is_main_process() or t.log_path is None or t.out_dir is None:
            return
        try:
            plot_curves(t.log_path, t.out_dir / self.filename)
        except ImportError as e:
            warnings.warn(f"PlotHook: no plot ({e}); install matplotlib", stacklevel=2)


def plot_curves(log_path: str | os.PathLike[str], out_path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Plot a ``log.jsonl``: left, the training loss (total and each term) per step with epoch means; right, each
    evaluation metric per epoch. Written atomically as PNG. Uses matplotlib's Agg canvas without touching pyplot's
    global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_jsonl(log_path)
    steps = [r for r in records if r.get("type") == "step"]
    epochs = [r for r in records if r.get("type") == "epoch"]
    evals = [r for r in records if r.get("type") == "eval"]

    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.subplots(1, 2)

    if steps:
        x = [r["step"] for r in steps]
        ax_loss.plot(x, [_num(r.get("loss")) for r in steps], label="loss", color="black", linewidth=1.5)
        names = sorted({k for r in steps for k in r.get("losses", {})})
        if len(names) > 1:  # with one term the term is the total
            for k in names:
                ax_loss.plot(x, [_num(r.get("losses", {}).get(k)) for r in steps], label=k, linewidth=1, alpha=0.8)
    if epochs:
        ax_loss.plot(
            [r["step"] for r in epochs], [_num(r.get("loss")) for r in epochs], "o", color="black", label="epoch mean"
        )
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("training loss")
    if steps or epochs:
        ax_loss.legend(fontsize=8)
        ax_loss.grid(alpha=0.3)
    else:
        ax_loss.text(0.5, 0.5, "no training records", ha="center", va="center", transform=ax_loss.transAxes)

    names = sorted({k for r in evals for k in r.get("metrics", {})})
    if names:
        for k in names:
            pts = [(r["epoch"] + 1, _num(r["metrics"][k])) for r in evals if k in r.get("metrics", {})]
            ax_val.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=k)
        ax_val.set_xlabel("epoch")
        ax_val.legend(fontsize=8)
        ax_val.grid(alpha=0.3)
    else:
        ax_val.text(0.5, 0.5, "no validation metrics", ha="center", va="center", transform=ax_val.transAxes)
    ax_val.set_title("validation")
    if title:
        fig.suptitle(title)
    return atomic_write(out_path, lambda f: fig.savefig(f, format="png", dpi=110))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def default_hooks(
    *,
    eval_fn: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
    eval_every: int = 1,
    log_every: int = 50,
    items_fn: Callable[[Any], float | int | torch.Tensor] | None = None,
    items_name: str = "batches",
    progress: bool = True,
    checkpoint: bool = True,
    plot: bool = True,
    name: str = "",
) -> list[HookBase]:
    """The standard set, in run order: LoggingHook, EvalHook (if ``eval_fn``), CheckpointHook, PlotHook. ``name``
    (e.g. ``"stage 1"``) is printed before "epoch" and "eval" in the console lines."""
    hooks: list[HookBase] = []
    if eval_fn is not None:
        hooks.append(EvalHook(eval_fn, every=eval_every, name=name))
    hooks.append(
        LoggingHook(log_every=log_every, items_fn=items_fn, items_name=items_name, progress=progress, name=name)
    )
    if checkpoint:
        hooks.append(CheckpointHook())
    if plot:
        hooks.append(PlotHook())
    return hooks
