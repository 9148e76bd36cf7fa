"""The relation model's attention blocks: VisualRefiner, SACEncoder, URADecoder (seed paper §3, DESIGN §6).

All attention goes through ``uasan.ops.attention`` so that the fused Triton kernels drop in via ``impl=``.
"""

from __future__ import annotations

import torch
from torch import nn

from uasan.ops import attention


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., D) → (..., H, D / H)."""
    return x.unflatten(-1, (heads, x.shape[-1] // heads))


def _check_heads(d: int, heads: int) -> None:
    if heads < 1 or d % heads:
        raise ValueError(f"model.heads: expected a divisor of d = {d}, got {heads}")


class FeedForward(nn.Sequential):
    """φ: Linear → GELU → Linear (width 4d, as in the Transformer)."""

    def __init__(self, d: int, mult: int = 4) -> None:
        super().__init__(nn.Linear(d, mult * d), nn.GELU(), nn.Linear(mult * d, d))


class Residual(nn.Module):
    """x + f(x)."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class VisualRefiner(nn.Module):
    """Lightweight student of the bridge: V = Attn(Q, Q, Q), F_v = Attn(V, F, F).

    Q (L, d) is learnable and the same for every input, so its self-attention V is computed once per forward, not
    per trajectory; the cross-attention broadcasts V over the batch (``shared_query_attention``: no expanded copy).
    Trained to match the frozen bridge's tokens (L_dis = ‖F_v − BridgeEnc(F)‖²).
    """

    def __init__(self, visual_dim: int, d: int, num_queries: int, heads: int, impl: str = "auto") -> None:
        super().__init__()
        _check_heads(d, heads)
        self.heads, self.impl = heads, impl
        self.queries = nn.Parameter(torch.randn(num_queries, d) * 0.02)  # Q (L, d)
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)  # runs once on (1, L, d)
        self.in_proj = nn.Linear(visual_dim, d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.norm_q, self.norm_x, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = FeedForward(d)

    def shared_queries(self) -> torch.Tensor:
        """V = Norm(Q + Attn(Q, Q, Q)), (L, d)."""
        q = self.queries[None]
        return self.norm_q(q + self.self_attn(q, q, q, need_weights=False)[0])[0]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, S, D_v) or (B, D_v) → F_v (B, L, d)."""
        if feats.dim() == 2:
            feats = feats[:, None]
        v_q = self.shared_queries()  # (L, d), once for the whole batch
        x = self.in_proj(feats)  # (B, S, d)
        out = attention.shared_query_attention(
            _split(self.q(v_q), self.heads),
            _split(self.k(x), self.heads),
            _split(self.v(x), self.heads),
            impl=self.impl,
        )  # (B, L, H, Dh)
        y = self.norm_x(v_q + self.o(out.flatten(-2)))  # (B, L, d)
        return self.norm_ff(y + self.ff(y))


class SACEncoder(nn.Module):
    """Subject–object–union context encoder: F_enc = Norm(A + φ_enc(A)), A = Attn(F_sent + f_r, F_sent + f_r, F_sent).

    F_sent = [F̂_S; F̂_O; Û; F_mot] (P, 2L + L + L_mot, d) is never materialised: subject and object rows are
    projected once per trajectory (N, L, d) and gathered by index inside ``pair_self_attention``.
    """

    def __init__(self, d: int, heads: int, impl: str = "auto") -> None:
        super().__init__()
        _check_heads(d, heads)
        self.heads, self.impl = heads, impl
        self.f_r = nn.Parameter(torch.zeros(d))  # the relation token, added to queries and keys
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ff = FeedForward(d)
        self.norm = nn.LayerNorm(d)

    def forward(self, traj: torch.Tensor, pair: torch.Tensor, subj: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """traj (N, L, d), pair (P, Lp, d) = [Û; F_mot], subj/obj (P,) → F_enc (P, 2L + Lp, d)."""
        h = self.heads
        tq = traj + self.f_r
        pq = pair + self.f_r
        out = attention.pair_self_attention(
            _split(self.q(tq), h),
            _split(self.k(tq), h),
            _split(self.v(traj), h),  # (N, L, H, Dh), once per trajectory
            _split(self.q(pq), h),
            _split(self.k(pq), h),
            _split(self.v(pair), h),  # (P, Lp, H, Dh)
            subj,
            obj,
            impl=self.impl,
        )  # (P, 2L + Lp, H, Dh)
        a = self.o(out.flatten(-2))  # (P, 2L + Lp, d)
        return self.norm(a + self.ff(a))


class URADecoder(nn.Module):
    """Union-aware relation decoder: t_r = MHAttn(f_r, F_enc, F_enc); F_dec = Norm(t_r + φ_dec(t_r)).

    The query f_r is one learnable vector shared by all pairs (projected once, broadcast as a view).
    """

    def __init__(self, d: int, heads: int, impl: str = "auto") -> None:
        super().__init__()
        _check_heads(d, heads)
        self.heads, self.impl = heads, impl
        self.f_r = nn.Parameter(torch.randn(d) * 0.02)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ff = FeedForward(d)
        self.norm = nn.LayerNorm(d)

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        """enc (P, T, d) → F_dec (P, d)."""
        P = enc.shape[0]
        q = _split(self.q(self.f_r), self.heads).expand(P, -1, -1)  # (P, H, Dh) view, no copy
        t = attention.pair_cross_attention(
            q, _split(self.k(enc), self.heads), _split(self.v(enc), self.heads), impl=self.impl
        )  # (P, H, Dh)
        t = self.o(t.flatten(-2))
        return self.norm(t + self.ff(t))
