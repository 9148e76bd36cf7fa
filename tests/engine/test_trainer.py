"""Trainer on a toy regression: loss falls, hooks order, atomic checkpoints, exact resume, logs and curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from tests.common import needs_cuda
from uasan.engine import (
    CheckpointHook,
    EvalHook,
    HookBase,
    LoggingHook,
    PlotHook,
    Trainer,
    build_dataloader,
    build_optimizer,
    default_hooks,
    load_checkpoint,
    plot_curves,
    read_jsonl,
    seed_everything,
    warmup_cosine_schedule,
)


class ToyData(Dataset):
    """y = x·w + noise; ``augment`` adds numpy noise per item so DataLoader-worker seeding matters."""

    def __init__(self, n: int = 64, dim: int = 8, augment: bool = False) -> None:
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.randn(dim, 1, generator=g) / dim**0.5 + 0.05 * torch.randn(n, 1, generator=g)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        x = self.x[i]
        if self.augment:
            x = x + torch.from_numpy(np.random.normal(0, 0.01, x.shape).astype(np.float32))  # noqa: NPY002
        return {"x": x, "y": self.y[i]}


def make_model(dropout: float = 0.1) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 1))


def loss_fn(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    pred = model(batch["x"])
    return {"mse": nn.functional.mse_loss(pred, batch["y"]), "l1": 0.1 * (pred - batch["y"]).abs().mean()}


def evaluate(model: nn.Module) -> dict[str, float]:
    data = ToyData()
    assert not model.training and not torch.is_grad_enabled()
    return {"mse": nn.functional.mse_loss(model(data.x), data.y).item()}


def build(out_dir, *, epochs=4, hooks=(), seed=0, workers=0, augment=False, eval_fn=evaluate, init_seed=None):
    """A fresh run: ``init_seed`` differs from ``seed`` to show that resume overwrites the fresh initialisation."""
    seed_everything(seed if init_seed is None else init_seed)
    model = make_model()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.01)
    loader = build_dataloader(ToyData(augment=augment), batch_size=8, seed=seed, num_workers=workers)
    scheduler = warmup_cosine_schedule(optimizer, warmup_steps=4, total_steps=epochs * len(loader))
    all_hooks = [*default_hooks(eval_fn=eval_fn, log_every=3, progress=False), *hooks]
    trainer = Trainer(
        model, optimizer, loader, loss_fn, max_epochs=epochs, scheduler=scheduler, hooks=all_hooks, grad_clip=1.0,
        out_dir=out_dir, amp_bf16=True,
    )  # fmt: skip
    return trainer


class Kill(HookBase):
    """Simulates a killed run: raises in the middle of epoch ``epoch``."""

    def __init__(self, epoch: int, at_step: int = 3) -> None:
        self.epoch, self.at_step = epoch, at_step

    def after_step(self) -> None:
        if self.trainer.epoch == self.epoch and self.trainer.inner_step == self.at_step:
            raise KeyboardInterrupt


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_falls_and_files(tmp_path):
    seed_everything(0)
    trainer = build(tmp_path, epochs=4)
    assert not trainer.use_amp  # bf16 autocast is CUDA-only
    trainer.train()
    records = read_jsonl(tmp_path / "log.jsonl")
    epochs = [r for r in records if r["type"] == "epoch"]
    evals = [r for r in records if r["type"] == "eval"]
    steps = [r for r in records if r["type"] == "step"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2, 3]
    assert epochs[-1]["loss"] < 0.5 * epochs[0]["loss"]
    assert [r["epoch"] for r in evals] == [0, 1, 2, 3]  # every epoch, and not repeated at the end
    assert evals[-1]["metrics"]["mse"] < evals[0]["metrics"]["mse"]
    assert trainer.metrics == evals[-1]["metrics"]
    assert set(steps[0]["losses"]) == {"mse", "l1"} and steps[0]["items_per_s"] > 0 and "lr" in steps[0]
    assert steps[-1]["step"] == trainer.step == 32
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["epoch"] == 4 and ckpt["step"] == 32 and ckpt["sampler_epoch"] == 4
    assert {"python", "numpy", "torch"} <= ckpt["rng"].keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "last.pt", "log.jsonl"]


def test_hooks_called_in_order(tmp_path):
    calls: list[str] = []

    class Rec(HookBase):
        def __init__(self, name: str, priority: int) -> None:
            self.name, self.priority = name, priority

        def __getattribute__(self, attr):
            if attr in ("before_train", "after_train", "before_epoch", "after_epoch", "before_step", "after_step"):
                calls.append(f"{object.__getattribute__(self, 'name')}.{attr}")
            return object.__getattribute__(self, attr)

    late, early = Rec("late", 95), Rec("early", 10)
    model = make_model()
    loader = build_dataloader(ToyData(n=16), batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    Trainer(model, optimizer, loader, loss_fn, max_epochs=2, hooks=[late, early]).train()
    step = ["early.before_step", "late.before_step", "early.after_step", "late.after_step"]
    epoch = ["early.before_epoch", "late.before_epoch", *step, *step, "early.after_epoch", "late.after_epoch"]
    assert calls == ["early.before_train", "late.before_train", *epoch, *epoch, "early.after_train", "late.after_train"]
    # Built-in hooks sort as documented: logging, eval, checkpoint, plot.
    kinds = [type(h) for h in build(None, hooks=[late]).hooks]
    assert kinds == [LoggingHook, EvalHook, CheckpointHook, PlotHook, Rec]


def test_checkpoint_each_epoch_and_interrupted_write(tmp_path, monkeypatch):
    seen: list[int] = []
    real_save = torch.save

    class AfterCheckpoint(HookBase):
        priority = 85  # after CheckpointHook

        def after_epoch(self) -> None:
            seen.append(load_checkpoint(tmp_path / "last.pt")["epoch"])
            if self.trainer.epochs_done == 2:
                # From now on, torch.save writes half a file and dies: a crash in the middle of the write.
                def broken_save(obj, f, *args, **kwargs):
                    f.write(b"PK\x03\x04 half a checkpoint")
                    raise OSError("disk died mid-write")

                monkeypatch.setattr(torch, "save", broken_save)

    trainer = build(tmp_path, epochs=4, hooks=[AfterCheckpoint()])
    with pytest.raises(OSError, match="mid-write"):
        trainer.train()
    monkeypatch.setattr(torch, "save", real_save)
    assert seen == [1, 2]
    ckpt = load_checkpoint(tmp_path / "last.pt")  # the epoch-2 checkpoint, intact
    assert ckpt["epoch"] == 2 and ckpt["step"] == 16
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the torn temp file was removed
    assert (tmp_path / "curves.png").exists()  # after_train still ran (partial curves)


@pytest.mark.parametrize("workers, augment", [(0, False), (2, True)])
def test_resume_is_bit_identical(tmp_path, workers, augment):
    ref = build(tmp_path / "ref", epochs=4, workers=workers, augment=augment)
    ref.train()

    run = tmp_path / "run"
    killed = build(run, epochs=4, workers=workers, augment=augment, hooks=[Kill(epoch=2)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    assert load_checkpoint(run)["epoch"] == 2  # the kill lost only the epoch in progress

    resumed = build(run, epochs=4, workers=workers, augment=augment, init_seed=99)  # a different fresh init
    assert resumed.resume(run) is True
    assert resumed.start_epoch == 2 and resumed.step == 16
    resumed.train()

    a, b = params(ref.model), params(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed parameters differ from the uninterrupted run"
    sa, sb = ref.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert ref.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()

    # The log of the resumed run reads like the uninterrupted one: no repeated epoch, same losses.
    def summary(path):
        return [(r["type"], r["epoch"], r["step"], r.get("loss"), r.get("metrics")) for r in read_jsonl(path)]

    assert summary(run / "log.jsonl") == summary(tmp_path / "ref" / "log.jsonl")


def test_resume_missing_and_seeded_determinism(tmp_path):
    t = build(tmp_path / "a", epochs=1, eval_fn=None)
    assert t.resume(tmp_path / "a", missing_ok=True) is False
    with pytest.raises(FileNotFoundError):
        t.resume(tmp_path / "a")
    t.train()
    u = build(tmp_path / "b", epochs=1, eval_fn=None)
    u.train()
    a, b = params(t.model), params(u.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    v = build(tmp_path / "c", epochs=1, eval_fn=None, seed=1)
    v.train()
    assert not torch.equal(params(v.model)["0.weight"], a["0.weight"])


def test_non_finite_loss_raises(tmp_path):
    def bad_loss(model, batch):
        return {"mse": model(batch["x"]).mean() * float("nan")}

    model = make_model()
    trainer = Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), build_dataloader(ToyData(n=16), batch_size=8), bad_loss,
        max_epochs=1, hooks=[LoggingHook(log_every=1, progress=False)],
    )  # fmt: skip
    with pytest.raises(FloatingPointError, match="non-finite loss at step 1"):
        trainer.train()


def test_bad_arguments():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = build_dataloader(ToyData(n=16), batch_size=8)
    with pytest.raises(ValueError, match="max_epochs"):
        Trainer(model, opt, loader, loss_fn, max_epochs=-1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Trainer(model, opt, (b for b in loader), loss_fn, max_epochs=1)
    with pytest.raises(TypeError, match="HookBase"):
        Trainer(model, opt, loader, loss_fn, max_epochs=1, hooks=[object()])  # type: ignore[list-item]
    with pytest.raises(RuntimeError, match="ran out"):
        Trainer(model, opt, loader, loss_fn, max_epochs=1, steps_per_epoch=5).train()
    with pytest.raises(TypeError, match="dict"):
        Trainer(model, opt, loader, lambda m, b: m(b["x"]).mean(), max_epochs=1).train()
    with pytest.raises(ValueError, match="out_dir"):
        Trainer(model, opt, loader, loss_fn, max_epochs=1, hooks=[CheckpointHook()]).train()


def test_plot_curves_from_log(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"type": "step", "epoch": 0, "step": s, "loss": 1.0 / s, "losses": {"a": 0.5 / s, "b": 0.5 / s}}
             for s in range(1, 6)]  # fmt: skip
    lines += [{"type": "eval", "epoch": e, "step": 5, "metrics": {"mAP": 0.1 * e, "R@50": 0.2 * e}} for e in range(3)]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"type": "step", "ep')  # torn last line
    out = plot_curves(log, tmp_path / "c.png", title="toy")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert len(read_jsonl(log)) == 8
    plot_curves(tmp_path / "empty.jsonl", tmp_path / "empty.png")  # no records: still a figure
    assert (tmp_path / "empty.png").exists()


@needs_cuda
def test_cuda_bf16_smoke(tmp_path):
    seed_everything(0, deterministic=False)
    model = make_model().cuda()
    optimizer = build_optimizer(model, lr=1e-2)
    loader = build_dataloader(ToyData(), batch_size=8)
    hooks = default_hooks(eval_fn=evaluate_on_device, log_every=4, progress=False)
    trainer = Trainer(model, optimizer, loader, loss_fn, max_epochs=3, hooks=hooks, out_dir=tmp_path, amp_bf16=True)
    assert trainer.use_amp and trainer.device.type == "cuda"
    trainer.train()
    epochs = [r["loss"] for r in read_jsonl(tmp_path / "log.jsonl") if r["type"] == "epoch"]
    assert epochs[-1] < epochs[0]
    assert load_checkpoint(tmp_path)["epoch"] == 3


def evaluate_on_device(model: nn.Module) -> dict[str, float]:
    """``evaluate`` with the data moved to the model's device."""
    data = ToyData()
    device = next(model.parameters()).device
    return {"mse": nn.functional.mse_loss(model(data.x.to(device)), data.y.to(device)).item()}


