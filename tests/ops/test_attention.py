"""Attention ops: the Triton paths (under the interpreter without CUDA) against float64 references, forward and every
gradient, on odd lengths, shuffled / repeated / self pairs, tiled head dims; determinism; dispatch; bad input.

Shapes stay tiny: every kernel program runs in the Triton interpreter on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from uasan.kernels import pair_attention as pair_kernels
from uasan.kernels import shared_query_attention as shared_kernels

from uasan.ops import attention as A

ATOL = 1e-4  # float32 kernel vs float64 reference


def _gen(rng) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(2**31)))


def _randn(g: torch.Generator, *shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g).to(dtype)


def _all_pairs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The N·(N−1) ordered pairs, shuffled."""
    pairs = torch.tensor([(s, o) for s in range(n) for o in range(n) if s != o], dtype=torch.int64)
    pairs = pairs[torch.randperm(len(pairs), generator=g)]
    return pairs[:, 0].contiguous(), pairs[:, 1].contiguous()


def _pair_inputs(g, n, lt, lp, h, dh, subj, obj, dtype=torch.float32):
    p = subj.shape[0]
    traj = [_randn(g, n, lt, h, dh, dtype=dtype) for _ in range(3)]  # (N, Lt, H, Dh)
    pair = [_randn(g, p, lp, h, dh, dtype=dtype) for _ in range(3)]  # (P, Lp, H, Dh)
    return traj + pair


def _grads(fn, inputs, do, dtype=None):
    """fn(*inputs) and d/d inputs of <fn, do>; inputs cast to ``dtype`` first when given."""
    xs = [x.detach().to(dtype or x.dtype).requires_grad_() for x in inputs]
    out = fn(*xs)
    return out, torch.autograd.grad(out, xs, do.to(out.dtype))


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().amax()) if a.numel() else 0.0


def _assert_close(got, want, names, atol=ATOL):
    for name, a, b in zip(names, got, want, strict=True):
        assert a.shape == b.shape, name
        bound = atol + 1e-4 * float(b.detach().abs().amax() if b.numel() else 0)
        assert _max_err(a, b) <= bound, (name, _max_err(a, b))


PAIR_NAMES = ["traj_q", "traj_k", "traj_v", "pair_q", "pair_k", "pair_v"]


def _check_pair(g, n, lt, lp, h, dh, subj, obj, scale=None):
    inputs = _pair_inputs(g, n, lt, lp, h, dh, subj, obj)
    do = _randn(g, subj.shape[0], 2 * lt + lp, h, dh)  # (P, 2Lt+Lp, H, Dh)

    def triton(*x):
        return A.pair_self_attention(*x, subj, obj, scale=scale, impl="triton")

    def ref(*x):
        return A.pair_self_attention_ref(*x, subj, obj, scale=scale)

    out, grads = _grads(triton, inputs, do)
    out64, grads64 = _grads(ref, inputs, do, torch.float64)
    assert out.dtype == torch.float32 and out.shape == (subj.shape[0], 2 * lt + lp, h, dh)
    _assert_close([out, *grads], [out64, *grads64], ["out", *PAIR_NAMES])
    return inputs, do


# ------------------------------------------------------------------------------------------------------------------
# pair_self_attention
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "lt", "lp", "h", "dh"),
    [
        (2, 3, 5, 1, 16),  # odd lengths
        (3, 3, 0, 2, 32),  # no pair tokens
        (3, 7, 9, 4, 16),  # L = 23: two query and two key tiles
        (2, 17, 3, 1, 32),  # Lt = 17: two trajectory row blocks in the backward
        (3, 2, 3, 3, 24),  # head dim not a power of two
    ],
)
def test_pair_all_pairs_shuffled(rng, n, lt, lp, h, dh):
    g = _gen(rng)
    subj, obj = _all_pairs(n, g)
    _check_pair(g, n, lt, lp, h, dh, subj, obj)


def test_pair_repeats_self_pairs_unused_trajectories(rng):
    """N = 7, random pairs: repeated pairs, s == o, trajectories in no pair (zero gradient)."""
    g = _gen(rng)
    subj = torch.tensor([4, 0, 4, 2, 2, 6, 0, 4, 2], dtype=torch.int64)
    obj = torch.tensor([0, 4, 0, 2, 6, 6, 2, 4, 0], dtype=torch.int64)
    _check_pair(g, 7, 3, 5, 2, 16, subj, obj)


def test_pair_single_pair_self(rng):
    g = _gen(rng)
    _check_pair(g, 2, 1, 1, 2, 16, torch.tensor([1]), torch.tensor([1]))
    _check_pair(g, 3, 3, 5, 1, 32, torch.tensor([2]), torch.tensor([0]), scale=0.3)


