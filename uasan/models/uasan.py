"""UASAN: the Union-Aware Semantic Alignment Network and its ablation variants (seed paper, DESIGN §6).

Stage 1 fine-tunes the :class:`~uasan.models.bridge.BridgeEncoder` for trajectory classification (Eq. 1–3).
Stage 2 freezes it and trains the relation model:

* VisualRefiner: F̂ = Attn(V, F, F) for trajectories and union regions, distilled from the bridge (L_dis);
* motion tokens F_mot (P, L_mot, d) from the 14-d relative motion + GIoU features;
* SACEncoder over [F̂_S; F̂_O; Û; F_mot] → F_enc; URADecoder → F_dec;
* predictor (Eq. 11): R = Norm(φ_pre(F_dec + F_enc[U] + Û + F_mot)) (each pooled over its tokens),
  logits = cos(R, r_c) / τ_rel + b with r_c the learned prompts (Eq. 9–10); multi-label, so binary cross-entropy
  (L_union);
* a fine-grained pair branch on [F̂_S; F̂_O] with its own prompts (L_fg);
* L_traj: the refiner's pooled trajectory tokens classified against the frozen class embeddings.

L = L_traj + L_dis + L_union + L_fg. Variants: A (pair only: the predictor sees [F̂_S; F̂_O]), B (+ union and
motion, no encoder), C (+ SACEncoder), full (+ URADecoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from uasan.models.bridge import BridgeEncoder
from uasan.models.layers import FeedForward, SACEncoder, URADecoder, VisualRefiner
from uasan.models.prompts import PromptLearner

VARIANTS = ("A", "B", "C", "full")
MOTION_DIM = 14  # 12 relative motion features + GIoU(first) + GIoU(last)


@dataclass(frozen=True)
class ModelSpec:
    visual_dim: int
    d: int = 512
    L: int = 32
    L_mot: int = 2
    L_rel: int = 10
    heads: int = 8
    variant: str = "full"
    bridge_layers: int | None = None
    bridge_path: str | None = None
    lora_r: int = 8
    tau_init: float = 0.07
    text_residual: bool = True
    impl: str = "auto"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant: expected one of {VARIANTS}, got {self.variant!r}")
        for name in ("visual_dim", "d", "L", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: expected >= 1, got {getattr(self, name)}")


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
    """Mean cross-entropy over the labelled rows; 0 (still attached to the graph) when there are none.

    ``F.cross_entropy``'s mean is 0/0 = NaN on an empty batch or one whose labels are all ignored (a segment without
    proposals, or a DDP rank whose shard has none); dividing the sum by max(count, 1) gives 0 and zero gradients
    there, the same value as the plain mean otherwise, without a host sync.
    """
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total / (labels != ignore_index).sum().clamp(min=1)


def _mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error, 0 on empty inputs (``F.mse_loss`` gives NaN there)."""
    return F.mse_loss(x, target, reduction="sum") / max(x.numel(), 1)


