"""Distributed helpers: single-process no-ops, and a 2-process DDP run (gloo, torchrun) equal to a 1-process run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from uasan.engine import (
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    load_checkpoint,
    read_jsonl,
    reduce_dict,
    unwrap_model,
    wrap_ddp,
)
from uasan.engine.distributed import all_gather_object, all_reduce_mean, barrier

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed()
    assert (info.rank, info.world_size, get_rank(), get_world_size()) == (0, 1, 0, 1)
    assert is_main_process() and not is_distributed()
    model = nn.Linear(2, 2)
    assert wrap_ddp(model) is model and unwrap_model(model) is model
    values = {"b": torch.tensor(2.0), "a": torch.tensor(1.0)}
    assert {k: v.item() for k, v in reduce_dict(values).items()} == {"a": 1.0, "b": 2.0}
    assert reduce_dict({}) == {}
    assert all_reduce_mean(torch.tensor(3.0)).item() == 3.0
    assert all_gather_object({"x": 1}) == [{"x": 1}]
    barrier()


def test_ddp_two_processes_equal_one(tmp_path):
    # Reference: the same script in this process (no WORLD_SIZE → a plain single-process run).
    spec = importlib.util.spec_from_file_location("uasan_ddp_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker.main(str(tmp_path / "one"))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER)]
    proc = subprocess.run([*cmd, str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]

    one = torch.load(tmp_path / "one" / "params.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "params.pt", weights_only=True)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for k, v in one["params"].items():
        torch.testing.assert_close(two["params"][k], v, atol=1e-6, rtol=1e-6, msg=k)
    torch.manual_seed(0)
    initial = nn.Linear(4, 16).weight  # the worker's first layer before training
    assert not torch.allclose(one["params"]["0.weight"], initial)  # the steps did move the parameters

    # Only rank 0 logged, and the logged loss is the mean over both processes = the global-batch loss.
    log_one = [r for r in read_jsonl(tmp_path / "one" / "log.jsonl") if r["type"] == "step"]
    log_two = [r for r in read_jsonl(tmp_path / "two" / "log.jsonl") if r["type"] == "step"]
    assert [r["step"] for r in log_two] == [1, 2]
    for a, b in zip(log_one, log_two, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-6
    ckpt = load_checkpoint(tmp_path / "two")
    assert ckpt["world_size"] == 2 and len(ckpt["rng_per_rank"]) == 2 and ckpt["epoch"] == 1
