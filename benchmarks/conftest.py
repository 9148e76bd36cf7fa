"""Benchmarks share the tests' setup (Triton interpreter without CUDA) and a seeded generator."""

import os

import numpy as np
import pytest

try:
    import torch

    _cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _cuda = False
if not _cuda:
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
