"""Compile the attention kernels for NVIDIA GPUs on a machine without one, and read registers and spills.

Triton compiles for an NVIDIA target on any machine: ``triton.compile(ASTSource(fn, signature, constexprs, attrs),
target=GPUTarget("cuda", arch, 32), options={num_warps, num_stages})`` gives PTX and a cubin. Registers and spill
bytes come from ``ptxas -v`` run on that PTX with the flags of Triton's own cubin step, by the ``ptxas-blackwell``
binary of the Triton wheel (the plain ``ptxas`` there is too old for the PTX Triton emits for sm_90a) and, for sm_80,
also by the plain one that Triton 3.9 builds sm_80 cubins with; the worse of the two counts (``ptxas_paths``).

Every case is specialised as a launch at the model's shapes would be (d = 512 as 8 × 64 or 1 × 512, Lt = 32,
Lp = L + L_mot = 34, 32 shared queries over S = 30 tokens): pointers 16-byte aligned, integers divisible by 16 marked
so, integers equal to 1 folded to constants, ``do_not_specialize`` arguments left alone.

    python -m uasan.kernels.compile_check                      # every kernel × allowed tile × arch × dtype × Dh
    python -m uasan.kernels.compile_check --out report.md --jobs 2
    python -m uasan.kernels.compile_check --search-space       # the whole search space, spilling tiles included

``tests/kernels/test_compile.py`` runs a subset of these cases in CI and all of them with ``UASAN_FULL_COMPILE=1``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

from uasan.kernels import _attention_common as common
from uasan.kernels._attention_common import Tile

ARCHS = (80, 90)
DTYPES = ("bf16", "fp16")
HEAD_DIMS = (64, 512)  # the model's (d = 512 as 8 × 64 or 1 × 512): bf16 and fp16
OTHER_HEAD_DIMS = (16, 32, 128, 256, 1024)  # every other list of the tile table: bf16 (fp16 allocates the same)
SHAPE = dict(Lt=32, Lp=34, L=32, S=30)  # the model's: L = 32 tokens, L_mot = 2, 32 refiner queries over 30 tokens


@dataclass(frozen=True)
class KernelSpec:
    """How to build a compile-only launch of one kernel: its module and function, the kind of each pointer
    (``x``: the input dtype, else a fixed Triton type), the integer arguments (looked up in ``SHAPE``, ``H``,
    ``Dh`` or given) and the float and constexpr arguments besides the tile's."""

    module: str
    fn: str
    pointers: dict
    ints: tuple
    floats: tuple = ()
    constexprs: tuple = ()
    tiled: bool = True  # autotuned over ``SEARCH_SPACE``; else launched with fixed meta-parameters


_PAIR_PTRS = dict(TQ="x", TK="x", TV="x", PQ="x", PK="x", PV="x", SUBJ="i64", OBJ="i64")
_PAIR_BWD = dict(**_PAIR_PTRS, DO="x", LSE="fp32", DELTA="fp32", ENT="i64", PTR="i64")

KERNELS: dict[str, KernelSpec] = {
    "pair_fwd": KernelSpec(
        "pair_self_attention", "_pair_fwd_kernel", dict(**_PAIR_PTRS, OUT="x", LSE="fp32"),
        ("Lt", "Lp", "H", "Dh"), ("qk_scale",),
    ),
    "pair_bwd_pair": KernelSpec(
        "pair_self_attention", "_pair_bwd_kernel", dict(**_PAIR_BWD, DQ="x", DK="x", DV="x"),
        ("Lt", "Lp", "H", "Dh", "N_OWN", "N_SPLIT"), ("qk_scale", "scale"), (("TRAJ", False),),
    ),
    "pair_bwd_traj": KernelSpec(
        "pair_self_attention", "_pair_bwd_kernel", dict(**_PAIR_BWD, DQ="fp32", DK="fp32", DV="fp32"),
        ("Lt", "Lp", "H", "Dh", "N_OWN", "N_SPLIT"), ("qk_scale", "scale"), (("TRAJ", True),),
    ),
    "sq_fwd": KernelSpec(
        "shared_query_attention", "_sq_fwd_kernel", dict(Q="x", K="x", V="x", OUT="x", LSE="fp32"),
        ("L", "S", "H", "Dh"), ("qk_scale",),
    ),
    "sq_bwd_kv": KernelSpec(
        "shared_query_attention", "_sq_bwd_kv_kernel",
        dict(Q="x", K="x", V="x", DO="x", LSE="fp32", DELTA="fp32", DK="x", DV="x"),
        ("L", "S", "H", "Dh"), ("qk_scale", "scale"),
    ),
    "sq_bwd_q": KernelSpec(
        "shared_query_attention", "_sq_bwd_q_kernel",
        dict(Q="x", K="x", V="x", DO="x", LSE="fp32", DELTA="fp32", DQ="fp32"),
        ("B", "L", "S", "H", "Dh", "N_SPLIT"), ("qk_scale", "scale"),
    ),
    "row_dot": KernelSpec(
        "_attention_common", "_row_dot_kernel", dict(A="x", B="x", OUT="fp32"), ("R", "Dh"), tiled=False,
    ),
}  # fmt: skip

