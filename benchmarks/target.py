"""Where the GPU rows of the benchmarks run, and at which sizes.

Normally: CUDA in bfloat16 at the paper's sizes (d = 512 as 8 × 64 or 1 × 512 heads, L = 32 trajectory tokens,
L_mot = 2, N = 16 / 32 / 64 trajectories and 8 segments of N = 32), skipped without CUDA. With ``UASAN_BENCH_DRY=1``
(``gpu_report.py --dry-run``, which CI runs): the same rows on the CPU, Triton under the interpreter, float32, tiny
sizes — they assert agreement and time nothing meaningful, but they cannot rot.
"""

from __future__ import annotations

import os

import pytest
import torch

DRY = os.environ.get("UASAN_BENCH_DRY") == "1"
CUDA = torch.cuda.is_available() and not DRY
needs_gpu = pytest.mark.skipif(not (CUDA or DRY), reason="GPU benchmark: needs CUDA (UASAN_BENCH_DRY=1: CPU dry run)")
DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.bfloat16 if CUDA else torch.float32  # the interpreter's bfloat16 dots are wrong

L, L_MOT = (2, 2) if DRY else (32, 2)  # trajectory tokens, motion tokens (pair tokens Lp = L + L_MOT)
HEADS = {"1x16": (1, 16)} if DRY else {"8x64": (8, 64), "1x512": (1, 512)}
SEGMENTS = {"N2": (1, 2)} if DRY else {"N16": (1, 16), "N32": (1, 32), "N64": (1, 64), "8xN32": (8, 32)}
GOAL = {"heads": "1x16" if DRY else "8x64", "seg": "N2" if DRY else "N32"}  # the goal shape


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def device_name() -> str:
    if DEVICE.type == "cuda":
        return torch.cuda.get_device_name(DEVICE)
    return "cpu (dry run: Triton interpreter, float32, tiny sizes)"


def needs_interpreter(impl: str) -> None:
    """Skip a CPU row of the Triton path unless the interpreter is on (with CUDA the GPU rows run that path)."""
    if impl == "triton" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the Triton path on CPU tensors needs TRITON_INTERPRET=1 (with CUDA the GPU rows run it)")
