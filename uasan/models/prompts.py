"""Prompt learner (seed paper Eq. 9–10): W_rel(c) = [w_1 … w_{L_rel}, c] → bridge text path → r_c.

The L_rel context vectors are learnable word embeddings shared by all classes; the class name's own tokens follow
them. Only the context is trained (the bridge is frozen in stage 2); gradients flow through the text path.
"""

from __future__ import annotations

import torch
from torch import nn

from uasan.models.bridge import BridgeEncoder


class PromptLearner(nn.Module):
    def __init__(self, bridge_width: int, num_context: int = 10, init_std: float = 0.02) -> None:
        super().__init__()
        if num_context < 0:
            raise ValueError(f"model.L_rel: expected >= 0 context tokens, got {num_context}")
        self.context = nn.Parameter(torch.randn(num_context, bridge_width) * init_std)  # (L_rel, H_b)
        self._tokens: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, bridge: BridgeEncoder, names: list[str]) -> torch.Tensor:
        """Class names → prompt embeddings r_c (C, d)."""
        key = tuple(names)
        if key not in self._tokens:  # tokenise each vocabulary once
            self._tokens[key] = bridge.tokenize(list(names))
        ids, mask = self._tokens[key]
        return bridge.encode_text(ids, mask, context=self.context if self.context.shape[0] else None)
