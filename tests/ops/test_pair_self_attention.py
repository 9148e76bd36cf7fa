"""pair_self_attention: the Triton path against float64 references, forward and every gradient, on odd lengths,
shuffled / repeated / self pairs, empty inputs, tiled head dims; determinism; dispatch; bad input.

Devices: with CUDA the kernels run on the GPU in bfloat16 and must meet FlashAttention's error rule (kernel error ≤
2 × the error of PyTorch's own bfloat16 path + atol, both against float64); without CUDA they run under the Triton
interpreter (``tests/conftest.py`` sets ``TRITON_INTERPRET=1``) in float32 against a tight bound. Shapes stay tiny:
every kernel program runs in the interpreter on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from uasan.kernels import pair_self_attention as pair_kernels

from tests.kernels.helpers import DEVICE, DTYPE, check, flash_rule, grads, lowp_pair
from tests.ops.attention_inputs import _gen, _randn
from uasan.ops import attention as A


def _all_pairs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The N·(N−1) ordered pairs, shuffled."""
    pairs = torch.tensor([(s, o) for s in range(n) for o in range(n) if s != o], dtype=torch.int64).view(-1, 2)
    pairs = pairs[torch.randperm(len(pairs), generator=g)].to(DEVICE)
    return pairs[:, 0].contiguous(), pairs[:, 1].contiguous()


def _idx(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64, device=DEVICE)


def _pair_inputs(g, n, lt, lp, h, dh, p, dtype=None):
    traj = [_randn(g, n, lt, h, dh, dtype=dtype) for _ in range(3)]  # (N, Lt, H, Dh)
    pair = [_randn(g, p, lp, h, dh, dtype=dtype) for _ in range(3)]  # (P, Lp, H, Dh)
    return traj + pair


PAIR_NAMES = ["out", "traj_q", "traj_k", "traj_v", "pair_q", "pair_k", "pair_v"]


def _check_pair(g, n, lt, lp, h, dh, subj, obj, scale=None, inputs=None):
    p = subj.shape[0]
    inputs = inputs if inputs is not None else _pair_inputs(g, n, lt, lp, h, dh, p)
    do = _randn(g, p, 2 * lt + lp, h, dh)  # (P, 2Lt+Lp, H, Dh)
    got = grads(lambda *x: A.pair_self_attention(*x, subj, obj, scale=scale, impl="triton"), inputs, do, None, True)
    want = grads(lambda *x: A.pair_self_attention_ref(*x, subj, obj, scale=scale), inputs, do, torch.float64)
    assert got[0].dtype == DTYPE and got[0].shape == (p, 2 * lt + lp, h, dh)
    check(got, want, lambda: grads(lambda *x: lowp_pair(*x, subj, obj, scale), inputs, do), PAIR_NAMES)
    return got


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
        (2, 0, 3, 2, 16),  # no trajectory tokens: every trajectory gradient is 0
    ],
)
def test_pair_self_attention_all_pairs_shuffled(rng, n, lt, lp, h, dh):
    g = _gen(rng)
    subj, obj = _all_pairs(n, g)
    _check_pair(g, n, lt, lp, h, dh, subj, obj)


def test_pair_self_attention_repeats_self_pairs_unused_trajectories(rng):
    """N = 7, random pairs: repeated pairs, s == o, trajectories in no pair (zero gradient)."""
    g = _gen(rng)
    _check_pair(g, 7, 3, 5, 2, 16, _idx(4, 0, 4, 2, 2, 6, 0, 4, 2), _idx(0, 4, 0, 2, 6, 6, 2, 4, 0))


def test_pair_self_attention_single_pair_self(rng):
    g = _gen(rng)
    _check_pair(g, 1, 1, 1, 2, 16, _idx(0), _idx(0))  # N = 1, Lt = Lp = 1: the one self pair
    _check_pair(g, 3, 3, 5, 1, 32, _idx(2), _idx(0), scale=0.3)


def test_pair_self_attention_head_dim_512(rng):
    """The paper's single head of width 512: the head dim is tiled (under the interpreter: output chunks of 128
    columns, scores in slices of 64)."""
    g = _gen(rng)
    _check_pair(g, 2, 3, 2, 1, 512, _idx(1, 0, 1), _idx(0, 1, 1))


def test_pair_self_attention_empty(rng):
    """P = 0 (N = 0 and N = 2), an empty sequence (Lt = Lp = 0): the right shapes and zero gradients."""
    g = _gen(rng)
    none = _idx()
    for n, lt, lp in ((0, 3, 2), (2, 3, 2), (2, 0, 0)):
        p = 0 if lt or lp else 2
        subj, obj = (none, none) if p == 0 else (_idx(0, 1), _idx(1, 0))
        inputs = _pair_inputs(g, n, lt, lp, 2, 16, p)
        do = _randn(g, p, 2 * lt + lp, 2, 16)
        out, gs = grads(lambda *x, s=subj, o=obj: A.pair_self_attention(*x, s, o, impl="triton"), inputs, do)
        assert out.shape == (p, 2 * lt + lp, 2, 16)
        for x, gr in zip(inputs, gs, strict=True):
            assert gr is not None and gr.shape == x.shape and not gr.any()