def test_pair_head_dim_512(rng):
    """The paper's single head of width 512: the head dim is tiled (4 chunks of 128 under the interpreter)."""
    g = _gen(rng)
    subj, obj = torch.tensor([1, 0, 1]), torch.tensor([0, 1, 1])
    _check_pair(g, 2, 3, 2, 1, 512, subj, obj)


@pytest.mark.parametrize("splits", [2, 3])
def test_pair_split_trajectory_reduction(rng, monkeypatch, splits):
    """The trajectory gradients cut into ranges of pairs and summed in a fixed order give the same answer."""
    monkeypatch.setattr(pair_kernels, "TRAJ_SPLIT", splits)
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    _check_pair(g, 3, 3, 5, 2, 16, subj, obj)


def test_pair_deterministic_and_noncontiguous(rng):
    """Two backward passes are bitwise equal; strided views (as the model's head split gives) are accepted."""
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    base = _pair_inputs(g, 3, 3, 4, 2, 16, subj, obj)
    inputs = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in base]  # same values, strides (…, H, Lt, Dh)
    assert not inputs[0].is_contiguous()
    do = _randn(g, subj.shape[0], 10, 2, 16)

    def triton(*x):
        return A.pair_self_attention(*x, subj, obj, impl="triton")

    out1, g1 = _grads(triton, inputs, do)
    out2, g2 = _grads(triton, inputs, do)
    assert torch.equal(out1, out2) and all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))
    out64, g64 = _grads(lambda *x: A.pair_self_attention_ref(*x, subj, obj), base, do, torch.float64)
    _assert_close([out1, *g1], [out64, *g64], ["out", *PAIR_NAMES])


class _GatherRecorder(TorchDispatchMode):
    """Records the sizes of every gather / concatenation the torch side runs."""

    OPS = ("aten.index.", "aten.index_select", "aten.gather", "aten.cat", "aten.stack", "aten.take", "aten.embedding")

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if str(func).startswith(self.OPS):
            for o in out if isinstance(out, (tuple, list)) else [out]:
                self.sizes.append((str(func), o.numel()))
        return out


def test_pair_never_gathers_features(rng):
    """Forward and backward of the Triton path gather nothing but the (2P,) pair-entry index (the CSR of the
    backward): the trajectory rows are read through subj / obj inside the kernels."""
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    inputs = [x.requires_grad_() for x in _pair_inputs(g, 3, 3, 5, 2, 16, subj, obj)]
    with _GatherRecorder() as rec:
        out = A.pair_self_attention(*inputs, subj, obj, impl="triton")
        out.backward(torch.ones_like(out))
    assert rec.sizes and all(size <= 2 * subj.shape[0] for _, size in rec.sizes), rec.sizes
    with _GatherRecorder() as rec:  # the reference does materialise X_p (P, 2Lt+Lp, H, Dh)
        A.pair_self_attention_ref(*inputs, subj, obj)
    assert max(size for _, size in rec.sizes) == subj.shape[0] * 11 * 2 * 16


def test_pair_float16_flash_rule(rng):
    """float16 under the kernel: |kernel − ref64| ≤ 2·|torch float16 − ref64| + atol (flash-attention's rule)."""
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    inputs = _pair_inputs(g, 3, 3, 5, 2, 16, subj, obj, torch.float16)
    do = _randn(g, subj.shape[0], 11, 2, 16, dtype=torch.float16)
    got = _grads(lambda *x: A.pair_self_attention(*x, subj, obj, impl="triton"), inputs, do)
    want = _grads(lambda *x: A.pair_self_attention_ref(*x, subj, obj), inputs, do, torch.float64)
    same = _grads(lambda *x: _lowp_pair(*x, subj, obj), inputs, do)
    _flash_rule(got, want, same, atol=2e-3)


def test_pair_dispatch(rng):
    """auto on CPU and impl="torch" are the reference; P = 0 and an empty sequence are valid."""
    g = _gen(rng)
    subj, obj = _all_pairs(2, g)
    inputs = _pair_inputs(g, 2, 3, 2, 1, 16, subj, obj)
    ref = A.pair_self_attention_ref(*inputs, subj, obj)
    assert torch.equal(A.pair_self_attention(*inputs, subj, obj), ref)
    assert torch.equal(A.pair_self_attention(*inputs, subj, obj, impl="torch"), ref)
    assert torch.equal(A.pair_self_attention(*inputs, subj.int(), obj.int(), impl="torch"), ref)  # int32 indices
    none = torch.empty(0, dtype=torch.int64)
    empty = [x[:0] for x in inputs[3:]]
    for impl in ("torch", "triton"):
        out = A.pair_self_attention(*inputs[:3], *empty, none, none, impl=impl)
        assert out.shape == (0, 8, 1, 16)


