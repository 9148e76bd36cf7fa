"""pair_self_attention: the fused Triton kernel vs materialise-then-SDPA (each backend pinned) vs
nn.MultiheadAttention.

Run: ``pytest benchmarks/bench_pair_self_attention.py --benchmark-enable --benchmark-columns=median,iqr,rounds``. GPU
rows (bf16, d = 512 as 8×64 and 1×512, Lt = 32, Lp = 34, N = 16 / 32 / 64 and 8 segments of N = 32 batched, forward
and forward+backward; sizes in ``target.py``) skip without CUDA; each records its peak memory in ``extra_info`` and
checks its output against the float32 reference before timing. The CPU rows always run: a tiny
reference-vs-interpreter correctness smoke.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.target import DEVICE, DTYPE, HEADS, L_MOT, SEGMENTS, device_name, needs_gpu, needs_interpreter, sync
from benchmarks.target import L as LT
from uasan.ops import attention as A

LP = LT + L_MOT


def pair_problem(segments: int, n: int, h: int, dh: int, dtype, device, seed: int = 0):
    """``segments`` segments of N trajectories each, all N·(N−1) ordered pairs per segment, batched into one call."""
    g = torch.Generator().manual_seed(seed)
    local = torch.tensor([(s, o) for s in range(n) for o in range(n) if s != o], dtype=torch.int64)  # (N(N-1), 2)
    pairs = torch.cat([local + i * n for i in range(segments)])  # (P, 2), trajectory ids offset per segment
    total, p = segments * n, pairs.shape[0]

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype).requires_grad_()

    traj = [rand(total, LT, h, dh) for _ in range(3)]  # (N, Lt, H, Dh)
    pair = [rand(p, LP, h, dh) for _ in range(3)]  # (P, Lp, H, Dh)
    subj, obj = pairs[:, 0].to(device), pairs[:, 1].to(device)
    do = torch.randn(p, 2 * LT + LP, h, dh, generator=g).to(device=device, dtype=dtype)
    return traj, pair, subj, obj, do


def materialise(traj, pair, subj, obj):
    """X = [traj[subj]; traj[obj]; pair] → (P, H, 2Lt+Lp, Dh) for SDPA."""
    return torch.cat([traj[subj], traj[obj], pair], dim=1).transpose(1, 2)


def sdpa_path(backend):
    def run(tq, tk, tv, pq, pk, pv, subj, obj):
        q, k, v = (materialise(t, p, subj, obj) for t, p in ((tq, pq), (tk, pk), (tv, pv)))
        with torch.nn.attention.sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (P, L, H, Dh)

    return run


def mha_path(h: int, dh: int, device, dtype):
    """Naive nn.MultiheadAttention on the materialised sequences, with identity in/out projections (so that it
    computes exactly the op's attention on the already-projected q, k, v)."""
    d = h * dh
    mha = torch.nn.MultiheadAttention(d, h, bias=False, batch_first=True).to(device=device, dtype=dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.eye(d).repeat(3, 1))
        mha.out_proj.weight.copy_(torch.eye(d))
    mha.requires_grad_(False)

    def run(tq, tk, tv, pq, pk, pv, subj, obj):
        q, k, v = (torch.cat([t[subj], t[obj], p], 1).flatten(-2) for t, p in ((tq, pq), (tk, pk), (tv, pv)))
        return mha(q, k, v, need_weights=False)[0].unflatten(-1, (h, dh))  # (P, L, H, Dh)

    return run


def kernel_path(tq, tk, tv, pq, pk, pv, subj, obj):
    return A.pair_self_attention(tq, tk, tv, pq, pk, pv, subj, obj, impl="triton")


def _paths(h, dh, device, dtype):
    from torch.nn.attention import SDPBackend

    paths = {"triton": kernel_path, "mha": mha_path(h, dh, device, dtype)}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        if hasattr(SDPBackend, name):
            paths[f"sdpa-{name.lower()}"] = sdpa_path(getattr(SDPBackend, name))
    return paths


PATH_NAMES = ["triton", "sdpa-flash_attention", "sdpa-efficient_attention", "sdpa-cudnn_attention", "sdpa-math", "mha"]


@needs_gpu
@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("path", PATH_NAMES)
@pytest.mark.parametrize("seg", list(SEGMENTS))
@pytest.mark.parametrize("heads", list(HEADS))
def test_pair_self_attention_gpu(benchmark, bench, peak_mem, heads, seg, path, direction):
    h, dh = HEADS[heads]
    segments, n = SEGMENTS[seg]
    traj, pair, subj, obj, do = pair_problem(segments, n, h, dh, DTYPE, DEVICE)
    paths = _paths(h, dh, DEVICE, DTYPE)
    if path not in paths:
        pytest.skip(f"{path}: this torch has no such SDPA backend")
    fn = paths[path]
    args = (*traj, *pair, subj, obj)
    try:
        out = fn(*args)
    except RuntimeError as exc:  # a pinned SDPA backend that does not take this head dim / dtype / device
        pytest.skip(f"{path} unsupported here: {str(exc).splitlines()[0]}")
    ref = A.pair_self_attention_ref(*(x.detach().float() for x in (*traj, *pair)), subj, obj)
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)  # equality first
    leaves = [*traj, *pair]

    def step():
        for x in leaves:
            x.grad = None
        with torch.set_grad_enabled(direction == "fwd+bwd"):
            o = fn(*args)
        if direction == "fwd+bwd":
            o.backward(do)
        sync()
        return o

    step()
    peak_mem(benchmark, step)
    benchmark.extra_info.update(pairs=subj.shape[0], device=device_name())
    benchmark.group = f"pair_self_attention-{heads}-{seg}-{direction}"
    bench(benchmark, step)


# ------------------------------------------------------------------------------------------------------------------
# CPU rows: always run; a tiny shape, the Triton path under the interpreter — a correctness smoke, not a timing
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_pair_self_attention_cpu(benchmark, bench, impl):
    needs_interpreter(impl)
    traj, pair, subj, obj, do = pair_problem(1, 3, 2, 16, torch.float32, torch.device("cpu"))
    traj = [x.detach()[:, :3] for x in traj]  # Lt = 3
    pair = [x.detach()[:, :5] for x in pair]  # Lp = 5
    args = (*traj, *pair, subj, obj)
    ref = A.pair_self_attention_ref(*(x.double() for x in (*traj, *pair)), subj, obj)
    torch.testing.assert_close(A.pair_self_attention(*args, impl=impl).double(), ref, atol=1e-5, rtol=1e-5)
    benchmark.group = "pair_self_attention-cpu-smoke"
    bench(benchmark, A.pair_self_attention, *args, impl=impl, slow=True)