@pytest.mark.parametrize("splits", [2, 3])
def test_pair_self_attention_split_trajectory_reduction(rng, monkeypatch, splits):
    """The trajectory gradients cut into ranges of pairs and summed in a fixed order give the same answer."""
    monkeypatch.setattr(pair_kernels, "TRAJ_SPLIT", splits)
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    _check_pair(g, 3, 3, 5, 2, 16, subj, obj)


def test_pair_self_attention_deterministic_and_noncontiguous(rng):
    """Two backward passes are bitwise equal; strided views (as the model's head split gives) are accepted."""
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    base = _pair_inputs(g, 3, 3, 4, 2, 16, subj.shape[0])
    inputs = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in base]  # same values, strides (…, H, Lt, Dh)
    assert not inputs[0].is_contiguous()
    got = _check_pair(g, 3, 3, 4, 2, 16, subj, obj, inputs=inputs)
    do = _randn(g, subj.shape[0], 10, 2, 16)
    fn = lambda *x: A.pair_self_attention(*x, subj, obj, impl="triton")  # noqa: E731
    (out1, g1), (out2, g2) = grads(fn, inputs, do), grads(fn, inputs, do)
    assert torch.equal(out1, out2) and all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))
    assert torch.equal(got[0], out1)


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


def test_pair_self_attention_never_gathers_features(rng):
    """Forward and backward of the Triton path gather nothing but the (2P,) pair-entry index (the CSR of the
    backward): the trajectory rows are read through subj / obj inside the kernels."""
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    inputs = [x.requires_grad_() for x in _pair_inputs(g, 3, 3, 5, 2, 16, subj.shape[0])]
    with _GatherRecorder() as rec:
        out = A.pair_self_attention(*inputs, subj, obj, impl="triton")
        out.backward(torch.ones_like(out))
    assert rec.sizes and all(size <= 2 * subj.shape[0] for _, size in rec.sizes), rec.sizes
    with _GatherRecorder() as rec:  # the reference does materialise X_p (P, 2Lt+Lp, H, Dh)
        A.pair_self_attention_ref(*inputs, subj, obj)
    assert max(size for _, size in rec.sizes) == subj.shape[0] * 11 * 2 * 16


def test_pair_self_attention_float16flash_rule(rng):
    """float16 (interpreter or GPU): |kernel − ref64| ≤ 2·|torch float16 − ref64| + atol."""
    g = _gen(rng)
    subj, obj = _all_pairs(3, g)
    inputs = _pair_inputs(g, 3, 3, 5, 2, 16, subj.shape[0], torch.float16)
    do = _randn(g, subj.shape[0], 11, 2, 16, dtype=torch.float16)
    got = grads(lambda *x: A.pair_self_attention(*x, subj, obj, impl="triton"), inputs, do)
    want = grads(lambda *x: A.pair_self_attention_ref(*x, subj, obj), inputs, do, torch.float64)
    same = grads(lambda *x: lowp_pair(*x, subj, obj), inputs, do)
    flash_rule(got, want, same, PAIR_NAMES, atol=2e-3)


def test_pair_self_attention_dispatch(rng):
    """auto on CPU and impl="torch" are the reference; int32 indices are accepted."""
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    subj, obj = torch.tensor([0, 1]), torch.tensor([1, 0])
    inputs = [torch.randn(2, 3, 1, 16, generator=g) for _ in range(3)] + [torch.randn(2, 2, 1, 16) for _ in range(3)]
    ref = A.pair_self_attention_ref(*inputs, subj, obj)
    assert torch.equal(A.pair_self_attention(*inputs, subj, obj), ref)
    assert torch.equal(A.pair_self_attention(*inputs, subj, obj, impl="torch"), ref)
    assert torch.equal(A.pair_self_attention(*inputs, subj.int(), obj.int(), impl="torch"), ref)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    """Without TRITON_INTERPRET=1 a CPU tensor never reaches a compiled kernel (host pointers on the GPU): a clear
    ValueError, also on a machine with CUDA; bfloat16 is refused under the interpreter (its dots are wrong)."""
    (tq, tk, tv, pq, pk, pv), subj, obj = _good_pair()
    q, k = torch.zeros(4, 2, 16), torch.zeros(3, 5, 2, 16)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        A.pair_self_attention(tq, tk, tv, pq, pk, pv, subj, obj, impl="triton")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        A.shared_query_attention(q, k, k, impl="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="bfloat16"):
        A.shared_query_attention(q.bfloat16(), k.bfloat16(), k.bfloat16(), impl="triton")


# ------------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------------


def _good_pair():
    g = torch.Generator().manual_seed(0)
    subj, obj = torch.tensor([0, 1]), torch.tensor([1, 0])
    inputs = [torch.randn(2, 3, 2, 16, generator=g) for _ in range(3)] + [torch.randn(2, 2, 2, 16) for _ in range(3)]
    return inputs, subj, obj


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
def test_pair_self_attention_bad_input(case, match):
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
