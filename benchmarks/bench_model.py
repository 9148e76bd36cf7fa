"""The relation block (SACEncoder + URADecoder) end to end: our modules vs a naive eager block vs its torch.compile.

Run: ``pytest benchmarks/bench_model.py --benchmark-enable --benchmark-columns=median,iqr,rounds``.

The block takes trajectory tokens F̂ (N, L, d) and pair tokens [Û; F_mot] (P, L + L_mot, d) and returns
F_enc (P, 2L + L + L_mot, d) and F_dec (P, d), as in ``UASAN.encode_pairs``. Paths:

* ``triton`` / ``torch``: our SACEncoder + URADecoder with ``impl="triton"`` (fused pair self-attention, subject and
  object rows gathered inside the kernel) or ``impl="torch"`` (the reference ops inside the same modules);
* ``naive``: F_sent = [F̂_S[subj]; F̂_O[obj]; Û; F_mot] materialised as (P, 98, d), ``nn.MultiheadAttention`` + the
  same FF / LayerNorm, then a second ``nn.MultiheadAttention`` for the decoder with the query f_r expanded to P rows
  (weights copied from our block, so every path computes the same function);
* ``naive-compiled``: ``torch.compile`` of the naive block.

GPU rows (bf16, d = 512 as 8×64 and 1×512, L = 32, L_mot = 2, N = 16 / 32 / 64 and 8 segments of N = 32 batched;
sizes in ``target.py``; ``fwd``: the block forward without autograd, ``step``: forward + backward + AdamW step) skip
without CUDA. Each checks its outputs (and, for ``step``, its input gradients) against the float32 naive block before
timing and records its peak memory in ``extra_info``. The CPU row always runs: a tiny float64 ``torch``-vs-``naive``
equality smoke.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from benchmarks.target import DEVICE, DRY, DTYPE, HEADS, L_MOT, SEGMENTS, L, device_name, needs_gpu, sync
from uasan.models.layers import SACEncoder, URADecoder

PATHS = ["triton", "torch", "naive", "naive-compiled"]


class Block(nn.Module):
    """Our SACEncoder + URADecoder, wired as in ``UASAN.encode_pairs``."""

    def __init__(self, d: int, heads: int, impl: str) -> None:
        super().__init__()
        self.encoder, self.decoder = SACEncoder(d, heads, impl), URADecoder(d, heads, impl)
        with torch.no_grad():
            self.encoder.f_r.normal_(0.0, 0.1)  # non-zero, so that adding f_r to queries and keys is exercised

    def set_impl(self, impl: str) -> None:
        self.encoder.impl = self.decoder.impl = impl

    def forward(self, traj, pair, subj, obj):
        enc = self.encoder(traj, pair, subj, obj)
        return enc, self.decoder(enc)


def _mha(d: int, heads: int, q: nn.Linear, k: nn.Linear, v: nn.Linear, o: nn.Linear) -> nn.MultiheadAttention:
    """nn.MultiheadAttention computing the same function as our q/k/v/o projections around an attention op."""
    mha = nn.MultiheadAttention(d, heads, batch_first=True, bias=True).to(device=q.weight.device, dtype=q.weight.dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
        mha.in_proj_bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
        mha.out_proj.weight.copy_(o.weight)
        mha.out_proj.bias.copy_(o.bias)
    return mha


class NaiveBlock(nn.Module):
    """The textbook block: materialise F_sent, nn.MultiheadAttention, expanded decoder query."""

    def __init__(self, ours: Block) -> None:
        super().__init__()
        enc, dec = ours.encoder, ours.decoder
        d, heads = enc.f_r.shape[0], enc.heads
        self.enc_attn = _mha(d, heads, enc.q, enc.k, enc.v, enc.o)
        self.enc_ff, self.enc_norm = copy.deepcopy(enc.ff), copy.deepcopy(enc.norm)
        self.enc_f_r = nn.Parameter(enc.f_r.detach().clone())
        self.dec_attn = _mha(d, heads, dec.q, dec.k, dec.v, dec.o)
        self.dec_ff, self.dec_norm = copy.deepcopy(dec.ff), copy.deepcopy(dec.norm)
        self.dec_f_r = nn.Parameter(dec.f_r.detach().clone())

    def forward(self, traj, pair, subj, obj):
        sent = torch.cat([traj[subj], traj[obj], pair], dim=1)  # F_sent (P, 2L + L + L_mot, d), materialised
        qk = sent + self.enc_f_r
        a = self.enc_attn(qk, qk, sent, need_weights=False)[0]
        enc = self.enc_norm(a + self.enc_ff(a))
        q = self.dec_f_r.expand(enc.shape[0], 1, -1)  # (P, 1, d): f_r projected once per pair
        t = self.dec_attn(q, enc, enc, need_weights=False)[0][:, 0]
        return enc, self.dec_norm(t + self.dec_ff(t))


def problem(segments: int, n: int, d: int, dtype, device, lt: int = L, lmot: int = L_MOT, seed: int = 0):
    """``segments`` segments of N trajectories, all N·(N−1) ordered pairs per segment, batched into one call;
    → leaves traj (segments·N, lt, d), pair (P, lt + lmot, d), subj, obj (P,) and output cotangents."""
    g = torch.Generator().manual_seed(seed)
    local = torch.tensor([(s, o) for s in range(n) for o in range(n) if s != o], dtype=torch.int64)
    pairs = torch.cat([local + i * n for i in range(segments)])  # trajectory ids offset per segment
    p = pairs.shape[0]

    def rand(*shape, grad=True):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype).requires_grad_(grad)

    traj, pair = rand(segments * n, lt, d), rand(p, lt + lmot, d)
    d_enc, d_dec = rand(p, 2 * lt + lt + lmot, d, grad=False), rand(p, d, grad=False)
    return traj, pair, pairs[:, 0].to(device), pairs[:, 1].to(device), (d_enc, d_dec)


def build(path: str, h: int, dh: int, dtype, device, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """→ (the module ``path`` times, the float32 (float64 for float64) naive block with the same weights)."""
    torch.manual_seed(seed)
    ours = Block(h * dh, h, impl="torch").to(device=device, dtype=dtype)
    ref_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    ref = NaiveBlock(copy.deepcopy(ours).to(ref_dtype))
    if path in ("triton", "torch"):
        ours.set_impl(path)
        return ours, ref
    naive = NaiveBlock(ours)
    if path == "naive-compiled":
        torch._dynamo.reset()  # a fresh compile per case: no recompile limit across the parametrised cases
        naive = torch.compile(naive, dynamic=False)
    return naive, ref


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


def check(module, ref, traj, pair, subj, obj, grads, *, step: bool, atol: float, tol: float) -> None:
    """Equality first: outputs close to the reference naive block elementwise (``atol`` = ``rtol``) and in relative
    norm (``tol``); with ``step`` the input gradients in relative norm as well (the trajectory gradients sum over
    2(N−1) pairs, so an elementwise bound would have to scale with N)."""
    x = [t.detach().to(ref.enc_f_r.dtype).requires_grad_(step) for t in (traj, pair)]
    with torch.set_grad_enabled(step):
        want = ref(*x, subj, obj)
        for t in (traj, pair):
            t.grad = None
        got = module(traj, pair, subj, obj)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.to(b.dtype), b.detach(), atol=atol, rtol=atol)
        assert rel_err(a, b) < tol, (rel_err(a, b), tol)
    if step:
        torch.autograd.backward(want, [gr.to(want[0].dtype) for gr in grads])
        torch.autograd.backward(got, list(grads))
        for t, r in zip((traj, pair), x, strict=True):
            assert rel_err(t.grad, r.grad) < tol, (rel_err(t.grad, r.grad), tol)
        for t in (traj, pair):
            t.grad = None


def make_step(module, traj, pair, subj, obj, grads, *, step: bool):
    """``fwd``: the block forward without autograd; ``step``: forward + backward + AdamW step (inputs' gradients
    included: in the model they flow back to the refiner)."""
    if not step:

        def fwd():
            with torch.no_grad():
                return module(traj, pair, subj, obj)

        return fwd
    opt = torch.optim.AdamW(module.parameters(), lr=1e-5)

    def train_step():
        opt.zero_grad(set_to_none=True)
        traj.grad = pair.grad = None
        out = module(traj, pair, subj, obj)
        torch.autograd.backward(out, list(grads))
        opt.step()
        return out

    return train_step


@needs_gpu
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("direction", ["fwd", "step"])
@pytest.mark.parametrize("seg", list(SEGMENTS))
@pytest.mark.parametrize("heads", list(HEADS))
def test_block_gpu(benchmark, bench, peak_mem, heads, seg, direction, path):
    if DRY and path == "naive-compiled":
        pytest.skip("dry run: torch.compile of the naive block is not exercised on the CPU (minutes of C++ builds)")
    h, dh = HEADS[heads]
    segments, n = SEGMENTS[seg]
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
    module, ref = build(path, h, dh, DTYPE, DEVICE)
    ref = ref.to(DEVICE)
    traj, pair, subj, obj, grads = problem(segments, n, h * dh, DTYPE, DEVICE)
    step = direction == "step"
    # equality first; bf16 vs the float32 naive block: ~0.005 (outputs) / ~0.009 (gradients) relative error and
    # ~0.04 largest elementwise error measured at N = 16 on the CPU (LayerNorm outputs up to ~5)
    check(module, ref, traj, pair, subj, obj, grads, step=step, atol=1e-1, tol=4e-2)
    del ref
    fn = make_step(module, traj, pair, subj, obj, grads, step=step)

    def timed():
        fn()
        sync()

    timed()  # warm-up (compiles, autotunes, allocates the optimizer state)
    peak_mem(benchmark, timed, empty_cache=True)
    benchmark.extra_info.update(pairs=subj.shape[0], tokens_per_pair=2 * L + L + L_MOT, device=device_name())
    benchmark.group = f"block-{direction}-{seg}-{heads}"
    bench(benchmark, timed)


# ------------------------------------------------------------------------------------------------------------------
# CPU row: always runs; tiny shapes in float64, our block (reference ops) vs the naive block — a correctness smoke
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["torch", "naive"])
def test_block_cpu(benchmark, bench, path):
    dev, dtype = torch.device("cpu"), torch.float64
    module, ref = build(path, 2, 8, dtype, dev)
    traj, pair, subj, obj, grads = problem(1, 4, 16, dtype, dev, lt=3, lmot=2)
    check(module, ref, traj, pair, subj, obj, grads, step=True, atol=1e-10, tol=1e-10)
    benchmark.group = "block-cpu-smoke"
    bench(benchmark, make_step(module, traj, pair, subj, obj, grads, step=True), slow=True)
