"""Shared by the attention tests: the device and dtype the kernels are tested in, gradients, error rules, and the
'PyTorch in the same dtype' baselines of FlashAttention's error rule.

Importing it sets ``UASAN_AUTOTUNE=0`` for the test session: on a GPU each kernel launches its first allowed tile
instead of tuning (and compiling) every allowed tile for every tiny test shape. Every allowed tile is checked by
``tests/kernels/test_compile.py`` (compiled) and by ``benchmarks/gpu_report.py`` (run, at the model's shapes).
"""

from __future__ import annotations

import os

import torch

from tests.common import CUDA

os.environ.setdefault("UASAN_AUTOTUNE", "0")

DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.bfloat16 if CUDA else torch.float32  # the kernels' dtype in the tests (the interpreter's bf16 is wrong)


def grads(fn, inputs, do, dtype=None, allow_unused=False):
    """``(fn(*inputs), d/d inputs of <fn, do>)``; inputs cast to ``dtype`` first when given."""
    xs = [x.detach().to(dtype or x.dtype).requires_grad_() for x in inputs]
    out = fn(*xs)
    return out, torch.autograd.grad(out, xs, do.to(out.dtype), allow_unused=allow_unused)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().amax()) if a.numel() else 0.0


def assert_close(got, want, names, atol=1e-4):
    """Elementwise |got − want| ≤ atol + 1e-4 · max |want| (the float32 kernels against float64)."""
    for name, a, b in zip(names, got, want, strict=True):
        assert a.shape == b.shape, name
        bound = atol + 1e-4 * float(b.detach().abs().amax() if b.numel() else 0)
        assert max_err(a, b) <= bound, (name, max_err(a, b))


def flash_rule(got, want, same, names, atol):
    """|kernel − ref64| ≤ 2·|torch same dtype − ref64| + atol for the output and every gradient (FlashAttention's
    test rule); each argument is ``(out, grads)``."""
    (o, gs), (o64, gs64), (ol, gls) = got, want, same
    for name, a, b, c in zip(names, [o, *gs], [o64, *gs64], [ol, *gls], strict=True):
        assert a.shape == b.shape, name
        assert max_err(a, b) <= 2 * max_err(c, b) + atol, (name, max_err(a, b), max_err(c, b))


def check(got, want, same, names, atol=None):
    """The device's rule: the flash rule in bf16 on CUDA (``same()`` computes the baseline), the float32 bound under
    the interpreter."""
    if CUDA:
        flash_rule(got, want, same(), names, 1e-3 if atol is None else atol)
    else:
        assert_close([got[0], *got[1]], [want[0], *want[1]], names, 1e-4 if atol is None else atol)


def lowp_pair(tq, tk, tv, pq, pk, pv, subj, obj, scale=None):
    """Materialise-then-attend entirely in the input dtype (PyTorch's own path in that dtype)."""
    q, k, v = (torch.cat([t[subj], t[obj], p], 1).transpose(1, 2) for t, p in ((tq, pq), (tk, pk), (tv, pv)))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v).transpose(1, 2)


def lowp_shared(q, k, v, scale=None):
    """Shared-query attention entirely in the input dtype."""
    q, k, v = q.transpose(0, 1)[None], k.transpose(1, 2), v.transpose(1, 2)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v).transpose(1, 2)