def _lowp_pair(tq, tk, tv, pq, pk, pv, subj, obj):
    """Materialise-then-attend entirely in the input dtype (the 'PyTorch same dtype' baseline)."""
    q, k, v = (torch.cat([t[subj], t[obj], p], 1).transpose(1, 2) for t, p in ((tq, pq), (tk, pk), (tv, pv)))
    scale = q.shape[-1] ** -0.5
    return (torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v).transpose(1, 2)


def _flash_rule(got, want, same, atol):
    (o, gs), (o64, gs64), (ol, gls) = got, want, same
    for name, a, b, c in zip(["out", *range(len(gs))], [o, *gs], [o64, *gs64], [ol, *gls], strict=True):
        assert _max_err(a, b) <= 2 * _max_err(c, b) + atol, (name, _max_err(a, b), _max_err(c, b))


# ------------------------------------------------------------------------------------------------------------------
# shared_query_attention
# ------------------------------------------------------------------------------------------------------------------


def _check_shared(g, length, b, s, h, dh, dtype=torch.float32):
    inputs = [_randn(g, length, h, dh), _randn(g, b, s, h, dh), _randn(g, b, s, h, dh)]
    do = _randn(g, b, length, h, dh)
    out, grads = _grads(lambda *x: A.shared_query_attention(*x, impl="triton"), inputs, do)
    out64, grads64 = _grads(A.shared_query_attention_ref, inputs, do, torch.float64)
    assert out.shape == (b, length, h, dh)
    _assert_close([out, *grads], [out64, *grads64], ["out", "q", "k", "v"])


@pytest.mark.parametrize(
    ("length", "b", "s", "h", "dh"),
    [(5, 3, 7, 2, 16), (17, 2, 19, 1, 32), (1, 1, 1, 4, 16), (3, 2, 5, 1, 512)],
)
def test_shared_query(rng, length, b, s, h, dh):
    _check_shared(_gen(rng), length, b, s, h, dh)


def test_shared_query_split_dq(rng, monkeypatch):
    monkeypatch.setattr(shared_kernels, "DQ_SPLIT", 3)
    _check_shared(_gen(rng), 4, 5, 3, 2, 16)


def test_shared_query_dispatch_and_empty(rng):
    g = _gen(rng)
    q, k, v = _randn(g, 4, 2, 16), _randn(g, 3, 5, 2, 16), _randn(g, 3, 5, 2, 16)
    assert torch.equal(A.shared_query_attention(q, k, v), A.shared_query_attention_ref(q, k, v))
    for impl in ("torch", "triton"):
        assert A.shared_query_attention(q, k[:0], v[:0], impl=impl).shape == (0, 4, 2, 16)


# ------------------------------------------------------------------------------------------------------------------
# pair_cross_attention (its "triton" path is SDPA)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expanded", [False, True])
def test_pair_cross(rng, expanded):
    g = _gen(rng)
    p, t, h, dh = 5, 11, 2, 16
    q = _randn(g, 1, h, dh).expand(p, h, dh) if expanded else _randn(g, p, h, dh)  # the decoder's shared f_r
    inputs = [q, _randn(g, p, t, h, dh), _randn(g, p, t, h, dh)]
    do = _randn(g, p, h, dh)
    out, grads = _grads(lambda *x: A.pair_cross_attention(*x, impl="triton"), inputs, do)
    out64, grads64 = _grads(A.pair_cross_attention_ref, inputs, do, torch.float64)
    _assert_close([out, *grads], [out64, *grads64], ["out", "q", "k", "v"])
    assert torch.equal(A.pair_cross_attention(*inputs), A.pair_cross_attention_ref(*inputs))


# ------------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------------