_TRITON_DTYPE = {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}


@dataclass(frozen=True)
class Case:
    kernel: str
    arch: int
    dtype: str  # bf16 / fp16 / fp32 (TF32 dots)
    dh: int
    tile: Tile | None  # None for untiled kernels (fixed meta-parameters)


@dataclass
class Result:
    case: Case
    registers: int = -1
    spill_stores: int = -1
    spill_loads: int = -1
    stack: int = -1
    shared: int = -1
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.spill_stores == 0 and self.spill_loads == 0


def cases(
    full: bool = True, search_space: bool = False, head_dims: tuple | None = None, dtypes: tuple | None = None
) -> list[Case]:
    """Every kernel × arch × dtype × head dim × tile the autotuner may pick (``search_space``: every tile of the
    search space, spilling ones included). Head dims and dtypes by default: the model's head dims in bf16 and fp16,
    every other head dim of the tile table in bf16. ``full=False`` gives the CI subset (see ``ci_subset``)."""
    if head_dims is None:
        plan = [(dh, dt) for dh in HEAD_DIMS for dt in DTYPES] + [(dh, "bf16") for dh in OTHER_HEAD_DIMS]
    else:
        plan = [(dh, dt) for dh in head_dims for dt in dtypes or DTYPES]
    out = []
    for name, spec in KERNELS.items():
        for arch in ARCHS:
            for dh, dtype in plan:
                if not spec.tiled:
                    out.append(Case(name, arch, dtype, dh, None))
                    continue
                dpad = common.head_dim_pad(dh)
                itemsize = 4 if dtype == "fp32" else 2
                if search_space:
                    tiles = common.SEARCH_SPACE[name]
                else:
                    tiles = common.allowed_tiles(name, dpad, itemsize, arch)
                out.extend(Case(name, arch, dtype, dh, t) for t in tiles)
    return out if full else ci_subset(out)


def ci_subset(all_cases: list[Case]) -> list[Case]:
    """Per kernel × arch × head dim, the allowed tile with the largest per-thread footprint (the one most likely to
    spill: largest BLOCK_M·width + BLOCK_N·width + BLOCK_M·BLOCK_N per thread), in bf16 on sm_90a and fp16 on sm_80
    (the two dtypes compile to the same register allocation in every full sweep so far)."""
    best: dict[tuple, Case] = {}

    def weight(c: Case) -> float:
        t = c.tile
        if t is None:
            return 0.0
        width = min(common.head_dim_pad(c.dh), t.max_d)
        return (t.block_m * width + t.block_n * width + t.block_m * t.block_n) / (32 * t.warps)

    for c in all_cases:
        if c.dh not in HEAD_DIMS or c.dtype != ("bf16" if c.arch >= 90 else "fp16"):
            continue
        key = (c.kernel, c.arch, c.dh)
        if key not in best or weight(c) > weight(best[key]):
            best[key] = c
    return list(best.values())


