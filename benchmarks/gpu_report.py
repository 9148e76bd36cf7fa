"""One command for a machine with CUDA: the attention kernels' checks and every GPU benchmark row, in one report.

    pip install --no-deps --no-build-isolation .        # on an offline image with its own CUDA torch and Triton
    python benchmarks/gpu_report.py REPORT.md           # from the repository root; at most ~8 minutes
    python benchmarks/gpu_report.py REPORT.md --full    # every segment size, head split and path (slower)
    python benchmarks/gpu_report.py REPORT.md --dry-run # the same steps on the CPU (interpreter, tiny sizes)
    python benchmarks/gpu_report.py REPORT.md --install # pip install the checkout first (counts against the budget)

Steps, each in its own process under its own time limit (all under one deadline, ``--budget-s``):

1. ``tiles``   every tile the autotuner may pick for each kernel at the model's head dims, forced one at a time, bf16
               forward + every gradient against float64 with FlashAttention's rule (error ≤ 2 × PyTorch's own bf16
               error + 1e-3), in parallel worker processes (which also fills Triton's cache for the later steps);
2. ``attention`` ``benchmarks/bench_{pair_self,shared_query}_attention.py``: pair self-attention vs cat + every
               SDPA backend (and nn.MultiheadAttention with ``--full``), shared-query attention vs expanded SDPA,
               fwd and fwd+bwd;
3. ``block``   ``benchmarks/bench_model.py``: the SACEncoder + URADecoder block, ours (Triton / reference ops) vs
               the eager naive block and its ``torch.compile``, fwd and training step, with peak memory;
4. ``train``   ``benchmarks/bench_train.py``: stage-2 training throughput (pairs/s), Triton vs reference ops;
5. ``tests``   the CUDA tests: ``tests/ops/test_*_attention.py`` and ``tests/kernels`` (bf16, the same rule).

The report gives device, versions and date, each step's status, the tables, and the issue's goals (pair attention
≥ 3× cat + the best SDPA backend, block forward ≥ 3× eager and ≥ 2× torch.compile, peak memory ≤ ½ eager, training
step ≥ 2× eager; bf16, d = 512, 8 heads, L = 32, L_mot = 2, N = 32) met or not. Without CUDA it runs as ``--dry-run``:
Triton under the interpreter, float32, tiny sizes, so the plumbing is tested by CI (``tests/kernels/
test_gpu_report.py``) — its figures are not measurements.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP_LIMITS = {"tiles": 90, "attention": 90, "block": 110, "train": 60, "tests": 150}  # seconds, GPU (in order)
DRY_LIMITS = {"tiles": 120, "attention": 240, "block": 240, "train": 300, "tests": 120}  # a loaded 2-core CI box
RESERVE_S = 10  # the report itself


# ------------------------------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------------------------------


def run_step(name: str, cmd: list[str], limit: float, env: dict, log: Path) -> dict:
    """Runs ``cmd``; at ``limit`` seconds SIGINT (pytest then still writes its JSON / junit), SIGKILL 15 s later."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=max(1.0, limit))
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc, status = None, f"TIMED OUT ({limit:.0f} s)"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {"step": name, "status": status, "rc": rc, "seconds": round(time.perf_counter() - t0, 1), "tail": tail}


