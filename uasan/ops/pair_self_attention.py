"""``pair_self_attention`` (SACEncoder): attention over each pair's tokens [traj[subj]; traj[obj]; pair], with the
trajectory rows read through the indices (see :mod:`uasan.ops.attention` for the family's dispatch rules)."""

from __future__ import annotations

import torch

from uasan.ops._attention import (
    _attend,
    _check_indices_on_host,
    _float_tensor,
    _math_dtype,
    _resolve,
    _same,
    _scale,
    _shape,
)

__all__ = ["pair_self_attention", "pair_self_attention_ref"]

_PAIR = "pair_self_attention"


def _check_pair(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj, obj, scale, impl):
    tq = _float_tensor(_PAIR, "traj_q", traj_q, 4, "(N, Lt, H, Dh)")
    for name, x in (("traj_k", traj_k), ("traj_v", traj_v)):
        _same(_PAIR, name, _float_tensor(_PAIR, name, x, 4, "(N, Lt, H, Dh)"), "traj_q", tq, dict(enumerate("NLHD")))
    pq = _float_tensor(_PAIR, "pair_q", pair_q, 4, "(P, Lp, H, Dh)")
    _same(_PAIR, "pair_q", pq, "traj_q", tq, {2: "H", 3: "Dh"})
    for name, x in (("pair_k", pair_k), ("pair_v", pair_v)):
        _same(_PAIR, name, _float_tensor(_PAIR, name, x, 4, "(P, Lp, H, Dh)"), "pair_q", pq, dict(enumerate("PLHD")))
    n, p = tq.shape[0], pq.shape[0]
    idx = []
    for name, x in (("subj", subj), ("obj", obj)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{_PAIR}: expected {name} to be a torch.Tensor of shape ({p},), got {type(x).__name__}")
        if x.dim() != 1 or x.shape[0] != p:
            raise ValueError(f"{_PAIR}: expected {name} of shape ({p},) (P from pair_q), but got {_shape(x)}")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"{_PAIR}: expected {name} to hold integer indices (int64), but got {x.dtype}")
        if x.device != tq.device:
            raise ValueError(f"{_PAIR}: expected {name} on {tq.device} like traj_q, but got {x.device}")
        idx.append(x.to(torch.int64))
    if p and (tq.device.type == "cpu" or _check_indices_on_host()):  # one host read for both range checks
        bounds = torch.stack([t for x in idx for t in torch.aminmax(x)]).tolist()
        for name, lo, hi in (("subj", *bounds[:2]), ("obj", *bounds[2:])):
            if lo < 0 or hi >= n:
                raise ValueError(f"{_PAIR}: expected {name} indices in [0, N = {n}), but got {lo if lo < 0 else hi}")
    elif p:  # no host sync on the training path: a device-side assertion
        ok = torch.stack([((x >= 0) & (x < n)).all() for x in idx]).all()
        torch._assert_async(ok, f"{_PAIR}: subj / obj indices out of range [0, N = {n})")
    return _scale(_PAIR, scale, tq.shape[3]), _resolve(_PAIR, impl, tq.device, tq.dtype), idx[0], idx[1]


def pair_self_attention_ref(
    traj_q: torch.Tensor,
    traj_k: torch.Tensor,
    traj_v: torch.Tensor,
    pair_q: torch.Tensor,
    pair_k: torch.Tensor,
    pair_v: torch.Tensor,
    subj: torch.Tensor,
    obj: torch.Tensor,
    *,
    scale: float | None = None,
    impl: str = "torch",
) -> torch.Tensor:
    """Reference: X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]] materialised by gather, O_p = softmax(Q_p K_pᵀ · scale)
    V_p per head, in float32 (float64 for float64 inputs). Returns (P, 2·Lt + Lp, H, Dh) in the input dtype.
    ``impl`` is accepted for a uniform signature and ignored."""
    scale, _, subj, obj = _check_pair(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj, obj, scale, "torch")
    dtype = traj_q.dtype
    math_dtype = _math_dtype(dtype)

    def seq(traj: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        x = torch.cat([traj[subj], traj[obj], pair], dim=1)  # (P, 2Lt+Lp, H, Dh)
        return x.to(math_dtype).transpose(1, 2)  # (P, H, 2Lt+Lp, Dh)

    q, k, v = seq(traj_q, pair_q), seq(traj_k, pair_k), seq(traj_v, pair_v)
    return _attend(q, k, v, scale).transpose(1, 2).to(dtype)  # (P, 2Lt+Lp, H, Dh)


def pair_self_attention(
    traj_q: torch.Tensor,
    traj_k: torch.Tensor,
    traj_v: torch.Tensor,
    pair_q: torch.Tensor,
    pair_k: torch.Tensor,
    pair_v: torch.Tensor,
    subj: torch.Tensor,
    obj: torch.Tensor,
    *,
    scale: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Self-attention over each pair's gathered sequence X_p = [traj[subj[p]]; traj[obj[p]]; pair[p]]:

        O_p = softmax(Q_p K_pᵀ · scale) V_p  per head,  scale = Dh^-1/2 by default.

    traj_q/k/v (N, Lt, H, Dh): projected once per trajectory. pair_q/k/v (P, Lp, H, Dh): the pair's own tokens
    (Lp may be 0). subj, obj (P,) integer indices into N, any order, repeats allowed, subj[p] == obj[p] allowed.
    Returns (P, 2·Lt + Lp, H, Dh) in the input dtype; differentiable in all six feature tensors. The Triton path
    (``kernels/pair_self_attention.py``) gathers inside the kernel and reduces the trajectory gradients without
    atomics.
    """
    scale, path, subj_i, obj_i = _check_pair(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj, obj, scale, impl)
    if path == "torch":
        return pair_self_attention_ref(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj_i, obj_i, scale=scale)
    from uasan.kernels import pair_self_attention as kernel

    return kernel.pair_self_attention(traj_q, traj_k, traj_v, pair_q, pair_k, pair_v, subj_i, obj_i, scale)
