"""shared_query_attention: the fused Triton kernel (Q broadcast, deterministic dQ) vs SDPA on an expanded Q.

Run: ``pytest benchmarks/bench_shared_query_attention.py --benchmark-enable --benchmark-columns=median,iqr,rounds``.
The GPU rows (bf16, the VisualRefiner shape: L = 32 queries over 8·32 trajectories × 30 tokens, forward and
forward+backward) skip without CUDA, record their peak memory and check their output against the float32 reference
before timing; the CPU rows always run: a tiny reference-vs-interpreter correctness smoke.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.target import DEVICE, DTYPE, HEADS, device_name, needs_gpu, needs_interpreter, sync
from uasan.ops import attention as A


@needs_gpu
@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("path", ["triton", "sdpa-expand"])
@pytest.mark.parametrize("heads", list(HEADS))
def test_shared_query_attention_gpu(benchmark, bench, peak_mem, heads, path, direction):
    """VisualRefiner shape: L = 32 shared queries over B = 8·32 trajectories × S = 30 tokens (dry run: 4, 6, 5)."""
    h, dh = HEADS[heads]
    length, b, s = (4, 6, 5) if DEVICE.type == "cpu" else (32, 256, 30)
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(*shape, generator=g).to(DEVICE, DTYPE).requires_grad_()
        for shape in ((length, h, dh), (b, s, h, dh), (b, s, h, dh))
    )
    do = torch.randn(b, length, h, dh, generator=g).to(DEVICE, DTYPE)
    if path == "triton":

        def fn(q, k, v):
            return A.shared_query_attention(q, k, v, impl="triton")
    else:

        def fn(q, k, v):
            qe = q.transpose(0, 1)[None].expand(k.shape[0], -1, -1, -1)  # (B, H, L, Dh)
            o = torch.nn.functional.scaled_dot_product_attention(qe, k.transpose(1, 2), v.transpose(1, 2))
            return o.transpose(1, 2)

    ref = A.shared_query_attention_ref(q.detach().float(), k.detach().float(), v.detach().float())
    torch.testing.assert_close(fn(q, k, v).float(), ref, atol=3e-2, rtol=3e-2)

    def step():
        for x in (q, k, v):
            x.grad = None
        with torch.set_grad_enabled(direction == "fwd+bwd"):
            o = fn(q, k, v)
        if direction == "fwd+bwd":
            o.backward(do)
        sync()

    step()
    peak_mem(benchmark, step)
    benchmark.extra_info["device"] = device_name()
    benchmark.group = f"shared_query_attention-{heads}-{direction}"
    bench(benchmark, step)


# ------------------------------------------------------------------------------------------------------------------
# CPU rows: always run; a tiny shape, the Triton path under the interpreter — a correctness smoke, not a timing
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_shared_query_attention_cpu(benchmark, bench, impl):
    needs_interpreter(impl)
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(4, 2, 16, generator=g), torch.randn(3, 5, 2, 16, generator=g), torch.randn(3, 5, 2, 16)
    ref = A.shared_query_attention_ref(q.double(), k.double(), v.double())
    torch.testing.assert_close(A.shared_query_attention(q, k, v, impl=impl).double(), ref, atol=1e-5, rtol=1e-5)
    benchmark.group = "shared_query_attention-cpu-smoke"
    bench(benchmark, A.shared_query_attention, q, k, v, impl=impl, slow=True)
