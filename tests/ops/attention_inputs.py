"""Random inputs shared by the attention op tests (on the test device, in the test dtype: tests/kernels/helpers)."""

from __future__ import annotations

import torch

from tests.kernels.helpers import DEVICE, DTYPE


def _gen(rng) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def _randn(g: torch.Generator, *shape: int, dtype=None) -> torch.Tensor:
    return torch.randn(*shape, generator=g).to(device=DEVICE, dtype=dtype or DTYPE)
