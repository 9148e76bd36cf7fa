"""Benchmarks share the tests' setup (Triton interpreter without CUDA or in a dry run), a seeded generator, the
``bench`` timer and the ``peak_mem`` meter."""

import os

import numpy as np
import pytest

try:
    import torch

    _cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _cuda = False
if not _cuda or os.environ.get("UASAN_BENCH_DRY") == "1":  # the GPU rows' dry run (benchmarks/target.py)
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def bench():
    """``bench(benchmark, fn, *args, slow=False, **kw)``: times ``fn``; slow reference paths get 3 rounds."""

    def run(benchmark, fn, *args, slow: bool = False, **kwargs):
        if slow:
            return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=3, iterations=1, warmup_rounds=0)
        return benchmark(fn, *args, **kwargs)

    return run


@pytest.fixture
def peak_mem():
    """``peak_mem(benchmark, fn, empty_cache=False)``: runs ``fn`` once more (call it once before, so that lazy
    allocations, autotuning and compilation are done) and records in ``benchmark.extra_info["peak_mem_mib"]`` the
    peak CUDA memory above what was allocated before, in MiB; returns it. ``empty_cache`` releases the caching
    allocator's free blocks first. On the CPU (dry runs) nothing is measured: it records and returns None."""

    def measure(benchmark, fn, empty_cache: bool = False) -> float | None:
        if not torch.cuda.is_available() or os.environ.get("UASAN_BENCH_DRY") == "1":
            fn()
            benchmark.extra_info["peak_mem_mib"] = None
            return None
        torch.cuda.synchronize()
        if empty_cache:
            torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        mib = (torch.cuda.max_memory_allocated() - base) / 2**20
        benchmark.extra_info["peak_mem_mib"] = mib
        return mib

    return measure
