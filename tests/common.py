"""Helpers shared by the tests: the devices to run on and skip marks for what a machine may lack.

from tests.common import DEVICES, needs_cuda, needs_ext

@pytest.mark.parametrize("device", DEVICES)    # "cpu" always, "cuda" where there is a GPU (skipped elsewhere)
def test_op(device): ...
"""

from __future__ import annotations

import pytest
import torch

from uasan import _ext

CUDA = torch.cuda.is_available()

needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")
needs_ext = pytest.mark.skipif(not _ext.HAS_EXT, reason="C++ extension not built")

DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