class UASAN(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.d
        self.bridge = BridgeEncoder(
            spec.visual_dim, d, spec.L, spec.bridge_layers, spec.bridge_path, spec.lora_r, spec.tau_init
        )
        self.background = nn.Parameter(torch.randn(d) * 0.02)  # text-free class for proposals that match nothing
        self.refiner = VisualRefiner(spec.visual_dim, d, spec.L, spec.heads, spec.impl)
        uses_union = spec.variant != "A"
        self.motion = (
            nn.Sequential(nn.Linear(MOTION_DIM, d), nn.GELU(), nn.Linear(d, spec.L_mot * d)) if uses_union else None
        )
        self.encoder = SACEncoder(d, spec.heads, spec.impl) if spec.variant in ("C", "full") else None
        self.decoder = URADecoder(d, spec.heads, spec.impl) if spec.variant == "full" else None
        self.pair_proj = nn.Linear(2 * d, d)  # [F̂_S; F̂_O] pooled → d, for variants A/B and the L_fg branch
        self.pre = nn.Sequential(FeedForward(d), nn.LayerNorm(d))  # Norm(φ_pre(·))
        self.fg_head = nn.Sequential(FeedForward(d), nn.LayerNorm(d))
        width = self.bridge.qformer.config.hidden_size
        self.rel_prompts = PromptLearner(width, spec.L_rel)
        self.fg_prompts = PromptLearner(width, spec.L_rel)
        # CLIP-Adapter-style residual: the union region's own features, already in a vision-language space, mapped
        # into the bridge's text space (identity start when the widths agree) keep the predicate semantics of
        # categories that training never labels; the learned branch adds to it.
        self.text_residual = None
        if spec.text_residual and uses_union:
            self.text_residual = nn.Linear(spec.visual_dim, width)
            with torch.no_grad():
                if spec.visual_dim == width:
                    self.text_residual.weight.copy_(torch.eye(width))
                else:
                    self.text_residual.weight.zero_()
                self.text_residual.bias.zero_()
            self.residual_weight = nn.Parameter(torch.tensor(1.0))
        self.rel_scale = nn.Parameter(torch.tensor(math.log(1 / spec.tau_init)))
        self.rel_bias = nn.Parameter(torch.tensor(-4.0))  # most (pair, predicate) targets are negative
        self.fg_bias = nn.Parameter(torch.tensor(-4.0))
        self._class_cache: dict[tuple[str, ...], torch.Tensor] = {}

    def forward(self, stage: int, **inputs: object) -> dict[str, torch.Tensor]:
        """Training losses of ``stage`` 1 (:meth:`stage1_loss`) or 2 (:meth:`stage2_losses`); going through forward
        lets DistributedDataParallel synchronise the gradients."""
        if stage == 1:
            return self.stage1_loss(**inputs)
        if stage == 2:
            return self.stage2_losses(**inputs)
        raise ValueError(f"UASAN.forward: expected stage 1 or 2, got {stage!r}")

    # ---- stage 1: trajectory classification by the bridge --------------------------------------------------------

    def bridge_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.bridge.parameters() if p.requires_grad] + [self.background]

    def freeze_bridge(self) -> None:
        """Stage 2: the bridge (LoRA included) and its classifications stay fixed, as in the paper. A frozen bridge is
        a fixed function: it stays in eval mode (no dropout) whatever ``train()`` says, so its cached class
        embeddings and its distillation targets do not depend on the step they were first computed at."""
        for p in self.bridge.parameters():
            p.requires_grad_(False)
        self.background.requires_grad_(False)
        self._bridge_frozen = True
        self._class_cache.clear()
        self.bridge.eval()

    def train(self, mode: bool = True) -> UASAN:
        super().train(mode)
        if getattr(self, "_bridge_frozen", False):
            self.bridge.eval()
        return self

    def relation_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.bridge.parameters()} | {id(self.background)}
        return [p for p in self.parameters() if id(p) not in skip and p.requires_grad]

    def class_embeddings(self, names: list[str], frozen: bool = False) -> torch.Tensor:
        """[o_c for c in names; background] (C + 1, d). With ``frozen`` (stage 2 and inference) computed once."""
        key = tuple(names)
        if frozen and key in self._class_cache:
            return self._class_cache[key]
        with torch.set_grad_enabled(not frozen and torch.is_grad_enabled()):
            emb = torch.cat([self.bridge.encode_names(list(names)), self.background[None]], dim=0)
        if frozen:
            self._class_cache[key] = emb.detach()
        return emb

    def traj_logits(self, traj_feats: torch.Tensor, names: list[str], frozen: bool = False) -> torch.Tensor:
        """Bridge classification (Eq. 3) of trajectories (N, S, D_v) over ``names`` + background → (N, C + 1)."""
        tokens = self.bridge.encode_visual(traj_feats)  # (N, L, d)
        return self.bridge.classify(tokens, self.class_embeddings(names, frozen))

    def stage1_loss(self, traj_feats: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Cross-entropy over base classes + background; ``labels`` (N,) in [0, C] (C = background), −1 ignored."""
        logits = self.traj_logits(traj_feats, names)
        return {"L_traj": _cross_entropy(logits, labels)}

    # ---- stage 2: relations --------------------------------------------------------------------------------------

    def encode_pairs(
        self,
        traj_feats: torch.Tensor,
        union_feats: torch.Tensor,
        motion: torch.Tensor,
        subj: torch.Tensor,
        obj: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Relation features of P pairs over N trajectories.

        traj_feats (N, S, D_v), union_feats (P, S, D_v), motion (P, 14), subj/obj (P,) → R (P, d), fg (P, d) and
        the refined tokens for the distillation loss.
        """
        spec = self.spec
        traj = self.refiner(traj_feats)  # F̂ (N, L, d)
        pooled = traj.mean(1)  # (N, d)
        pair = self.pair_proj(torch.cat([pooled[subj], pooled[obj]], dim=-1))  # (P, d)
        out = {"traj_tokens": traj, "fg": self.fg_head(pair)}
        if spec.variant == "A":
            out["R"] = self.pre(pair)
            return out
        union = self.refiner(union_feats)  # Û (P, L, d)
        mot = self.motion(motion).unflatten(-1, (spec.L_mot, spec.d))  # F_mot (P, L_mot, d)
        out["union_tokens"] = union
        if spec.variant == "B":
            out["R"] = self._with_residual(self.pre(pair + union.mean(1) + mot.mean(1)), union_feats)
            return out
        enc = self.encoder(traj, torch.cat([union, mot], dim=1), subj, obj)  # F_enc (P, 2L + L + L_mot, d)
        enc_union = enc[:, 2 * spec.L : 3 * spec.L].mean(1)  # F_enc[U] (P, d)
        x = enc_union + union.mean(1) + mot.mean(1)
        if self.decoder is not None:
            x = x + self.decoder(enc)  # F_dec (P, d)
        out["R"] = self._with_residual(self.pre(x), union_feats)
        return out

    def _with_residual(self, r: torch.Tensor, union_feats: torch.Tensor) -> torch.Tensor:
        if self.text_residual is None:
            return r
        raw = union_feats.mean(1) if union_feats.dim() == 3 else union_feats  # (P, D_v)
        z = self.bridge.text_projection(self.text_residual(raw))  # (P, d) in the text embedding space
        return F.normalize(r, dim=-1) + self.residual_weight * F.normalize(z, dim=-1)

    def predicate_logits(self, feats: dict[str, torch.Tensor], names: list[str], branch: str = "R") -> torch.Tensor:
        """cos(R, r_c) / τ_rel + b → (P, C); ``branch="fg"`` scores the fine-grained pair branch."""
        prompts = self.rel_prompts if branch == "R" else self.fg_prompts
        bias = self.rel_bias if branch == "R" else self.fg_bias
        r_c = F.normalize(prompts(self.bridge, list(names)), dim=-1)  # (C, d)
        scale = self.rel_scale.clamp(max=math.log(100.0)).exp()
        return F.normalize(feats[branch], dim=-1) @ r_c.t() * scale + bias

    def stage2_losses(
        self,
        traj_feats: torch.Tensor,
        union_feats: torch.Tensor,
        motion: torch.Tensor,
        subj: torch.Tensor,
        obj: torch.Tensor,
        traj_labels: torch.Tensor,
        predicate_targets: torch.Tensor,
        object_names: list[str],
        predicate_names: list[str],
    ) -> dict[str, torch.Tensor]:
        """L_traj + L_dis + L_union + L_fg (Eq. 12) on base categories.

        traj_labels (N,) in [0, C_obj] (C_obj = background, −1 ignored); predicate_targets (P, C_pred) multi-hot.
        """
        feats = self.encode_pairs(traj_feats, union_feats, motion, subj, obj)
        with torch.no_grad():  # the frozen bridge is the teacher
            teacher = self.bridge.encode_visual(traj_feats)
        losses = {"L_dis": _mse(feats["traj_tokens"], teacher)}
        if "union_tokens" in feats and union_feats.shape[0]:
            with torch.no_grad():
                teacher_u = self.bridge.encode_visual(union_feats)
            losses["L_dis"] = losses["L_dis"] + _mse(feats["union_tokens"], teacher_u)
        cls = self.class_embeddings(object_names, frozen=True)
        traj_logits = self.bridge.classify(feats["traj_tokens"], cls)
        losses["L_traj"] = _cross_entropy(traj_logits, traj_labels)
        targets = predicate_targets.to(feats["R"].dtype)
        if targets.shape[0]:
            losses["L_union"] = F.binary_cross_entropy_with_logits(
                self.predicate_logits(feats, predicate_names), targets
            )
            losses["L_fg"] = F.binary_cross_entropy_with_logits(
                self.predicate_logits(feats, predicate_names, "fg"), targets
            )
        else:  # no pairs in the batch: keep the graph connected for DDP
            losses["L_union"] = losses["L_fg"] = feats["R"].sum() * 0.0
        return losses

    @torch.no_grad()
    def predicate_scores(
        self,
        traj_feats: torch.Tensor,
        union_feats: torch.Tensor,
        motion: torch.Tensor,
        subj: torch.Tensor,
        obj: torch.Tensor,
        predicate_names: list[str],
    ) -> torch.Tensor:
        """Inference: per-pair predicate probabilities (P, C) over ``predicate_names``."""
        feats = self.encode_pairs(traj_feats, union_feats, motion, subj, obj)
        return torch.sigmoid(self.predicate_logits(feats, predicate_names))
