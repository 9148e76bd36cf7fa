"""Relation evaluation from files and in memory: uasan vs the official VidVRD-helper pipeline, same inputs.

Workloads (``eval_workload.py``, written once per session to the temp folder): VidOR-sized (835 validation videos,
~30 s each, 2–8 objects, 5–40 ground-truth relations, 200 predictions per video: ~550 MB of predictions, ~290 MB of
annotations) and VidVRD-sized (200 test videos, 200 predictions each). Groups, per workload:

* ``files``: end to end from the files. ``official`` = annotation load + ``get_relation_insts`` + ``json.load`` of
  the predictions + ``evaluate`` (restated from VidVRD-helper); ``uasan`` = ``evaluate_files`` (C++ readers, lazy
  boxes); ``uasan_all`` checks every box; ``orjson_dicts`` = the well-kept-package alternative: ``orjson.loads``
  of the predictions and the C++ dict reader.
* ``memory``: the official ``evaluate`` vs ``evaluate_relations`` on the same in-memory dicts (default: the boxes
  the matching compares are checked; and ``check_boxes="all"``), and on :class:`~uasan.evaluation.RelationColumns`
  (what ``uasan.predict`` will hold).
* ``parse``: the prediction file alone: ``json.load``, ``orjson.loads``, ``msgspec``, ``pysimdjson`` (tape only and
  into columns), the C++ reader (index pass, and every box parsed).
* ``test_peak_memory``: each pipeline in a fresh subprocess, its wall time and peak RSS (``VmHWM``; the child's
  ``ru_maxrss`` would report this big process's own peak, which Linux carries across fork + exec), and the sampled
  split of the resident set into anonymous memory and file-backed pages (a memory-mapped file's pages count as
  resident once read; uasan's readers drop them behind them).

Every case first asserts that its metrics equal the official pipeline's. With ``--benchmark-disable`` (the CI's
smoke run) both workloads shrink to 6 videos × 25 predictions. Run:
``pytest benchmarks/bench_eval.py --benchmark-enable --benchmark-columns=median,rounds -s``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import eval_workload as W  # noqa: E402

from uasan.evaluation import evaluate_files, evaluate_relations, read_groundtruth, read_predictions  # noqa: E402

_EXPECTED: dict[str, dict] = {}  # official metrics per workload, computed once


def _smoke(config) -> bool:
    return config.getoption("benchmark_disable", False) and not config.getoption("benchmark_enable", False)


@pytest.fixture(scope="module", params=["vidvrd", "vidor"])
def workload(request):
    w = {"vidvrd": W.VIDVRD, "vidor": W.VIDOR}[request.param]
    if _smoke(request.config):
        w = W.smoke(w)
    root, pred = W.write_workload(w)
    return w, root, pred


def expected(workload) -> dict:
    w, root, pred = workload
    if w.name not in _EXPECTED:
        _EXPECTED[w.name] = W.official_pipeline(root, pred, w.dataset)
    return _EXPECTED[w.name]


def timed(benchmark, fn, *args, rounds: int):
    """pedantic timing: the official pipeline takes minutes on the VidOR workload, so its rows run once."""
    return benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=0)


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() >= want.keys()
    for k, v in want.items():
        assert abs(got[k] - v) <= 1e-6, (k, got[k], v)


def _orjson_dicts(root: Path, pred: Path) -> dict:
    import orjson

    gt = read_groundtruth(root).to_dicts()
    with open(pred, "rb") as f:
        results = orjson.loads(f.read())["results"]
    return evaluate_relations(gt, results)


FILES = {
    "official": lambda w, root, pred: W.official_pipeline(root, pred, w.dataset),
    "uasan": lambda w, root, pred: evaluate_files(root, pred),
    "uasan_all": lambda w, root, pred: evaluate_files(root, pred, check_boxes="all"),
    "orjson_dicts": lambda w, root, pred: _orjson_dicts(root, pred),
}


@pytest.mark.parametrize("impl", list(FILES))
def test_eval_files(benchmark, workload, impl):
    w, root, pred = workload
    if impl == "orjson_dicts":
        pytest.importorskip("orjson")
    benchmark.group = f"eval-files-{w.name}"
    slow = impl in ("official", "orjson_dicts")
    got = timed(benchmark, FILES[impl], w, root, pred, rounds=1 if slow else 3)
    if impl == "official":
        _EXPECTED.setdefault(w.name, got)
    assert_same(got, expected(workload))


def _parse_simdjson_columns(path: Path) -> int:
    """pysimdjson's lazy proxies into flat box arrays (as_buffer), no per-box Python object; no box checks."""
    import simdjson

    doc = simdjson.Parser().load(str(path))
    results = doc["results"]
    n, parts = 0, []
    for vid in results.keys():  # values() would convert every list to Python objects
        for r in results[vid]:
            b, e = r["duration"]
            tuple(r["triplet"])
            float(r["score"])
            for f in ("sub_traj", "obj_traj"):
                parts.append(np.frombuffer(r[f].as_buffer(of_type="d"), dtype=np.float64).reshape(e - b, 4))
            n += 1
    return int(sum(len(p) for p in parts))


