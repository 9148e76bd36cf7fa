"""Launch behaviour that only a GPU shows: no recompilation across batch sizes, the float32 policy, the index check
flag, the device guard, a pair count past the 65,535 grid limit. Every test here needs CUDA (the interpreter neither
compiles nor has devices); the CPU-side halves (dispatch errors, ``do_not_specialize`` on every per-batch integer)
are in ``tests/ops/test_pair_self_attention.py`` and ``tests/kernels/test_compile.py``."""

from __future__ import annotations

import pytest
import torch

from tests.common import needs_cuda
from tests.kernels.helpers import flash_rule, grads, lowp_pair, lowp_shared
from uasan.ops import attention as A

pytestmark = needs_cuda
NAMES = ["out", "traj_q", "traj_k", "traj_v", "pair_q", "pair_k", "pair_v"]


def _problem(n, p, lt=4, lp=6, h=2, dh=64, dtype=torch.bfloat16, device="cuda", seed=0):
    g = torch.Generator().manual_seed(seed)
    subj = torch.randint(0, n, (p,), generator=g).to(device)
    obj = torch.randint(0, n, (p,), generator=g).to(device)
    xs = [torch.randn(n, lt, h, dh, generator=g).to(device, dtype) for _ in range(3)]
    xs += [torch.randn(p, lp, h, dh, generator=g).to(device, dtype) for _ in range(3)]
    do = torch.randn(p, 2 * lt + lp, h, dh, generator=g).to(device, dtype)
    return xs, subj, obj, do


def _pair_flash_rule(xs, subj, obj, do):
    """The Triton op and its gradients against float64 by FlashAttention's rule (bf16 PyTorch as the baseline)."""
    got = grads(lambda *x: A.pair_self_attention(*x, subj, obj, impl="triton"), xs, do)
    want = grads(lambda *x: A.pair_self_attention_ref(*x, subj, obj), xs, do, torch.float64)
    same = grads(lambda *x: lowp_pair(*x, subj, obj), xs, do)
    flash_rule(got, want, same, NAMES, atol=1e-3)


def _compiled_variants() -> int:
    from uasan.kernels import _attention_common, pair_self_attention

    total = 0
    dev = torch.cuda.current_device()
    for fn in (pair_self_attention._pair_fwd_kernel, pair_self_attention._pair_bwd_kernel,
               _attention_common._row_dot_kernel):  # fmt: skip
        caches = getattr(fn, "device_caches", None)
        if caches is None:
            pytest.skip("this Triton keeps no per-device kernel cache to count")
        total += len(caches[dev][0])
    return total


def test_no_recompile_across_batch_sizes():
    """After the first batch, batches whose pair and trajectory counts are 1, multiples of 16 or neither launch the
    kernels already compiled (``do_not_specialize``)."""
    for n, p in ((5, 7), (16, 32), (1, 1), (17, 33), (48, 16)):
        xs, subj, obj, do = _problem(n, p)
        grads(lambda *x, s=subj, o=obj: A.pair_self_attention(*x, s, o, impl="triton"), xs, do)
        torch.cuda.synchronize()
        if (n, p) == (5, 7):
            before = _compiled_variants()
    assert _compiled_variants() == before


def test_float32_policy():
    """float32 CUDA tensors: ``auto`` is the reference (it follows torch's matmul precision), ``triton`` refuses."""
    xs, subj, obj, _ = _problem(3, 4, dtype=torch.float32)
    assert torch.equal(A.pair_self_attention(*xs, subj, obj), A.pair_self_attention_ref(*xs, subj, obj))
    with pytest.raises(ValueError, match="float32"):
        A.pair_self_attention(*xs, subj, obj, impl="triton")


def test_index_check_flag(monkeypatch):
    xs, subj, obj, _ = _problem(3, 4)
    monkeypatch.setenv("UASAN_CHECK_INDICES", "1")
    with pytest.raises(ValueError, match="obj"):
        A.pair_self_attention(*xs, subj, torch.full_like(obj, 3), impl="triton")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_device_guard():
    """Tensors on cuda:1 while cuda:0 is current: the launches follow the tensors."""
    xs, subj, obj, do = _problem(4, 9, device="cuda:1")
    with torch.cuda.device(0):
        _pair_flash_rule(xs, subj, obj, do)


def test_pairs_past_the_grid_limit():
    """P = 70,000 pairs on grid axis 0 (past CUDA's 65,535 limit of axes 1 and 2)."""
    xs, subj, obj, do = _problem(300, 70_000, lt=2, lp=3, h=1, dh=16)
    _pair_flash_rule(xs, subj, obj, do)


@pytest.mark.parametrize(("h", "dh"), [(8, 64), (1, 512)])
def test_model_shapes_flash_rule(h, dh):
    """The model's shapes (Lt = 32, Lp = 34, N = 16, all ordered pairs), autotuned: bf16 by FlashAttention's rule."""
    n = 16
    s, o = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)
    subj, obj = s[s != o].cuda(), o[s != o].cuda()
    xs, _, _, do = _problem(n, subj.shape[0], lt=32, lp=34, h=h, dh=dh)
    _pair_flash_rule(xs, subj, obj, do)


@pytest.mark.parametrize(("h", "dh"), [(8, 64), (1, 512)])
def test_shared_query_model_shapes_flash_rule(h, dh):
    """The refiner's shapes (32 shared queries, B = 48 rows of S = 20 tokens), autotuned, bf16."""
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(*shape, generator=g).to("cuda", torch.bfloat16) for shape in ((32, h, dh), (48, 20, h, dh))]
    xs.append(torch.randn(48, 20, h, dh, generator=g).to("cuda", torch.bfloat16))
    do = torch.randn(48, 32, h, dh, generator=g).to("cuda", torch.bfloat16)
    got = grads(lambda *x: A.shared_query_attention(*x, impl="triton"), xs, do)
    want = grads(A.shared_query_attention_ref, xs, do, torch.float64)
    flash_rule(got, want, grads(lowp_shared, xs, do), ["out", "q", "k", "v"], atol=1e-3)
