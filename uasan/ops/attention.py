"""Attention ops of the relation model (DESIGN §6): PyTorch references beside fused Triton paths.

Shapes: N trajectories, P pairs, Lt tokens per trajectory, Lp tokens per pair (union + motion, may be 0), H heads,
Dh head dim, B batch rows, S key tokens, L query tokens, T encoded tokens per pair. Every op computes, per head,

    Attn(Q, K, V) = softmax(Q Kᵀ · scale) V,   scale = Dh^-1/2 by default,

and takes ``impl``: ``"auto"`` (Triton for CUDA bfloat16 / float16 tensors, the reference elsewhere), ``"triton"``
(the fused path: CUDA bfloat16 / float16 tensors, or CPU float32 / float16 tensors under the Triton interpreter,
``TRITON_INTERPRET=1``, whose bfloat16 dots are wrong; anything else is a ``ValueError``) or ``"torch"`` (the
reference). Every path is differentiable. The references compute in float32 (float64 for float64 inputs) and return
the input dtype; the Triton paths accumulate in float32. Float32 CUDA tensors take the reference, which follows
``torch.get_float32_matmul_precision()`` through its matmuls: the kernels' IEEE float32 dots spill registers, and
their TF32 dots would ignore that setting. The Triton kernel modules (``uasan.kernels.pair_self_attention``,
``uasan.kernels.shared_query_attention``) are imported on first use only. Each op has its module
(``uasan/ops/<op>.py``, like its kernel, test and benchmark); this one gathers the family.

Index checks: ``subj`` / ``obj`` out of range are a ``ValueError`` for CPU tensors and, with ``UASAN_CHECK_INDICES=1``,
for CUDA tensors too (that check reads two numbers back to the host, a sync per call); without it CUDA tensors get
a device-side assertion (``torch._assert_async``: no sync, but the failure surfaces as a CUDA error later).

* ``pair_self_attention``: SACEncoder. The sequence of pair p is X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]]
  (2·Lt + Lp tokens) and O_p = Attn(Q_p, K_p, V_p). The reference materialises X_p by gather; the kernel reads the
  trajectory rows through ``subj`` / ``obj`` and never builds anything of size P × 2·Lt (forward or backward).
* ``shared_query_attention``: VisualRefiner. O_b = Attn(Q, K_b, V_b) with one Q (L, H, Dh) for every row b; the
  kernel broadcasts Q (no expanded copy) and reduces dQ over the batch deterministically.
* ``pair_cross_attention``: URADecoder. One query per pair over its T tokens, o_p = Attn(q_p, K_p, V_p). Its
  ``"triton"`` path is ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on
  CUDA), not a kernel of this package.
"""

from uasan.ops.pair_cross_attention import pair_cross_attention, pair_cross_attention_ref
from uasan.ops.pair_self_attention import pair_self_attention, pair_self_attention_ref
from uasan.ops.shared_query_attention import shared_query_attention, shared_query_attention_ref

__all__ = [
    "pair_cross_attention",
    "pair_cross_attention_ref",
    "pair_self_attention",
    "pair_self_attention_ref",
    "shared_query_attention",
    "shared_query_attention_ref",
]