def _good_pair():
    g = torch.Generator().manual_seed(0)
    subj, obj = torch.tensor([0, 1]), torch.tensor([1, 0])
    return _pair_inputs(g, 2, 3, 2, 2, 16, subj, obj), subj, obj


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("traj_q_rank", "traj_q"),
        ("traj_k_shape", "traj_k"),
        ("pair_q_heads", "pair_q"),
        ("pair_v_len", "pair_v"),
        ("dtype_mix", "traj_v"),
        ("int_features", "pair_k"),
        ("subj_float", "subj"),
        ("subj_len", "subj"),
        ("obj_range", "obj"),
        ("subj_negative", "subj"),
        ("impl", "impl"),
        ("scale", "scale"),
        ("triton_float64", "float64"),
    ],
)
def test_pair_bad_input(case, match):
    (tq, tk, tv, pq, pk, pv), subj, obj = _good_pair()
    kw = {}
    if case == "traj_q_rank":
        tq = tq[0]
    elif case == "traj_k_shape":
        tk = tk[:, :2]
    elif case == "pair_q_heads":
        pq = pq[:, :, :1]
    elif case == "pair_v_len":
        pv = pv[:, :1]
    elif case == "dtype_mix":
        tv = tv.double()
    elif case == "int_features":
        pk = pk.long()
    elif case == "subj_float":
        subj = subj.float()
    elif case == "subj_len":
        subj = subj[:1]
    elif case == "obj_range":
        obj = torch.tensor([1, 2])
    elif case == "subj_negative":
        subj = torch.tensor([-1, 0])
    elif case == "impl":
        kw["impl"] = "cuda"
    elif case == "scale":
        kw["scale"] = float("nan")
    elif case == "triton_float64":
        tq, tk, tv, pq, pk, pv = (x.double() for x in (tq, tk, tv, pq, pk, pv))
        kw["impl"] = "triton"
    with pytest.raises(ValueError, match=match):
        A.pair_self_attention(tq, tk, tv, pq, pk, pv, subj, obj, **kw)
    if case not in ("impl", "triton_float64"):
        with pytest.raises(ValueError, match=match):
            A.pair_self_attention_ref(tq, tk, tv, pq, pk, pv, subj, obj, **kw)


def test_shared_and_cross_bad_input():
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
    cq, ck = torch.zeros(3, 2, 16), torch.zeros(3, 7, 2, 16)
    for args, match in [((cq[:2], ck, ck), "k"), ((cq, ck, ck[:, :3]), "v"), ((cq, ck, ck[..., :1, :]), "v")]:
        with pytest.raises(ValueError, match=match):
            A.pair_cross_attention(*args)
    with pytest.raises(ValueError, match="impl"):
        A.pair_cross_attention(cq, ck, ck, impl="cpp")


# ------------------------------------------------------------------------------------------------------------------
# CUDA: bfloat16 at the model's shapes and a pair count past the 65,535 grid limit
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bfloat16 kernels on a GPU)")
def test_cuda_bfloat16_flash_rule():
    """|kernel − ref64| ≤ 2·|torch bf16 − ref64| + atol for every output and gradient; then P = 70,000 runs."""
    g = torch.Generator().manual_seed(0)
    dev, bf = torch.device("cuda"), torch.bfloat16
    for h, dh in ((8, 64), (1, 512)):
        n, lt, lp = 16, 32, 34
        subj, obj = (x.to(dev) for x in _all_pairs(n, g))
        inputs = [x.to(dev) for x in _pair_inputs(g, n, lt, lp, h, dh, subj.cpu(), obj.cpu(), bf)]
        do = _randn(g, subj.shape[0], 2 * lt + lp, h, dh, dtype=bf).to(dev)
        got = _grads(lambda *x, s=subj, o=obj: A.pair_self_attention(*x, s, o, impl="triton"), inputs, do)
        want = _grads(lambda *x, s=subj, o=obj: A.pair_self_attention_ref(*x, s, o), inputs, do, torch.float64)
        same = _grads(lambda *x, s=subj, o=obj: _lowp_pair(*x, s, o), inputs, do)
        _flash_rule(got, want, same, atol=1e-3)

        sq = [_randn(g, 32, h, dh, dtype=bf).to(dev)] + [_randn(g, 48, 20, h, dh, dtype=bf).to(dev) for _ in range(2)]
        do = _randn(g, 48, 32, h, dh, dtype=bf).to(dev)
        got = _grads(lambda *x: A.shared_query_attention(*x, impl="triton"), sq, do)
        want = _grads(A.shared_query_attention_ref, sq, do, torch.float64)

        def lowp_shared(q, k, v):
            q, k, v = q.transpose(0, 1)[None], k.transpose(1, 2), v.transpose(1, 2)
            return (torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v).transpose(1, 2)

        _flash_rule(got, want, _grads(lowp_shared, sq, do), atol=1e-3)

    # P > 65,535 on grid axis 0
    n, p = 300, 70_000
    subj = torch.randint(0, n, (p,), generator=g).to(dev)
    obj = torch.randint(0, n, (p,), generator=g).to(dev)
    inputs = [x.to(dev) for x in _pair_inputs(g, n, 2, 3, 1, 16, subj.cpu(), obj.cpu(), torch.float32)]
    do = _randn(g, p, 7, 1, 16).to(dev)
    got = _grads(lambda *x: A.pair_self_attention(*x, subj, obj, impl="triton"), inputs, do)
    want = _grads(lambda *x: A.pair_self_attention_ref(*x, subj, obj), inputs, do, torch.float64)
    _assert_close([got[0], *got[1]], [want[0], *want[1]], ["out", *PAIR_NAMES], atol=1e-3)
