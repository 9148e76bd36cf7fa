"""Test-wide setup. Triton kernels run under the interpreter when there is no CUDA, so every kernel is
tested on the CPU; the variable must be set before any kernel module is imported."""

import os

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name: fresh inputs per test, reproducible per run."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
