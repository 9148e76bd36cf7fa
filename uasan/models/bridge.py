"""BridgeEncoder: BLIP-2's image–text contrastive (ITC) model over precomputed visual tokens (seed paper Eq. 1–3).

Everything BLIP-2's ITC uses, and nothing else (transformers' ``Blip2ForImageTextRetrieval`` with
``use_image_text_matching_head=False``):

* visual path: L learned query tokens → Q-Former (self-attention, cross-attention to the visual tokens F (S, D_v),
  query feed-forward) → (L, H_b) → ``vision_projection`` → (L, e), e the ITC width (256 for BLIP-2);
* text path: word + position embeddings → the same Q-Former layers without cross-attention (text feed-forward)
  → [CLS] (BLIP-2) → ``text_projection`` → (e,);
* Eq. 3, BLIP-2's ITC score: s(f, c) = max_l cos(f′_l, o_c), the maximum over the query tokens (``logits_per_image``
  of transformers), and p(c | f) = softmax_c(s(f, c) / τ) with a learnable τ (BLIP-2's ``temp``, which the
  transformers conversion drops: it starts at ``tau_init``).

Weights come from one of two sources:

* :meth:`BridgeEncoder.from_blip2`: a local BLIP-2 folder (``Blip2ForImageTextRetrieval`` layout, e.g.
  blip2-itm-vit-g): the Q-Former, query tokens, both ITC projections and the tokenizer are kept as they are, read
  straight from the weight files (the vision tower is not built). Visual tokens must be what the checkpoint's Q-Former
  reads: the vision tower's ``last_hidden_state`` (after ``post_layernorm``, LAVIS' ``ln_vision``), D_v equal to the
  checkpoint's vision width (1408 for EVA ViT-g), as ``python -m uasan.extract`` writes them.
* :meth:`BridgeEncoder.from_text_model`: the synthetic world's default, a Q-Former whose BERT layers are the packaged
  MiniLM (self-attention, both feed-forwards, embeddings) and whose cross-attention, query tokens and projections
  are new; stage 0 (:mod:`uasan.pretrain`) aligns it on the world's pretraining corpus, the stand-in for BLIP-2's
  pretraining. A sentence-embedding BERT defines its text space by the mean over its tokens, so this bridge pools
  the text tokens by their mean instead of [CLS] (``text_pooling``).

:meth:`BridgeEncoder.add_lora` then freezes the pretrained weights and adds UASAN's LoRA adapter (peft; r 8, α 32,
dropout 0.05 on the Q-Former's query / value projections and both ITC projections).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uasan.models.text import phrase, require_minilm_path

__all__ = ["LORA_TARGETS", "BridgeEncoder", "read_blip2_weights"]

LORA_TARGETS = ("query", "value", "vision_projection", "text_projection")  # UASAN's adapter, transformers' names
_ITC_PREFIXES = ("qformer.", "embeddings.", "vision_projection.", "text_projection.")
MAX_TEXT_LEN = 32  # BLIP-2's max_txt_len (LAVIS feature extractor)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{what}: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what}: {path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what}: {path} does not hold a JSON object")
    return data


def is_blip2_folder(path: str | Path) -> bool:
    try:
        return _read_json(Path(path) / "config.json", "config").get("model_type") == "blip-2"
    except ValueError:
        return False


def read_blip2_weights(folder: Path, what: str = "model.bridge_path") -> dict[str, torch.Tensor]:
    """The ITC tensors (``query_tokens``, ``qformer.*``, ``embeddings.*``, ``*_projection.*``) of a BLIP-2 folder,
    read without building the model: ``model.safetensors`` (or its sharded index), else ``pytorch_model.bin`` (with
    ``weights_only=True``). The vision tower and the ITM / language-model heads are not read."""

    def wanted(key: str) -> bool:
        return key == "query_tokens" or key.startswith(_ITC_PREFIXES)

    files: list[Path] = []
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif (folder / "model.safetensors.index.json").is_file():
        index = _read_json(folder / "model.safetensors.index.json", what).get("weight_map", {})
        files = sorted({folder / f for k, f in index.items() if wanted(k)})
    if files:
        from safetensors import safe_open

        out: dict[str, torch.Tensor] = {}
        for f in files:
            try:
                with safe_open(str(f), framework="pt") as st:
                    for k in st.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
                        if wanted(k):
                            out[k] = st.get_tensor(k)
            except (OSError, ValueError) as exc:
                raise ValueError(f"{what}: {f}: not a readable safetensors file ({exc})") from None
        return out
    if (folder / "pytorch_model.bin").is_file():
        from uasan.files import safe_torch_load

        state = safe_torch_load(folder / "pytorch_model.bin", what)
        if not isinstance(state, dict):
            raise ValueError(f"{what}: {folder / 'pytorch_model.bin'} does not hold a state dict")
        return {k: v for k, v in state.items() if wanted(k)}
    raise ValueError(f"{what}: {folder} holds no model.safetensors(.index.json) or pytorch_model.bin")


class BridgeEncoder(nn.Module):
    """The ITC bridge (see the module docstring). Build it with :meth:`from_blip2`, :meth:`from_text_model` or
    :meth:`build`; shapes: B inputs, S visual tokens, L query tokens, H_b Q-Former width, e ITC width, C classes."""

    def __init__(
        self,
        qformer: nn.Module,
        embeddings: nn.Module,
        query_tokens: torch.Tensor,
        vision_projection: nn.Linear,
        text_projection: nn.Linear,
        tokenizer: Any,
        text_pooling: str,
        tau_init: float,
        source: str,
    ) -> None:
        super().__init__()
        if text_pooling not in ("cls", "mean"):
            raise ValueError(f"BridgeEncoder: text_pooling must be 'cls' or 'mean', got {text_pooling!r}")
        if not tau_init > 0:
            raise ValueError(f"model.tau_init: expected > 0, got {tau_init}")
        self.qformer, self.embeddings = qformer, embeddings
        self.query_tokens = nn.Parameter(query_tokens.detach().clone())  # (1, L, H_b)
        self.vision_projection, self.text_projection = vision_projection, text_projection
        self.tokenizer = tokenizer
        self.text_pooling = text_pooling
        self.source = source
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / tau_init)))  # τ = exp(−logit_scale), learnable
        self.lora: dict[str, Any] | None = None

    # ---- construction ------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        visual_dim: int,
        *,
        path: str | Path | None = None,
        embed_dim: int = 256,
        num_queries: int = 32,
        num_layers: int | None = None,
        tau_init: float = 0.07,
    ) -> BridgeEncoder:
        """A BLIP-2 folder at ``path`` (:meth:`from_blip2`), else the MiniLM-initialised bridge
        (:meth:`from_text_model`; ``path`` may also name another BERT folder)."""
        if path is not None and is_blip2_folder(path):
            return cls.from_blip2(path, visual_dim, num_queries=num_queries, tau_init=tau_init)
        return cls.from_text_model(
            visual_dim, embed_dim=embed_dim, num_queries=num_queries, num_layers=num_layers, path=path,
            tau_init=tau_init,
        )  # fmt: skip

    @classmethod
    def from_blip2(
        cls, path: str | Path, visual_dim: int, *, num_queries: int | None = None, tau_init: float = 0.07
    ) -> BridgeEncoder:
        """Keeps the checkpoint's Q-Former, query tokens, ``vision_projection``, ``text_projection`` and tokenizer."""
        from transformers import AutoTokenizer, Blip2QFormerConfig
        from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel, Blip2TextEmbeddings

        folder = Path(path)
        what = "model.bridge_path"
        cfg = _read_json(folder / "config.json", what)
        if cfg.get("model_type") != "blip-2":
            raise ValueError(f"{what}: {folder / 'config.json'}: field 'model_type' is {cfg.get('model_type')!r}, "
                             "not 'blip-2'")  # fmt: skip
        q_cfg = dict(cfg.get("qformer_config") or {})
        width = (cfg.get("vision_config") or {}).get("hidden_size", q_cfg.get("encoder_hidden_size"))
        if width is not None and int(width) != visual_dim:
            raise ValueError(
                f"{what}: the BLIP-2 checkpoint at {folder} cross-attends to {width}-d vision tokens but the features "
                f"are {visual_dim}-d; extract them with this checkpoint's vision tower (python -m uasan.extract)"
            )
        q_cfg["encoder_hidden_size"] = visual_dim
        q_cfg.pop("model_type", None)
        qconfig = Blip2QFormerConfig(**q_cfg)
        if not qconfig.use_qformer_text_input:
            raise ValueError(
                f"{what}: {folder / 'config.json'}: field 'qformer_config.use_qformer_text_input' is false "
                "(the checkpoint has no text path; use a Blip2ForImageTextRetrieval checkpoint)"
            )
        state = read_blip2_weights(folder, what)
        if "query_tokens" not in state or "vision_projection.weight" not in state:
            raise ValueError(f"{what}: {folder} lacks query_tokens / vision_projection (not an ITC checkpoint)")
        qformer, embeddings = Blip2QFormerModel(qconfig), Blip2TextEmbeddings(qconfig)
        e, h = state["vision_projection.weight"].shape
        vision_projection, text_projection = nn.Linear(h, e), nn.Linear(h, e)
        tokens = state["query_tokens"]
        if num_queries is not None and tokens.shape[1] != num_queries:
            raise ValueError(f"model.L: the BLIP-2 checkpoint at {folder} has {tokens.shape[1]} query tokens, "
                             f"got {num_queries}")  # fmt: skip
        bridge = cls(
            qformer, embeddings, tokens, vision_projection, text_projection,
            AutoTokenizer.from_pretrained(folder), "cls", tau_init, f"blip2:{folder}",
        )  # fmt: skip
        own = bridge.state_dict()
        missing = [k for k in own if k != "logit_scale" and k not in state and not k.endswith("position_ids")]
        if missing:
            raise ValueError(f"{what}: {folder}: the checkpoint lacks {missing[:3]} ({len(missing)} tensors)")
        try:
            bridge.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        except RuntimeError as exc:
            raise ValueError(f"{what}: {folder}: weights do not fit the config: {str(exc).splitlines()[1:3]}") from None
        return bridge

    @classmethod
    def from_text_model(
        cls,
        visual_dim: int,
        *,
        embed_dim: int = 256,
        num_queries: int = 32,
        num_layers: int | None = None,
        path: str | Path | None = None,
        tau_init: float = 0.07,
    ) -> BridgeEncoder:
        """A Q-Former built from a BERT folder (default: the packaged MiniLM): its layers, embeddings and tokenizer;
        new cross-attention (every layer), query tokens (N(0, 0.02)) and ITC projections (e = ``embed_dim``)."""
        from transformers import AutoModel, AutoTokenizer, Blip2QFormerConfig
        from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel, Blip2TextEmbeddings

        src = Path(path) if path is not None else require_minilm_path()
        if not (src / "config.json").is_file():
            raise ValueError(f"model.bridge_path: {src} is not a model folder (no config.json)")
        bert = AutoModel.from_pretrained(src)
        bc = bert.config
        depth = bc.num_hidden_layers if num_layers is None else num_layers
        if not 1 <= depth <= bc.num_hidden_layers:
            raise ValueError(f"model.bridge_layers: expected 1..{bc.num_hidden_layers}, got {depth}")
        if embed_dim < 1:
            raise ValueError(f"model.embed_dim: expected >= 1, got {embed_dim}")
        qconfig = Blip2QFormerConfig(
            vocab_size=bc.vocab_size, hidden_size=bc.hidden_size, num_hidden_layers=depth,
            num_attention_heads=bc.num_attention_heads, intermediate_size=bc.intermediate_size,
            hidden_act=bc.hidden_act, max_position_embeddings=bc.max_position_embeddings,
            layer_norm_eps=bc.layer_norm_eps, pad_token_id=bc.pad_token_id, encoder_hidden_size=visual_dim,
            cross_attention_frequency=1, use_qformer_text_input=True,
        )  # fmt: skip
        qformer, embeddings = Blip2QFormerModel(qconfig), Blip2TextEmbeddings(qconfig)
        sd = bert.state_dict()
        with torch.no_grad():
            embeddings.word_embeddings.weight.copy_(sd["embeddings.word_embeddings.weight"])
            # BERT adds token-type 0 to every position; folding it in keeps the text path identical to BERT's
            embeddings.position_embeddings.weight.copy_(
                sd["embeddings.position_embeddings.weight"] + sd["embeddings.token_type_embeddings.weight"][0]
            )
            qformer.layernorm.load_state_dict(
                {"weight": sd["embeddings.LayerNorm.weight"], "bias": sd["embeddings.LayerNorm.bias"]}
            )
            for i, layer in enumerate(qformer.encoder.layer):
                pre = f"encoder.layer.{i}."

                def sub(name: str, pre: str = pre) -> dict[str, torch.Tensor]:
                    return {k[len(pre + name) + 1 :]: v for k, v in sd.items() if k.startswith(pre + name + ".")}

                layer.attention.attention.load_state_dict(sub("attention.self"))
                layer.attention.output.load_state_dict(sub("attention.output"))
                for inter, out in ((layer.intermediate, layer.output), (layer.intermediate_query, layer.output_query)):
                    inter.load_state_dict(sub("intermediate"))
                    out.load_state_dict(sub("output"))
        hidden = bc.hidden_size
        tokens = torch.randn(1, num_queries, hidden) * qconfig.initializer_range
        vision_projection, text_projection = nn.Linear(hidden, embed_dim), nn.Linear(hidden, embed_dim)
        text_projection.load_state_dict(vision_projection.state_dict())  # start equal: the same vector, the same code
        return cls(
            qformer, embeddings, tokens, vision_projection, text_projection, AutoTokenizer.from_pretrained(src),
            "mean", tau_init, f"text-model:{src}",
        )  # fmt: skip

    def new_parameter_names(self) -> list[str]:
        """Parameters a text-model initialisation adds (what stage 0 must train): cross-attention, query tokens,
        projections. Empty for a BLIP-2 checkpoint."""
        if not self.source.startswith("text-model:"):
            return []
        return [
            n
            for n, _ in self.named_parameters()
            if "crossattention" in n or n == "query_tokens" or n.startswith(("vision_projection", "text_projection"))
        ]

    # ---- LoRA --------------------------------------------------------------------------------------------------

    def add_lora(self, r: int = 8, alpha: float = 32.0, dropout: float = 0.05) -> None:
        """Freezes every pretrained weight and adds LoRA (peft) on the Q-Former's query / value projections (self-
        and cross-attention) and both ITC projections; τ stays trainable. ``r = 0``: no adapter (all frozen but τ).
        LoRA's B starts at zero, so the bridge computes exactly the pretrained function until training moves it."""
        if self.lora is not None:
            raise ValueError("BridgeEncoder.add_lora: the bridge already has a LoRA adapter")
        if r < 0 or alpha <= 0 or not 0 <= dropout < 1:
            raise ValueError(
                f"model.lora_*: expected r >= 0, alpha > 0, dropout in [0, 1), got {r}, {alpha}, {dropout}"
            )
        if r > 0:
            from peft import LoraConfig, inject_adapter_in_model

            cfg = LoraConfig(
                r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", target_modules=list(LORA_TARGETS)
            )
            inject_adapter_in_model(cfg, self)
        for name, p in self.named_parameters():
            p.requires_grad_("lora_" in name or name == "logit_scale")
        self.lora = {"r": r, "alpha": alpha, "dropout": dropout}

    def load_base_state(self, state: dict[str, torch.Tensor], what: str) -> None:
        """Loads pretrained (adapter-free) weights, e.g. the stage-0 bridge, into this bridge, with or without LoRA
        (peft keeps a wrapped layer's weight under ``…<layer>.base_layer.weight``). τ is not part of a pretrained
        bridge (as in transformers' BLIP-2): ``logit_scale`` keeps this bridge's own value."""
        own = self.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        for k, v in state.items():
            if k == "logit_scale":
                continue
            head, _, leaf = k.rpartition(".")
            key = k if k in own else f"{head}.base_layer.{leaf}"
            if key not in own:
                raise ValueError(f"{what}: tensor {k!r} does not belong to this bridge")
            if own[key].shape != v.shape:
                raise ValueError(f"{what}: tensor {k!r} has shape {tuple(v.shape)}, the bridge {tuple(own[key].shape)}")
            mapped[key] = v
        missing = [k for k in own if k not in mapped and "lora_" not in k and k != "logit_scale"]
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing:
            raise ValueError(f"{what}: lacks {missing[:3]} ({len(missing)} tensors)")
        self.load_state_dict(mapped, strict=False)

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter-free weights (a LoRA-free bridge's whole state but τ), as :meth:`load_base_state` reads them."""
        if self.lora is not None and self.lora["r"] > 0:
            raise ValueError("BridgeEncoder.base_state_dict: the bridge has a LoRA adapter; merge it first")
        return {k: v for k, v in self.state_dict().items() if k != "logit_scale" and not k.endswith("position_ids")}

    # ---- paths -------------------------------------------------------------------------------------------------

    @property
    def embed_dim(self) -> int:
        """e, the width of the ITC space."""
        layer = self.vision_projection
        return int(getattr(layer, "base_layer", layer).out_features)

    @property
    def hidden_size(self) -> int:
        return int(self.qformer.config.hidden_size)

    @property
    def tau(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp().reciprocal()

    def encode_visual(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Visual tokens (B, S, D_v) (or one token each, (B, D_v)) → query embeddings in the ITC space (B, L, e), before
        BLIP-2's L2 normalisation."""
        if feats.dim() == 2:
            feats = feats[:, None]
        queries = self.query_tokens.expand(feats.shape[0], -1, -1)  # (B, L, H_b)
        if feats.shape[0] == 0:
            # transformers' Q-Former cannot reshape an empty batch (its head split infers a dim from 0 elements);
            # the result is (0, L, e) either way, and the projection keeps the output attached to the graph
            return self.vision_projection(queries)
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.long, device=feats.device)
        out = self.qformer(
            query_embeds=queries, encoder_hidden_states=feats, encoder_attention_mask=mask
        ).last_hidden_state  # (B, L, H_b)
        return self.vision_projection(out)

    def tokenize(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class names (``walk_left`` → "walk left") or captions → token ids and mask (C, T), T ≤ 32 (BLIP-2's)."""
        tok = self.tokenizer(
            [phrase(n) for n in names], padding=True, truncation=True, max_length=MAX_TEXT_LEN, return_tensors="pt"
        )
        return tok["input_ids"], tok["attention_mask"]

    def text_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token ids (C, T) → the pooled Q-Former text state (C, H_b), before ``text_projection``. ``context``
        (L_rel, H_b) learnable word vectors go right after [CLS] (prompt learning, Eq. 9–10)."""
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
            return hidden[:, 0]
        m = attention_mask[..., None].to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1)

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Token ids (C, T) → text embeddings in the ITC space (C, e), before BLIP-2's L2 normalisation."""
        return self.text_projection(self.text_hidden(input_ids, attention_mask, context))

    def encode_names(self, names: list[str]) -> torch.Tensor:
        """Hand-written prompts: the class names themselves → (C, e)."""
        return self.encode_text(*self.tokenize(names))

    @staticmethod
    def similarity(tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """BLIP-2's ITC similarity (transformers' ``logits_per_image``): max_l cos(tokens_l, text_c).
        tokens (B, L, e), text (C, e) → (B, C)."""
        sims = torch.einsum("ble,ce->blc", F.normalize(tokens, dim=-1), F.normalize(text, dim=-1))  # (B, L, C)
        if sims.shape[1] == 0:
            return sims.sum(1)
        return sims.max(dim=1).values

    def classify(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Eq. 3: logits (B, C) = max_l cos(tokens_l, o_c) / τ."""
        return self.similarity(tokens, text) / self.tau