def _load(relpath: str):
    """A module of the checkout by file path: the repository root never goes on sys.path, where its ``uasan/``
    (without the wheel's ``uasan/kernels``) would shadow the installed package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(relpath).stem, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tile_case(op: str, h: int, dh: int, seed: int, target, helpers) -> list[tuple[float, float]]:
    """One forward + backward of ``op`` at the model's sizes (dry run: tiny) → per tensor (out, then every input's
    gradient): (|kernel − float64|, |PyTorch same dtype − float64|), max over elements."""
    import torch

    from uasan.ops import attention as A

    dev, dt, lt, lp = target.DEVICE, target.DTYPE, target.L, target.L + target.L_MOT
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dev, dt)

    if op == "pair_self_attention":
        n = 2 if dev.type == "cpu" else 8
        s, o = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)
        subj, obj = s[s != o].to(dev), o[s != o].to(dev)
        p = subj.shape[0]
        xs = [rand(n, lt, h, dh) for _ in range(3)] + [rand(p, lp, h, dh) for _ in range(3)]
        do = rand(p, 2 * lt + lp, h, dh)

        def kernel(*x):
            return A.pair_self_attention(*x, subj, obj, impl="triton")

        def ref(*x):
            return A.pair_self_attention_ref(*x, subj, obj)

        def same(*x):
            return helpers.lowp_pair(*x, subj, obj)
    else:
        length, b, s_len = (3, 2, 4) if dev.type == "cpu" else (32, 16, 30)
        xs = [rand(length, h, dh), rand(b, s_len, h, dh), rand(b, s_len, h, dh)]
        do = rand(b, length, h, dh)

        def kernel(*x):
            return A.shared_query_attention(*x, impl="triton")

        ref, same = A.shared_query_attention_ref, helpers.lowp_shared
    results = []
    for f, cast in ((kernel, None), (ref, torch.float64), (same, None)):
        out, gs = helpers.grads(f, xs, do, cast)
        results.append([out, *gs])
    got, want, low = results
    return [(helpers.max_err(a, w), helpers.max_err(c, w)) for a, w, c in zip(got, want, low, strict=True)]


def tiles_worker(shard: int, shards: int, out: str) -> int:
    """Step 1 in one worker process: its share of the (op, head split, round) cases; round r forces every kernel's
    r-th allowed tile (cycling through shorter lists)."""
    import torch
    from uasan.kernels import _attention_common as common

    target, helpers = _load("benchmarks/target.py"), _load("tests/kernels/helpers.py")
    cuda = target.DEVICE.type == "cuda"
    arch = common.arch_of(torch.empty(0, device=target.DEVICE)) if cuda else 90
    cases = []
    for heads, (h, dh) in target.HEADS.items():
        dpad = common.head_dim_pad(dh)
        lists = {k: common.allowed_tiles(k, dpad, target.DTYPE.itemsize, arch) for k in common.TILED_KERNELS}
        rounds = max(len(v) for v in lists.values()) if cuda else 1  # dry run: the plumbing, once
        for r in range(rounds):
            forced = {k: v[r % len(v)] for k, v in lists.items() if v}
            cases += [(op, heads, h, dh, r, forced) for op in ("pair_self_attention", "shared_query_attention")]
    for i, (op, heads, h, dh, r, forced) in enumerate(cases):
        if i % shards != shard:
            continue
        common.FORCE_TILES.clear()
        common.FORCE_TILES.update(forced)
        t0 = time.perf_counter()
        row = {"op": op, "heads": heads, "round": r, "tiles": {k: str(t) for k, t in forced.items()}}
        try:
            errs = _tile_case(op, h, dh, i, target, helpers)
            # FlashAttention's rule on the GPU; under the interpreter (float32) a plain bound
            bounds = [2 * base + 1e-3 if cuda else 1e-4 * (1 + base) + 1e-4 for _, base in errs]
            bad = [j for j, ((e, _), bound) in enumerate(zip(errs, bounds, strict=True)) if e > bound]
            row.update(ok=not bad, worst=max(e for e, _ in errs), bad_tensors=bad)
        except Exception as exc:  # noqa: BLE001 - a tile that fails is a result
            row.update(ok=False, error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        row["seconds"] = round(time.perf_counter() - t0, 2)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


def run_tiles(limit: float, env: dict, work: Path, dry: bool) -> dict:
    shards = 1 if dry else max(1, min(8, (os.cpu_count() or 2) - 2))
    out = work / "tiles.jsonl"
    procs = []
    t0 = time.perf_counter()
    for i in range(shards):
        cmd = [sys.executable, str(Path(__file__)), "--tiles-worker", f"{i}/{shards}", str(out)]
        log = open(work / f"tiles.{i}.log", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    status = "ok"
    for proc, log in procs:
        try:
            rc = proc.wait(timeout=max(1.0, limit - (time.perf_counter() - t0)))
            if rc != 0:
                status = f"FAILED (exit {rc})"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = f"TIMED OUT ({limit:.0f} s)"
        log.close()
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if status == "ok" and (not rows or not all(r.get("ok") for r in rows)):
        status = "FAILED (a tile is wrong)" if rows else "FAILED (no result)"
    tail = [f"{sum(bool(r.get('ok')) for r in rows)} / {len(rows)} cases ok"]
    seconds = round(time.perf_counter() - t0, 1)
    return {"step": "tiles", "status": status, "seconds": seconds, "tail": tail, "rows": rows}


# ------------------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------------------


def environment(dry: bool) -> dict:
    import torch

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "mode": "dry run (CPU, Triton interpreter, float32, tiny sizes; not a measurement)" if dry else "CUDA, bf16",
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "missing"
    if torch.cuda.is_available() and not dry:
        p = torch.cuda.get_device_properties(0)
        mem = p.total_memory / 2**30
        info["device"] = f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {mem:.0f} GiB)"
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["commit"] = "?"
    return info


def bench_rows(path: Path) -> list[dict]:
    """pytest-benchmark JSON → rows {group, params, median_ms, extra}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [
        {"group": b["group"], "params": b.get("params") or {}, "ms": b["stats"]["median"] * 1e3,
         "extra": b.get("extra_info") or {}}
        for b in data.get("benchmarks", [])
    ]  # fmt: skip


