"""Every code path of the tiled kernels, forced one tile at a time (``FORCE_TILES``), against float64 references.

The ops' tests run one tile (the interpreter's). The GPU tiles take other branches of the same kernels: the head dim
in one score slice held in registers (``NUM_K == 1``) or in slices loaded per step, one output chunk (full width) or
several, tiles larger than the sequence. Each case here forces a tile that takes one combination, forward and every
gradient of both tiled ops; under the interpreter in float32, on a GPU in bfloat16 with FlashAttention's error rule.
"""

from __future__ import annotations

import pytest
import torch
from uasan.kernels import _attention_common as common
from uasan.kernels._attention_common import Tile

from tests.kernels.helpers import DEVICE, DTYPE, check, grads, lowp_pair, lowp_shared
from uasan.ops import attention as A

# (tile, head dim): which branch each one takes
CASES = {
    "one slice, one chunk, tiles > L": (Tile(64, 64, 128, 128, 4, 2), 24),
    "one slice, two chunks": (Tile(32, 16, 32, 64, 4, 2), 64),
    "eight slices, full width": (Tile(16, 32, 512, 64, 8, 1), 512),
    "four slices, two chunks": (Tile(16, 16, 256, 128, 4, 2), 512),
}


@pytest.fixture
def force(monkeypatch):
    def set_tile(tile: Tile) -> None:
        monkeypatch.setattr(common, "FORCE_TILES", dict.fromkeys(common.TILED_KERNELS, tile))

    return set_tile


def _randn(g, *shape):
    return torch.randn(*shape, generator=g).to(DEVICE, DTYPE)


@pytest.mark.parametrize("case", list(CASES))
def test_pair_self_attention_tiles(force, case):
    tile, dh = CASES[case]
    force(tile)
    g = torch.Generator().manual_seed(1)
    n, lt, lp, h = 3, 3, 5, 1
    pairs = torch.tensor([(0, 1), (2, 0), (1, 1), (2, 1)], device=DEVICE)
    subj, obj = pairs[:, 0].contiguous(), pairs[:, 1].contiguous()
    inputs = [_randn(g, n, lt, h, dh) for _ in range(3)] + [_randn(g, 4, lp, h, dh) for _ in range(3)]
    do = _randn(g, 4, 2 * lt + lp, h, dh)
    got = grads(lambda *x: A.pair_self_attention(*x, subj, obj, impl="triton"), inputs, do)
    want = grads(lambda *x: A.pair_self_attention_ref(*x, subj, obj), inputs, do, torch.float64)
    check(got, want, lambda: grads(lambda *x: lowp_pair(*x, subj, obj), inputs, do), list("oqkvQKV"))


@pytest.mark.parametrize("case", list(CASES))
def test_shared_query_attention_tiles(force, case):
    tile, dh = CASES[case]
    force(tile)
    g = torch.Generator().manual_seed(2)
    inputs = [_randn(g, 5, 2, dh), _randn(g, 3, 7, 2, dh), _randn(g, 3, 7, 2, dh)]
    do = _randn(g, 3, 5, 2, dh)
    got = grads(lambda *x: A.shared_query_attention(*x, impl="triton"), inputs, do)
    want = grads(A.shared_query_attention_ref, inputs, do, torch.float64)
    check(got, want, lambda: grads(lowp_shared, inputs, do), list("oqkv"))


@pytest.mark.parametrize("kernel", common.TILED_KERNELS)
def test_autotune_prune_keeps_the_allowed_tiles(kernel):
    """The GPU autotuner's ``early_config_prune`` (which never runs under the interpreter): of the kernel's whole
    search space it keeps exactly the allowed tiles of the launch's head dim, the first one with UASAN_AUTOTUNE=0,
    and refuses float32 (no float32 tile: the dispatcher sends float32 CUDA tensors to the reference)."""
    configs = [t.config() for t in common.SEARCH_SPACE[kernel]]
    for dpad in (16, 64, 512, 2048):
        want = [repr(t.config().all_kwargs()) for t in common.allowed_tiles(kernel, dpad, 2, 90)]
        args = {"X": torch.empty(0, dtype=torch.bfloat16)}
        kept = common.tile_pruner(kernel, "X", 90)(configs, args, HEAD_DIM_PAD=dpad)
        assert sorted(repr(c.all_kwargs()) for c in kept) == sorted(want) and want
        first = common.tile_pruner(kernel, "X", 90, first_only=True)(configs, args, HEAD_DIM_PAD=dpad)
        assert [repr(c.all_kwargs()) for c in first] == want[:1]
    with pytest.raises(ValueError, match="no tile"):
        common.tile_pruner(kernel, "X", 80)(configs, {"X": torch.empty(0)}, HEAD_DIM_PAD=64)
