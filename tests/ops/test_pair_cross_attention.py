"""pair_cross_attention: its "triton" path (PyTorch's SDPA) against the float64 reference, forward and every gradient
(an expanded shared query too), dispatch, bad input."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.helpers import CUDA, assert_close, grads
from tests.ops.attention_inputs import _gen, _randn
from uasan.ops import attention as A


@pytest.mark.parametrize("expanded", [False, True])
def test_pair_cross_attention(rng, expanded):
    g = _gen(rng)
    p, t, h, dh = 5, 11, 2, 16
    f32 = torch.float32
    q = _randn(g, 1, h, dh, dtype=f32).expand(p, h, dh) if expanded else _randn(g, p, h, dh, dtype=f32)
    inputs = [q, _randn(g, p, t, h, dh, dtype=f32), _randn(g, p, t, h, dh, dtype=f32)]
    do = _randn(g, p, h, dh, dtype=f32)
    out, gs = grads(lambda *x: A.pair_cross_attention(*x, impl="triton"), inputs, do)
    out64, gs64 = grads(A.pair_cross_attention_ref, inputs, do, torch.float64)
    assert_close([out, *gs], [out64, *gs64], ["out", "q", "k", "v"], atol=1e-3 if CUDA else 1e-4)
    cpu = [x.cpu() for x in inputs]
    assert torch.equal(A.pair_cross_attention(*cpu), A.pair_cross_attention_ref(*cpu))


def test_pair_cross_attention_bad_input():
    cq, ck = torch.zeros(3, 2, 16), torch.zeros(3, 7, 2, 16)
    for args, match in [((cq[:2], ck, ck), "k"), ((cq, ck, ck[:, :3]), "v"), ((cq, ck, ck[..., :1, :]), "v")]:
        with pytest.raises(ValueError, match=match):
            A.pair_cross_attention(*args)
    with pytest.raises(ValueError, match="impl"):
        A.pair_cross_attention(cq, ck, ck, impl="cpp")
    with pytest.raises(ValueError, match="float64"):
        A.pair_cross_attention(cq.double(), ck.double(), ck.double(), impl="triton")