def fmt(x, spec=".3g") -> str:
    return "—" if x is None else format(x, spec)


def junit_counts(path: Path) -> str:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return "no junit file"
    suites = [root] if root.tag == "testsuite" else list(root)
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return f"{passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped"


def verdict(value, goal: float, higher: bool = True) -> str:
    if value is None:
        return "not measured"
    met = value >= goal if higher else value <= goal
    return ("met" if met else "**not met**") + f" ({value:.2f}× vs {'≥' if higher else '≤'} {goal:g}×)"


def markdown(env: dict, steps: list[dict], work: Path, goal: dict, dry: bool) -> str:
    out = [f"# uasan GPU report — {env['device']}", ""]
    out.append(
        f"{env['date']} · {env['mode']} · torch {env['torch']} (CUDA {env['cuda']}) · Triton {env['triton']} · "
        f"Python {env['python']} · commit {env['commit']}"
    )
    out += ["", "## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for s in steps:
        note = s.get("note") or " / ".join(t.strip()[:90] for t in s.get("tail", [])[-1:])
        out.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {note.replace('|', '/')} |")

    tiles = next((s for s in steps if s["step"] == "tiles"), {}).get("rows", [])
    if tiles:
        out += ["", "## Tiles (each allowed tile forced; fwd + all gradients vs float64)", ""]
        out += ["| op | heads | round | ok | worst abs. error | seconds |", "|---|---|---|---|---|---|"]
        for r in sorted(tiles, key=lambda r: (r["op"], r["heads"], r["round"])):
            ok = "yes" if r.get("ok") else f"**NO** {r.get('error', r.get('bad_tensors', ''))}"
            out.append(f"| {r['op']} | {r['heads']} | {r['round']} | {ok} | {fmt(r.get('worst'))} | {r['seconds']} |")

    attn = bench_rows(work / "bench_attention.json")
    out += ["", "## Attention ops (median ms; peak MiB above the inputs; ratio = ms ÷ triton's ms, > 1: triton faster)"]
    out += ["", "| op | heads | segments | direction | path | ms | peak MiB | ratio |", "|---" * 8 + "|"]
    best_ratio: dict[str, float | None] = {}
    groups: dict[str, list[dict]] = {}
    for r in attn:
        groups.setdefault(r["group"], []).append(r)
    for group, rows in sorted(groups.items()):
        tri = next((r for r in rows if r["params"].get("path") == "triton"), None)
        for r in sorted(rows, key=lambda r: r["ms"]):
            p = r["params"]
            ratio = r["ms"] / tri["ms"] if tri else None
            heads, seg, direction = p.get("heads", "-"), p.get("seg", "-"), p.get("direction", "-")
            op = group.split("-")[0]
            out.append(
                f"| {op} | {heads} | {seg} | {direction} | {p.get('path', '?')} | {fmt(r['ms'])} | "
                f"{fmt(r['extra'].get('peak_mem_mib'))} | {fmt(ratio)} |"
            )
        sdpa = [r for r in rows if str(r["params"].get("path", "")).startswith("sdpa-")]
        if tri and sdpa and group.startswith("pair_self_attention"):
            best_ratio[group] = min(r["ms"] for r in sdpa) / tri["ms"]

    block = bench_rows(work / "bench_model.json")
    out += ["", "## SACEncoder + URADecoder block (median ms; peak MiB)", ""]
    out += ["| heads | segments | direction | path | ms | peak MiB |", "|---|---|---|---|---|---|"]
    by = {}
    for r in sorted(block, key=lambda r: (r["group"], r["ms"])):
        p = r["params"]
        by[(p.get("heads"), p.get("seg"), p.get("direction"), p.get("path"))] = r
        out.append(
            f"| {p.get('heads')} | {p.get('seg')} | {p.get('direction')} | {p.get('path')} | {fmt(r['ms'])} | "
            f"{fmt(r['extra'].get('peak_mem_mib'))} |"
        )

    train = bench_rows(work / "bench_train.json")
    out += ["", "## Stage-2 training throughput", "", "| impl | pairs/s | pairs | seconds |", "|---|---|---|---|"]
    pps = {}
    for r in train:
        e = r["extra"]
        pps[e.get("impl")] = e.get("pairs_per_s")
        rate = fmt(e.get("pairs_per_s"), ".1f")
        out.append(f"| {e.get('impl')} | {rate} | {e.get('pairs')} | {fmt(r['ms'] / 1e3)} |")

    h, seg = goal["heads"], goal["seg"]

    def ratio(a, b, key="ms"):
        if a is None or b is None:
            return None
        x, y = (a["ms"], b["ms"]) if key == "ms" else (a["extra"].get(key), b["extra"].get(key))
        return None if x is None or y is None or not y else x / y

    def row(direction, path):
        return by.get((h, seg, direction, path))

    out += ["", f"## Goals ({h}, {seg}{', dry run: not measurements' if dry else ''})", ""]
    out += ["| goal | verdict |", "|---|---|"]
    for direction in ("fwd", "fwd+bwd"):
        r = best_ratio.get(f"pair_self_attention-{h}-{seg}-{direction}")
        out.append(f"| pair attention {direction} ≥ 3× cat + best SDPA backend | {verdict(r, 3)} |")
    out.append(f"| block forward ≥ 3× eager | {verdict(ratio(row('fwd', 'naive'), row('fwd', 'triton')), 3)} |")
    compiled = ratio(row("fwd", "naive-compiled"), row("fwd", "triton"))
    out.append(f"| block forward ≥ 2× torch.compile | {verdict(compiled, 2)} |")
    mem = ratio(row("step", "triton"), row("step", "naive"), key="peak_mem_mib")
    out.append(f"| block training-step peak memory ≤ ½ eager | {verdict(mem, 0.5, higher=False)} |")
    tr = pps["triton"] / pps["torch"] if pps.get("triton") and pps.get("torch") else None
    out.append(f"| stage-2 training step ≥ 2× eager (reference ops) | {verdict(tr, 2)} |")
    return "\n".join(out) + "\n"


def _pytest_script() -> str:
    return str(Path(sys.executable).with_name("pytest"))


# ------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="the markdown report to write")
    ap.add_argument("--dry-run", action="store_true", help="CPU: interpreter, tiny sizes (implied without CUDA)")
    ap.add_argument("--full", action="store_true", help="every segment size, head split and path")
    ap.add_argument("--budget-s", type=float, help="deadline for all steps together (default 470 s; dry run 900 s)")
    ap.add_argument("--work", help="folder for logs and JSON (default: next to OUT)")
    ap.add_argument("--install", action="store_true", help="first `pip install --no-deps --no-build-isolation .`")
    ap.add_argument("--tiles-worker", nargs=2, metavar=("I/N", "JSONL"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.tiles_worker:
        shard, shards = (int(x) for x in a.tiles_worker[0].split("/"))
        return tiles_worker(shard, shards, a.tiles_worker[1])
    if not a.out:
        ap.error("the report path (OUT) is required")

    import torch

    dry = a.dry_run or not torch.cuda.is_available()
    out = Path(a.out).resolve()
    work = Path(a.work).resolve() if a.work else out.with_suffix(".work")
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg", TRITON_DEFAULT_FP_FUSION="1")
    if dry:
        env.update(UASAN_BENCH_DRY="1", TRITON_INTERPRET="1")
    else:
        env.pop("TRITON_INTERPRET", None)
        env.pop("UASAN_BENCH_DRY", None)
        env.setdefault("TRITON_CACHE_DIR", str(work / "triton-cache"))  # shared by every step
    limits = DRY_LIMITS if dry else STEP_LIMITS
    deadline = time.perf_counter() + (a.budget_s or (900.0 if dry else 470.0)) - RESERVE_S

    def limit(name: str) -> float:
        return min(limits[name], deadline - time.perf_counter())

    # `python -m pytest` would put the checkout first on sys.path (see _load); -P (Python >= 3.11) keeps it off
    runner = [sys.executable, "-P", "-m", "pytest"] if sys.version_info >= (3, 11) else [_pytest_script()]
    pytest = [*runner, "-p", "no:cacheprovider", "-q", "-rfE"]
    bench = ["--benchmark-enable", "--benchmark-min-rounds=5", "--benchmark-max-time=0.25", "--benchmark-warmup=off"]
    if dry:
        bench = ["--benchmark-enable", "--benchmark-min-rounds=1", "--benchmark-max-time=0", "--benchmark-warmup=off"]
    goal = {"heads": "1x16", "seg": "N2"} if dry else {"heads": "8x64", "seg": "N32"}
    pick_attn = "gpu" if a.full or dry else "gpu and N32 and not mha"
    pick_block = "gpu" if a.full or dry else "gpu and N32 and 8x64"
    tests = ["tests/ops/test_pair_self_attention.py", "tests/ops/test_shared_query_attention.py",
             "tests/ops/test_pair_cross_attention.py", "tests/kernels", "--ignore=tests/kernels/test_compile.py",
             "--ignore=tests/kernels/test_gpu_report.py"]  # fmt: skip
    if dry:
        tests = ["tests/kernels/test_tiles.py", "-k", "two and chunks and one"]
    plan = [
        ("attention", [*pytest, "benchmarks/bench_pair_self_attention.py", "benchmarks/bench_shared_query_attention.py",
                       "-k", pick_attn, *bench,
                       f"--benchmark-json={work / 'bench_attention.json'}"]),
        ("block", [*pytest, "benchmarks/bench_model.py", "-k", pick_block, *bench,
                   f"--benchmark-json={work / 'bench_model.json'}"]),
        ("train", [*pytest, "benchmarks/bench_train.py", *bench, f"--benchmark-json={work / 'bench_train.json'}"]),
        # last: the tiles step already checked every tile at the model's shapes; the tests compile many more
        # specialisations (tiny odd shapes) and take whatever time is left
        ("tests", [*pytest, *tests, f"--junitxml={work / 'tests.xml'}"]),
    ]  # fmt: skip

    steps = []
    print(f"gpu_report: {'dry run' if dry else 'CUDA'}; logs and JSON in {work}", flush=True)
    if a.install:  # an offline image: nothing to resolve or fetch, its torch / Triton stay
        pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "."]
        steps.append(run_step("install", pip, min(240.0, deadline - time.perf_counter()), env, work / "install.log"))
        print(f"  install: {steps[-1]['status']} ({steps[-1]['seconds']} s)", flush=True)
    for old in ("tiles.jsonl", "tests.xml", "bench_attention.json", "bench_model.json", "bench_train.json"):
        (work / old).unlink(missing_ok=True)
    steps.append(run_tiles(limit("tiles"), env, work, dry))
    print(f"  tiles: {steps[-1]['status']} ({steps[-1]['seconds']} s)", flush=True)
    for name, cmd in plan:
        left = limit(name)
        if left < 5:
            steps.append({"step": name, "status": "SKIPPED (no time left)", "seconds": 0, "tail": []})
        else:
            steps.append(run_step(name, cmd, left, env, work / f"{name}.log"))
        if name == "tests":
            steps[-1]["note"] = junit_counts(work / "tests.xml")
        print(f"  {name}: {steps[-1]['status']} ({steps[-1]['seconds']} s)", flush=True)

    text = markdown(environment(dry), steps, work, goal, dry)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(text)
    return 0 if all(s["status"] == "ok" for s in steps) else 1  # goals not met are results, not failures


if __name__ == "__main__":
    sys.exit(main())