def test_checkpoint_without_frozen_parameters(tmp_path):
    """``save_frozen=False``: the checkpoint keeps a fingerprint instead of the frozen weights; resume continues
    exactly when the model holds the same frozen weights and refuses when it does not."""

    def run(out, epochs, frozen_init=0.5, resume=False):
        seed_everything(0)
        model = make_model(dropout=0.0)
        with torch.no_grad():
            model[0].weight.fill_(frozen_init)
        model[0].weight.requires_grad_(False)  # a frozen "pretrained" layer
        opt = build_optimizer(model, lr=1e-2)
        loader = build_dataloader(ToyData(), batch_size=8, seed=0)
        hooks = [CheckpointHook()]
        t = Trainer(model, opt, loader, loss_fn, max_epochs=epochs, hooks=hooks, out_dir=out, save_frozen=False)
        if resume:
            t.resume(out)
        t.train()
        return model

    straight = run(tmp_path / "a", epochs=2)
    run(tmp_path / "b", epochs=1)
    state = load_checkpoint(tmp_path / "b")
    assert "0.weight" not in state["model"] and state["frozen"]["names"] == ["0.weight"]
    resumed = run(tmp_path / "b", epochs=2, resume=True)
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    with pytest.raises(ValueError, match="frozen parameters differ"):
        run(tmp_path / "b", epochs=3, frozen_init=0.25, resume=True)


