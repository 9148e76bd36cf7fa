"""shared_query_attention: the Triton path against the float64 reference, forward and every gradient (odd lengths,
tiled head dims, a split dQ reduction), dispatch, empty inputs, bad input. Devices and error rule as in
``tests/ops/test_pair_self_attention.py``.
"""

from __future__ import annotations

import pytest
import torch
from uasan.kernels import shared_query_attention as shared_kernels

from tests.kernels.helpers import check, grads, lowp_shared
from tests.ops.attention_inputs import _gen, _randn
from uasan.ops import attention as A


def _check_shared(g, length, b, s, h, dh):
    inputs = [_randn(g, length, h, dh), _randn(g, b, s, h, dh), _randn(g, b, s, h, dh)]
    do = _randn(g, b, length, h, dh)
    got = grads(lambda *x: A.shared_query_attention(*x, impl="triton"), inputs, do)
    want = grads(A.shared_query_attention_ref, inputs, do, torch.float64)
    assert got[0].shape == (b, length, h, dh)
    check(got, want, lambda: grads(lowp_shared, inputs, do), ["out", "q", "k", "v"])


@pytest.mark.parametrize(
    ("length", "b", "s", "h", "dh"),
    [(5, 3, 7, 2, 16), (17, 2, 19, 1, 32), (1, 1, 1, 4, 16), (3, 2, 5, 1, 512), (4, 3, 6, 2, 24)],
)
def test_shared_query_attention(rng, length, b, s, h, dh):
    _check_shared(_gen(rng), length, b, s, h, dh)


def test_shared_query_attention_split_dq(rng, monkeypatch):
    monkeypatch.setattr(shared_kernels, "DQ_SPLIT", 3)
    _check_shared(_gen(rng), 4, 5, 3, 2, 16)


def test_shared_query_attention_dispatch_and_empty(rng):
    """auto on CPU is the reference; B = 0, L = 0 and S = 0 (softmax over no keys: 0) with zero gradients."""
    g = _gen(rng)
    q, k, v = (x.cpu().float() for x in (_randn(g, 4, 2, 16), _randn(g, 3, 5, 2, 16), _randn(g, 3, 5, 2, 16)))
    assert torch.equal(A.shared_query_attention(q, k, v), A.shared_query_attention_ref(q, k, v))
    for length, b, s in ((4, 0, 5), (0, 3, 5), (4, 3, 0)):
        inputs = [_randn(g, length, 2, 16), _randn(g, b, s, 2, 16), _randn(g, b, s, 2, 16)]
        do = _randn(g, b, length, 2, 16)
        out, gs = grads(lambda *x: A.shared_query_attention(*x, impl="triton"), inputs, do)
        assert out.shape == (b, length, 2, 16) and not out.any()
        assert all(gr.shape == x.shape and not gr.any() for x, gr in zip(inputs, gs, strict=True))


def test_shared_query_attention_bad_input():
    q, k = torch.zeros(4, 2, 16), torch.zeros(3, 5, 2, 16)
    for args, match in [
        ((q[0], k, k), "q"),
        ((q, k[..., :8], k), "k"),
        ((q, k, k[:, :4]), "v"),
        ((q, k, k.half()), "v"),
        ((q, k, [[0.0]]), "v"),
    ]:
        with pytest.raises(ValueError, match=match):
            A.shared_query_attention(*args)