def _load_with(module: str, path: Path):
    if module == "json":
        with open(path) as f:
            return json.load(f)
    mod = pytest.importorskip(module)
    with open(path, "rb") as f:
        data = f.read()
    return mod.loads(data) if module == "orjson" else mod.json.decode(data)


PARSE = {
    "json": lambda p: _load_with("json", p),
    "orjson": lambda p: _load_with("orjson", p),
    "msgspec": lambda p: _load_with("msgspec", p),
    "simdjson_tape": lambda p: pytest.importorskip("simdjson").Parser().load(str(p)),
    "simdjson_columns": lambda p: _parse_simdjson_columns(p),
    "uasan_index": lambda p: read_predictions(p, lazy=True),
    "uasan_columns": lambda p: read_predictions(p),
}


@pytest.mark.parametrize("impl", list(PARSE))
def test_parse_predictions(benchmark, workload, impl):
    w, root, pred = workload
    if impl.startswith("simdjson"):
        pytest.importorskip("simdjson")
    benchmark.group = f"parse-{w.name}"
    slow = impl in ("json", "orjson", "msgspec", "simdjson_columns")
    got = timed(benchmark, PARSE[impl], pred, rounds=1 if slow else 3)
    if impl == "uasan_columns":  # same boxes as json.load
        with open(pred) as f:
            results = json.load(f)["results"]
        first = next(iter(results))
        if results[first]:
            np.testing.assert_array_equal(got.boxes[: len(results[first][0]["sub_traj"])],
                                          results[first][0]["sub_traj"])  # fmt: skip
    del got
    gc.collect()


def _run(which: str, w, root: Path, pred: Path) -> dict:
    out = subprocess.run(
        [sys.executable, W.__file__, which, str(root), str(pred), w.dataset],
        capture_output=True, text=True, check=True, cwd=os.path.dirname(W.__file__),
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory(request, workload, record_property):
    """Each pipeline from the files in a fresh process: wall time and peak RSS; uasan's peak must be lower (on the
    real-sized workloads: on the smoke workload both are the interpreter's and the imports' own footprint)."""
    w, root, pred = workload
    runs = {which: _run(which, w, root, pred) for which in ("uasan", "official")}
    assert_same(runs["uasan"]["metrics"], runs["official"]["metrics"])
    size = (sum(p.stat().st_size for p in Path(root).rglob("*.json")) + pred.stat().st_size) / 2**20
    for which, r in runs.items():
        print(f"\n{w.name} {which}: {r['seconds']:.2f} s, peak RSS {r['peak_mib']:.0f} MiB ({size:.0f} MiB of JSON; "
              f"largest sampled RSS {r['sampled_rss_mib']:.0f} MiB = {r['sampled_anon_at_peak_mib']:.0f} anonymous + "
              f"{r['sampled_file_at_peak_mib']:.0f} file-backed; peaks: anonymous {r['sampled_anon_mib']:.0f}, "
              f"file-backed {r['sampled_file_mib']:.0f})")  # fmt: skip
        record_property(f"{which}_peak_mib", r["peak_mib"])
        record_property(f"{which}_seconds", r["seconds"])
    if not _smoke(request.config):
        assert runs["uasan"]["peak_mib"] < runs["official"]["peak_mib"]


# Last in the file: the module-scoped dicts (GBs on the VidOR workload) live only while these rows run.
@pytest.fixture(scope="module")
def in_memory(workload):
    """The official pipeline's in-memory inputs (dicts of lists) and the same as columns."""
    w, root, pred = workload
    gt = W.official_groundtruth(root, w.dataset)
    with open(pred) as f:
        results = json.load(f)["results"]
    columns = read_groundtruth(root), read_predictions(pred)
    yield gt, results, columns
    del gt, results, columns
    gc.collect()


MEMORY = {
    "official": lambda gt, pred, cols: W.official_evaluate(gt, pred),
    "dicts": lambda gt, pred, cols: evaluate_relations(gt, pred),  # check_boxes="used"
    "dicts_all": lambda gt, pred, cols: evaluate_relations(gt, pred, check_boxes="all"),
    "columns": lambda gt, pred, cols: evaluate_relations(*cols),
}


@pytest.mark.parametrize("impl", list(MEMORY))
def test_eval_in_memory(benchmark, workload, in_memory, impl):
    w = workload[0]
    benchmark.group = f"eval-memory-{w.name}"
    got = timed(benchmark, MEMORY[impl], *in_memory, rounds=1 if impl == "official" else 3)
    assert_same(got, expected(workload))