def _int_arg(name: str, dh: int) -> int:
    if name == "Dh":
        return dh
    if name == "H":
        return max(1, 512 // dh)  # d = 512
    return SHAPE.get(name, 1000)  # batch-dependent counts: do_not_specialize anyway


#: Integer arguments that are the model's shape (the same every batch): Triton may specialise them. Every other
#: integer argument changes from batch to batch and must be ``do_not_specialize``.
SHAPE_ARGS = frozenset({"Lt", "Lp", "H", "Dh", "L", "S"})


def _jit_function(spec: KernelSpec):
    from triton.runtime.jit import JITFunction

    fn = getattr(importlib.import_module(f"uasan.kernels.{spec.module}"), spec.fn)
    if not isinstance(fn, JITFunction):
        raise RuntimeError(
            f"compile_check: {spec.fn} is a {type(fn).__name__}: the kernels were imported under TRITON_INTERPRET=1; "
            "run the check in a process without it"
        )
    return fn


def specialization_problems() -> list[str]:
    """Integer arguments of any kernel that vary per batch but are not ``do_not_specialize`` (each would make
    Triton recompile when a batch size crosses 1 or a multiple of 16 mid-training)."""
    problems = []
    for name, spec in KERNELS.items():
        fn = _jit_function(spec)
        dns = {fn.arg_names[i] if isinstance(i, int) else i for i in (fn.do_not_specialize or ())}
        for arg in spec.ints:
            if arg not in SHAPE_ARGS and arg not in dns:
                problems.append(f"{name}: {arg} varies per batch but is specialised")
    return problems


def build(case: Case):
    """→ (jit function, signature, constexprs, attrs, options) of a compile-only launch of ``case``."""
    spec = KERNELS[case.kernel]
    fn = _jit_function(spec)
    dns = {fn.arg_names[i] if isinstance(i, int) else i for i in (fn.do_not_specialize or ())}
    dpad = common.head_dim_pad(case.dh)
    signature, constexprs, attrs = {}, {}, {}
    for idx, name in enumerate(fn.arg_names):
        if name in spec.pointers:
            kind = spec.pointers[name]
            signature[name] = "*" + (_TRITON_DTYPE[case.dtype] if kind == "x" else kind)
            attrs[(idx,)] = [["tt.divisibility", 16]]
        elif name in spec.ints:
            value = _int_arg(name, case.dh)
            if value == 1 and name not in dns:
                signature[name] = "constexpr"
                constexprs[name] = 1
            else:
                signature[name] = "i32"
                if value % 16 == 0 and name not in dns:
                    attrs[(idx,)] = [["tt.divisibility", 16]]
        elif name in spec.floats:
            signature[name] = "fp32"
        else:
            signature[name] = "constexpr"
    constexprs.update(dict(spec.constexprs))
    if case.tile is not None:
        constexprs.update(HEAD_DIM_PAD=dpad, PREC="tf32", BLOCK_M=case.tile.block_m, BLOCK_N=case.tile.block_n)
        constexprs.update(MAX_D=case.tile.max_d, BLOCK_K=case.tile.block_k)
        options = dict(num_warps=case.tile.warps, num_stages=case.tile.stages)
    else:  # row_dot: the launcher's meta-parameters and Triton's default launch options
        constexprs.update(BLOCK_R=common.ROW_DOT_BLOCK_R, BLOCK_D=common.row_dot_block_d(case.dh))
        options = dict(num_warps=4, num_stages=3)
    missing = [n for n, t in signature.items() if t == "constexpr" and n not in constexprs]
    if missing:
        raise ValueError(f"compile_check: no value for the constexpr(s) {missing} of {case.kernel}")
    return fn, signature, constexprs, attrs, options


_PTXAS_RE = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
}


def ptxas_paths(arch: int) -> list[str]:
    """The ptxas binaries whose verdict counts for ``arch``: the one Triton builds this arch's cubins with
    (``get_ptxas``: the legacy ``ptxas`` below sm_90 in Triton 3.9) and ``ptxas-blackwell``, which Triton uses for
    sm_90+ and will use for every arch once the legacy binary goes. A tile passes only if both agree it does not
    spill (ptxas 13.x with Triton's ``--regAllocOptLevel=2`` spills some sm_80 tiles that 12.x does not)."""
    from triton import knobs
    from triton.backends.nvidia.compiler import get_ptxas

    paths = [get_ptxas(arch).path, knobs.nvidia.ptxas_blackwell.path]
    return list(dict.fromkeys(paths))


