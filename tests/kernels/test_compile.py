"""The Triton kernels compile for the GPUs they were written for, without register spills, on a machine without one.

Each case compiles one kernel with one tile the autotuner may pick (after pruning), for sm_80 or sm_90a, in bf16 or
fp16, at head dim 64 (8 × 64) or 512 (1 × 512) — the model's — and reads ``ptxas -v``
(``uasan.kernels.compile_check``): a compile error or any spilled byte fails. Shared memory must fit the arch
(sm_80: 163 KiB per block; sm_90a: 227 KiB) and every (kernel, Dh) keeps at least one tile within 99 KiB on sm_80,
so that sm_86 / sm_89 GPUs can launch it.

Subset in CI: per kernel × arch × head dim, the allowed tile with the largest per-thread footprint (the likeliest to
spill), in bf16 on sm_90a and fp16 on sm_80 — 28 cases, 35–50 s on two cores (bf16 and fp16 allocate the same
registers in every tiled case of the full sweep). ``UASAN_FULL_COMPILE=1`` runs the full sweep here: every allowed
tile, both dtypes at Dh 64 and 512 plus bf16 at the table's other head dims (16, 32, 128, 256, 1024) — 434 cases,
about 10 minutes; ``python -m uasan.kernels.compile_check --out table.md`` runs the same as a tool.
The compiles run in a child process without ``TRITON_INTERPRET`` (the tests' kernels are the interpreter's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from uasan.kernels import _attention_common as common  # noqa: E402
from uasan.kernels import compile_check as cc  # noqa: E402

FULL = os.environ.get("UASAN_FULL_COMPILE") == "1"
CASES = cc.cases(full=FULL)
SMEM_LIMIT = {80: 163 * 1024, 90: 227 * 1024}  # bytes per block (A100 / H100 opt-in maximum)
SMEM_SMALL = 99 * 1024  # sm_86 / sm_89
HELPERS = {  # device functions, only called from kernels
    "_seq_offsets", "load_rows", "scores", "head_and_block", "owner_rows", "qk_tile", "softmax_update",
    "store_forward", "dkdv_step", "dq_step",
}  # fmt: skip


def _case_id(c: cc.Case) -> str:
    return f"{c.kernel}-sm{c.arch}-{c.dtype}-d{c.dh}-{cc.tile_name(c.tile).replace(' ', '_')}"


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """Every case of ``CASES`` compiled in one child process (2 jobs), keyed by ``_case_id``."""
    out = tmp_path_factory.mktemp("compile") / "results.jsonl"
    cmd = [sys.executable, "-m", "uasan.kernels.compile_check", "--jsonl", str(out), "--jobs", "2"]
    if not FULL:
        cmd.append("--ci")
    proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=3600, check=False)
    if not out.exists():
        tail = proc.stdout[-2000:] + proc.stderr[-2000:]
        pytest.fail(f"compile_check wrote nothing (exit {proc.returncode}):\n{tail}")
    rows = {}
    for line in out.read_text().splitlines():
        r = json.loads(line)
        c = r["case"]
        key = f"{c['kernel']}-sm{c['arch']}-{c['dtype']}-d{c['dh']}-{c['tile'].replace(' ', '_')}"
        rows[key] = r
    return rows


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_compiles_without_spills(results, case):
    r = results.get(_case_id(case))
    assert r is not None, f"no result for {_case_id(case)}"
    assert not r["error"], r["error"]
    assert r["spill_stores"] == 0 and r["spill_loads"] == 0, (r["registers"], r["spill_stores"], r["spill_loads"])
    assert 0 < r["registers"] <= 255
    assert r["shared"] <= SMEM_LIMIT[case.arch], r["shared"]


def test_small_shared_memory_tile_exists(results):
    """On sm_80 every (kernel, dtype, Dh) compiled here has a tile within sm_86/89's 99 KiB (the autotuner drops
    tiles a GPU cannot launch, so one must be left)."""
    best: dict[tuple, int] = {}
    for r in results.values():
        c = r["case"]
        if c["arch"] == 80 and not r["error"]:
            key = (c["kernel"], c["dtype"], c["dh"])
            best[key] = min(best.get(key, 1 << 30), r["shared"])
    assert best and all(v <= SMEM_SMALL for v in best.values()), {k: v for k, v in best.items() if v > SMEM_SMALL}


@pytest.mark.parametrize("arch", cc.ARCHS)
@pytest.mark.parametrize("dpad", [16, 32, 64, 128, 256, 512, 1024])
def test_every_head_dim_has_tiles(arch, dpad):
    """Every padded head dim has at least one allowed tile per kernel in half precision (fp32 runs on the reference
    path on a GPU, so it has none)."""
    for kernel in common.TILED_KERNELS:
        assert common.allowed_tiles(kernel, dpad, 2, arch), (kernel, dpad, arch)
        assert not common.allowed_tiles(kernel, dpad, 4, arch)


def test_every_kernel_is_checked():
    """Every ``triton.jit`` function of the kernel modules is a compile-checked kernel or a device helper."""
    import importlib

    found = set()
    for module in {spec.module for spec in cc.KERNELS.values()} | {"pair_self_attention", "shared_query_attention"}:
        mod = importlib.import_module(f"uasan.kernels.{module}")
        found |= {name for name, obj in vars(mod).items() if hasattr(obj, "arg_names") and hasattr(obj, "fn")}
    launched = {spec.fn for spec in cc.KERNELS.values()}
    assert found == launched | HELPERS, found ^ (launched | HELPERS)
    assert {k for k, spec in cc.KERNELS.items() if spec.tiled} == set(common.TILED_KERNELS)


def test_batch_sizes_are_not_specialised():
    """Integer arguments that vary per batch (pair / trajectory / batch counts, split counts) are
    ``do_not_specialize``: Triton specialises integers equal to 1 or divisible by 16, which would recompile kernels
    mid-training. Checked on the compiled (not interpreted) kernels, in a child process."""
    code = "import json; from uasan.kernels import compile_check as c; print(json.dumps(c.specialization_problems()))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