def test_hooks_hold_a_weak_reference_to_the_trainer(tmp_path):
    import gc
    import weakref

    trainer = build(tmp_path, epochs=1)
    hook = trainer.hooks[0]
    assert hook.trainer.max_epochs == 1  # the proxy reads through to the trainer
    alive = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert alive() is None  # the hooks did not keep the trainer (model, optimizer, loader) alive
    with pytest.raises(ReferenceError):
        hook.trainer.max_epochs  # noqa: B018


def test_console_lines_name_the_stage_and_say_progress_without_a_terminal(tmp_path, capsys, monkeypatch):
    """Epoch and eval lines start with the run's name (``stage 1 epoch 1/2``); without a terminal (pytest's
    capture) there is no bar's carriage-return stream but a plain line every PLAIN_INTERVAL_S seconds."""
    from uasan import _console as console

    monkeypatch.setattr(console, "PLAIN_INTERVAL_S", 0.0)  # a line per step
    seed_everything(0)
    model = make_model()
    loader = build_dataloader(ToyData(n=16), batch_size=8, seed=0)
    hooks = default_hooks(eval_fn=evaluate, log_every=1, progress=True, name="stage 1")
    opt = build_optimizer(model, lr=1e-2)
    Trainer(model, opt, loader, loss_fn, max_epochs=2, hooks=hooks, out_dir=tmp_path).train()
    captured = capsys.readouterr()
    out, err = captured.out.splitlines(), captured.err.splitlines()
    assert [ln.split(":")[0] for ln in out] == [
        "stage 1 epoch 1/2", "stage 1 eval after epoch 1/2", "stage 1 epoch 2/2", "stage 1 eval after epoch 2/2",
    ], out  # fmt: skip
    assert err and all(ln.startswith("stage 1 epoch ") and ": step " in ln and "loss" in ln for ln in err), err
    assert "\r" not in captured.err
