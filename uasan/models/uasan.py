"""UASAN: the Union-Aware Semantic Alignment Network and its ablation variants (seed paper, DESIGN §6).

The bridge (:class:`~uasan.models.bridge.BridgeEncoder`) is a pretrained ITC model — a BLIP-2 checkpoint, or on the
synthetic world the stage-0 bridge — frozen, with a LoRA adapter. Stage 1 trains the adapter (and τ, and the
background class) for trajectory classification, Eq. 1–3: p(c | F) = softmax_c(max_l cos(f′_l, o_c) / τ) over base
classes + background. Stage 2 freezes the bridge and trains the relation model:

* VisualRefiner: F̂ = Attn(V, F, F) for trajectories and union regions (width d), mapped into the bridge's ITC space
  (e) by ``to_itc`` (a learned linear map, the identity at the start when d = e: the ITC space stays the bridge's);
* L_dis (Eq. 4) = ‖to_itc(F̂) − BridgeEnc(F)‖ on the ground-truth trajectories of the training segments (per query
  token, averaged); ``distil_union`` also distils the union regions of the batch's pairs (off by default);
* L_traj: the refined proposal tokens classified by Eq. 3 against the frozen bridge's class embeddings;
* motion tokens F_mot (P, L_mot, d) from the 14-d relative motion + GIoU features;
* SACEncoder over [F̂_S; F̂_O; Û; F_mot] → F_enc; URADecoder → F_dec;
* predictor (Eq. 11): R = Norm(φ_pre(F_dec + F_enc[U] + Û + F_mot)) (each pooled over its tokens), φ_pre a residual
  MLP (x + MLP(x)): what the distilled Û carries of the bridge's space reaches the predictor unchanged at the start,
  logits = cos(to_itc(R), r_c) / τ_rel with r_c the learned prompts through the bridge's text path (Eq. 9–10);
  multi-label: RePro's sigmoid focal loss (L_union);
* a fine-grained pair branch on [F̂_S; F̂_O] with its own prompts and τ (L_fg, the same loss).

L = L_traj + L_dis + L_union + L_fg. Variants: A (pair only: the predictor sees [F̂_S; F̂_O]), B (+ union and
motion, no encoder), C (+ SACEncoder), full (+ URADecoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from uasan.models.bridge import BridgeEncoder
from uasan.models.config import ModelConfig
from uasan.models.layers import FeedForward, Residual, SACEncoder, URADecoder, VisualRefiner
from uasan.models.losses import cross_entropy, distillation_loss, relation_focal_loss
from uasan.models.prompts import PromptLearner

MOTION_DIM = 14  # 12 relative motion features + GIoU(first) + GIoU(last)


class UASAN(nn.Module):
    def __init__(self, spec: ModelConfig) -> None:
        if spec.visual_dim is None:
            raise ValueError("model.visual_dim: the model needs its input features' width (predict.model_spec sets it)")
        super().__init__()
        self.spec = spec
        d = spec.d
        self.bridge = BridgeEncoder.build(
            spec.visual_dim, path=spec.bridge_path, embed_dim=spec.embed_dim, num_queries=spec.L,
            num_layers=spec.bridge_layers, tau_init=spec.tau_init,
        )  # fmt: skip
        self.bridge.add_lora(spec.lora_r, spec.lora_alpha, spec.lora_dropout)
        e = self.bridge.embed_dim
        self.background = nn.Parameter(torch.randn(e) * 0.02)  # text-free class for proposals that match nothing
        self.refiner = VisualRefiner(spec.visual_dim, d, spec.L, spec.heads, spec.impl)
        # relation width d → the bridge's ITC space: a learned linear map, the identity at the start when d = e (the
        # refiner's last LayerNorm fixes its output's scale; the map lets L_dis match the bridge's scale at once)
        self.to_itc = nn.Linear(d, e)
        if d == e:
            with torch.no_grad():
                self.to_itc.weight.copy_(torch.eye(d))
                self.to_itc.bias.zero_()
        uses_union = spec.variant != "A"
        self.motion = (
            nn.Sequential(nn.Linear(MOTION_DIM, d), nn.GELU(), nn.Linear(d, spec.L_mot * d)) if uses_union else None
        )
        self.encoder = SACEncoder(d, spec.heads, spec.impl) if spec.variant in ("C", "full") else None
        self.decoder = URADecoder(d, spec.heads, spec.impl) if spec.variant == "full" else None
        self.pair_proj = nn.Linear(2 * d, d)  # [F̂_S; F̂_O] pooled → d, for variants A/B and the L_fg branch
        self.pre = nn.Sequential(Residual(FeedForward(d)), nn.LayerNorm(d))  # Norm(φ_pre(·)), φ_pre(x) = x + MLP(x)
        self.fg_head = nn.Sequential(FeedForward(d), nn.LayerNorm(d))
        width = self.bridge.hidden_size
        self.rel_prompts = PromptLearner(width, spec.L_rel)
        self.fg_prompts = PromptLearner(width, spec.L_rel)
        self.rel_scale = nn.Parameter(torch.tensor(math.log(1 / spec.tau_init)))  # τ_rel = exp(−rel_scale)
        self.fg_scale = nn.Parameter(torch.tensor(math.log(1 / spec.tau_init)))
        self._class_cache: dict[tuple[str, ...], torch.Tensor] = {}
        self._prompt_cache: dict[tuple, torch.Tensor] = {}

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
        """Stage 1's parameters: the bridge's trainable ones (LoRA and τ) and the background class."""
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

    def clear_class_cache(self) -> None:
        """Forget the cached class embeddings (after the bridge moved: stage 1's validation)."""
        self._class_cache.clear()

    def class_embeddings(self, names: list[str], frozen: bool = False) -> torch.Tensor:
        """[o_c for c in names; background] (C + 1, e). With ``frozen`` (stage 2 and inference) computed once."""
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
        tokens = self.bridge.encode_visual(traj_feats)  # (N, L, e)
        return self.bridge.classify(tokens, self.class_embeddings(names, frozen))

    def stage1_loss(self, traj_feats: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Cross-entropy over base classes + background; ``labels`` (N,) in [0, C] (C = background), −1 ignored."""
        return {"L_traj": cross_entropy(self.traj_logits(traj_feats, names), labels)}

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
        the refined tokens (N, L, d) / (P, L, d) for the distillation and trajectory losses.
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
            out["R"] = self.pre(pair + union.mean(1) + mot.mean(1))
            return out
        enc = self.encoder(traj, torch.cat([union, mot], dim=1), subj, obj)  # F_enc (P, 2L + L + L_mot, d)
        enc_union = enc[:, 2 * spec.L : 3 * spec.L].mean(1)  # F_enc[U] (P, d)
        x = enc_union + union.mean(1) + mot.mean(1)
        if self.decoder is not None:
            x = x + self.decoder(enc)  # F_dec (P, d)
        out["R"] = self.pre(x)
        return out

    def predicate_logits(self, feats: dict[str, torch.Tensor], names: list[str], branch: str = "R") -> torch.Tensor:
        """cos(to_itc(R), r_c) / τ_rel → (P, C); ``branch="fg"`` scores the fine-grained pair branch."""
        prompts = self.rel_prompts if branch == "R" else self.fg_prompts
        scale = self.rel_scale if branch == "R" else self.fg_scale
        r_c = F.normalize(self._prompt_embeddings(prompts, branch, names), dim=-1)  # (C, e)
        x = F.normalize(self.to_itc(feats[branch]), dim=-1)  # (P, e)
        return x @ r_c.t() * scale.clamp(max=math.log(100.0)).exp()

    def _prompt_embeddings(self, prompts: nn.Module, branch: str, names: list[str]) -> torch.Tensor:
        """r_c of every name (Eq. 9–10: the learned context and the name through the bridge's text path), (C, e).

        Without gradients and in eval mode (inference, validation) they are computed once per name list and reused
        for every batch — they were 60 % of a prediction pass. The cache key holds every parameter the text path
        reads with its version counter, which any in-place update (an optimizer step, ``load_state_dict``) bumps, and
        its storage, so a changed or moved weight is never served a stale embedding."""
        if torch.is_grad_enabled() or self.training:
            return prompts(self.bridge, list(names))
        params = (*prompts.parameters(), *self.bridge.parameters())
        versions = tuple((id(q), q._version, q.data_ptr()) for q in params)  # data_ptr: .to() swaps the storage
        key = (branch, tuple(names), torch.is_autocast_enabled(), versions)
        if key not in self._prompt_cache:
            if len(self._prompt_cache) >= 8:  # a few name lists (novel, all, base) per model state
                self._prompt_cache.clear()
            self._prompt_cache[key] = prompts(self.bridge, list(names))
        return self._prompt_cache[key]

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
        gt_feats: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """L_traj + L_dis + L_union + L_fg (Eq. 12) on base categories.

        traj_labels (N,) in [0, C_obj] (C_obj = background, −1 ignored); predicate_targets (P, C_pred) multi-hot;
        gt_feats (N_gt, S, D_v) the features of the segments' ground-truth trajectories, the distillation inputs
        (None: no L_dis).
        """
        feats = self.encode_pairs(traj_feats, union_feats, motion, subj, obj)
        losses = {}
        if gt_feats is not None:
            with torch.no_grad():  # the frozen bridge is the teacher
                teacher = self.bridge.encode_visual(gt_feats)  # (N_gt, L, e)
            losses["L_dis"] = distillation_loss(self.to_itc(self.refiner(gt_feats)), teacher)
        if self.spec.distil_union and "union_tokens" in feats:
            with torch.no_grad():
                teacher_u = self.bridge.encode_visual(union_feats)
            dis_u = distillation_loss(self.to_itc(feats["union_tokens"]), teacher_u)
            losses["L_dis"] = losses["L_dis"] + dis_u if "L_dis" in losses else dis_u
        cls = self.class_embeddings(object_names, frozen=True)
        losses["L_traj"] = cross_entropy(self.bridge.classify(self.to_itc(feats["traj_tokens"]), cls), traj_labels)
        targets = predicate_targets.to(feats["R"].dtype)
        losses["L_union"] = relation_focal_loss(self.predicate_logits(feats, predicate_names), targets)
        losses["L_fg"] = relation_focal_loss(self.predicate_logits(feats, predicate_names, "fg"), targets)
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
        """Inference: per-pair predicate probabilities σ(logits of the predictor) (P, C) over ``predicate_names``."""
        feats = self.encode_pairs(traj_feats, union_feats, motion, subj, obj)
        return torch.sigmoid(self.predicate_logits(feats, predicate_names))