def ptxas_report(ptx: str, arch: int) -> dict:
    """Registers, spill stores / loads and stack bytes of the one entry function of ``ptx`` (``ptxas -v`` with the
    flags of Triton's cubin step), the worst over ``ptxas_paths(arch)``."""
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    worst: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        for exe in ptxas_paths(arch):
            cmd = [exe, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu}", src]
            proc = subprocess.run([*cmd, "-o", os.path.join(tmp, "k.o")], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{os.path.basename(exe)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
            for key, rx in _PTXAS_RE.items():
                m = rx.search(proc.stderr)
                if m is None:
                    raise RuntimeError(f"ptxas -v gave no '{key}' line: {proc.stderr.strip()[-400:]}")
                worst[key] = max(worst.get(key, 0), int(m.group(1)))
    return worst


def compile_case(case: Case) -> Result:
    """Compiles ``case`` for its arch (PTX and cubin) and reads ``ptxas -v``; a failure is a result, not an error."""
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default, without its deprecation warning
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    res = Result(case)
    t0 = time.perf_counter()
    try:
        fn, signature, constexprs, attrs, options = build(case)
        src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
        compiled = triton.compile(src, target=GPUTarget("cuda", case.arch, 32), options=options)
        res.shared = int(compiled.metadata.shared)
        for key, value in ptxas_report(compiled.asm["ptx"], case.arch).items():
            setattr(res, key, value)
    except Exception as exc:  # noqa: BLE001 - reported per case
        res.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
    res.seconds = time.perf_counter() - t0
    return res


def run(case_list: list[Case], jobs: int = 1, progress: bool = False) -> list[Result]:
    """Compiles every case, ``jobs`` processes at a time (each compile is single-threaded)."""
    if jobs <= 1 or len(case_list) <= 1:
        it = map(compile_case, case_list)
        return list(_progress(it, len(case_list)) if progress else it)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has imported torch
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        it = pool.map(compile_case, case_list)
        return list(_progress(it, len(case_list)) if progress else it)


def _progress(it, total):
    from tqdm import tqdm

    return tqdm(it, total=total, desc="compile", unit="case")


def tile_name(t: Tile | None) -> str:
    if t is None:
        return "fixed"
    return f"{t.block_m}x{t.block_n} D{t.max_d} K{t.block_k} w{t.warps} s{t.stages}"


def markdown(results: list[Result]) -> str:
    """One compact table: per kernel × tile × Dh, registers / spill bytes for sm_80 and sm_90a, bf16 and fp16."""
    cols = [(a, d) for a in ARCHS for d in DTYPES]
    rows: dict[tuple, dict] = {}
    for r in results:
        c = r.case
        rows.setdefault((c.kernel, c.dh, tile_name(c.tile)), {})[(c.arch, c.dtype)] = r
    head = "| kernel | Dh | tile (BM×BN, MAX_D, BLOCK_K, warps, stages) | " + " | ".join(
        f"sm_{a}{'a' if a >= 90 else ''} {d}" for a, d in cols
    )
    lines = [head + " |", "|---|---|---|" + "---|" * len(cols)]
    for (kernel, dh, tile), by in rows.items():
        cells = []
        for key in cols:
            r = by.get(key)
            if r is None:
                cells.append("")
            elif r.error:
                cells.append("ERROR")
            else:
                spill = r.spill_stores + r.spill_loads
                cells.append(f"{r.registers}" + (f" **spill {spill} B**" if spill else ""))
        lines.append(f"| {kernel} | {dh} | {tile} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ci", action="store_true", help="only the CI subset")
    ap.add_argument("--search-space", action="store_true", help="every tile of the search space, not only allowed")
    ap.add_argument("--kernel", action="append", help="only this kernel (repeatable)")
    ap.add_argument("--head-dims", help="comma-separated (default: 64,512 in bf16 + fp16, 16,32,128,256,1024 in bf16)")
    ap.add_argument("--dtypes", help="comma-separated, with --head-dims (default bf16,fp16)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", help="write the markdown table here")
    ap.add_argument("--jsonl", help="write one JSON line per case here")
    a = ap.parse_args(argv)
    head_dims = tuple(int(x) for x in a.head_dims.split(",")) if a.head_dims else None
    todo = cases(not a.ci, a.search_space, head_dims, tuple(a.dtypes.split(",")) if a.dtypes else None)
    if a.kernel:
        todo = [c for c in todo if c.kernel in a.kernel]
    t0 = time.perf_counter()
    results = run(todo, jobs=a.jobs, progress=True)
    table = markdown(results)
    bad = [r for r in results if not r.ok]
    summary = (
        f"{len(results)} cases, {len(results) - len(bad)} spill-free, {sum(bool(r.error) for r in results)} errors, "
        f"{time.perf_counter() - t0:.0f} s with {a.jobs} job(s)"
    )
    print(table + "\n" + summary)
    for r in bad:
        print("  not ok:", r.case.kernel, r.case.arch, r.case.dtype, r.case.dh, tile_name(r.case.tile), r.error)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n" + summary + "\n")
    if a.jsonl:
        import json

        with open(a.jsonl, "w") as f:
            for r in results:
                row = asdict(r)
                row["case"]["tile"] = tile_name(r.case.tile)
                f.write(json.dumps(row) + "\n")
    return 0 if not bad or a.search_space else 1


if __name__ == "__main__":
    sys.exit(main())
