"""Stage 0: image–text contrastive (ITC) pretraining of the bridge on the synthetic world's corpus (DESIGN §7).

The stand-in for loading a BLIP-2 checkpoint: on real data the bridge is BLIP-2's Q-Former (``model.bridge_path``)
and stage 0 is skipped. Here the bridge starts from the packaged MiniLM (:meth:`BridgeEncoder.from_text_model`:
MiniLM's layers, new cross-attention, query tokens and projections) and is aligned on ``ROOT/pretrain`` — (visual
tokens, caption) pairs of the world's simulated vision encoder, which hold no task label — with BLIP-2's ITC loss
(LAVIS ``blip2_qformer.py``): per batch of B items,

    s_i2t[b, u] = max_l cos(f_{b,l}, t_u) / τ          f = the bridge's query embeddings, t = its caption embeddings
    L_itc = ½ [CE(s_i2t, caption of b) + CE(s_t2i, items of u)]

with in-batch negatives over the batch's distinct captions (an item whose caption occurs twice in a batch has one
column; a caption's target in s_t2i is uniform over its items, as LAVIS' image-id targets), a learnable τ and
optional label smoothing (LAVIS uses 0.1). What it trains is ``pretrain.tune``:

* ``new``: what the text-model initialisation adds — cross-attention, query tokens, both projections (and τ);
* ``query`` (default): ``new`` plus the query feed-forward layers. The self-attention, the text feed-forward and the
  embeddings stay MiniLM's, so the text path is MiniLM's (mean-pooled) followed by a trained ``text_projection``,
  and every word of the text model keeps its meaning, also words the corpus shows rarely. The captions' text states
  are then computed once (not per step);
* ``all``: the whole Q-Former, as BLIP-2's stage 1 does (text states recomputed every step: slower).

Validation (per epoch, ``OUT/stage0/log.jsonl``) uses ``pretrain.val_items`` held-out corpus items only, never task
data: image-to-text retrieval R@1 / R@5 (``val_i2t_R@K``) among the held-out items' own distinct captions, as
BLIP-2's retrieval evaluation ranks among its test split's captions (chance 1 / their number, about 1 / val_items);
world categories (top-1 among the world's category phrases, for items captioned with one) and relation items' named
predicate (R@5 among the world's predicate phrases). Retrieval among all the corpus' captions (the earlier
``val_itc_R@K``) was ranked correctly but stayed at 0 on the default world: 7 290 captions (chance 1 / 7 290), most
of them trained on (memorised with their items' noise), many a word apart, and 40 % of the held-out items captioned
with a relation no training item has.

The result is ``OUT/stage0/bridge.pt``: the bridge's weights without τ (a BLIP-2 checkpoint has none); stage 1 loads
it as it would a BLIP-2 folder: frozen, with LoRA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from uasan.config import TrainConfig, to_dict
from uasan.files import safe_torch_load
from uasan.models.bridge import BridgeEncoder
from uasan.models.config import spec_differences

__all__ = [
    "STAGE0_FIELDS",
    "BridgeITC",
    "CorpusItems",
    "build_stage0_bridge",
    "itc_loss",
    "load_stage0_bridge",
    "read_stage0_bridge",
    "read_world_corpus",
    "save_stage0_bridge",
    "train_stage0",
]

# Model spec fields the stage-0 bridge depends on: a reused one must agree on them
STAGE0_FIELDS = ("visual_dim", "embed_dim", "L", "bridge_layers", "bridge_path")


class CorpusItems(Dataset):
    """Items ``index`` of a corpus: (visual tokens (S, D_v) float32, caption id)."""

    def __init__(self, features: np.ndarray, caption_ids: np.ndarray, index: np.ndarray) -> None:
        self.features, self.caption_ids, self.index = features, caption_ids, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        k = int(self.index[i])
        return torch.from_numpy(self.features[k].astype(np.float32)), int(self.caption_ids[k])


def split_corpus(n: int, val_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train index, held-out index): a seeded permutation, the first ``val_items`` held out."""
    perm = np.random.default_rng([seed, 70]).permutation(n)
    k = min(val_items, max(n - 1, 0))
    return np.sort(perm[k:]), np.sort(perm[:k])


def itc_loss(
    image: torch.Tensor, text: torch.Tensor, target: torch.Tensor, tau: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Symmetric InfoNCE with BLIP-2's max over query tokens.

    image (B, L, e) query embeddings, text (U, e) embeddings of the batch's distinct captions, target (B,) the column
    of each item's caption. i2t: each item against the U captions; t2i: each caption against the B items, its target
    uniform over the items it captions."""
    sim = BridgeEncoder.similarity(image, text) / tau  # (B, U)
    i2t = F.cross_entropy(sim, target, label_smoothing=label_smoothing)
    pos = F.one_hot(target, text.shape[0]).t().to(sim.dtype)  # (U, B)
    soft = pos / pos.sum(1, keepdim=True)
    if label_smoothing:
        soft = (1 - label_smoothing) * soft + label_smoothing / sim.shape[0]
    t2i = torch.sum(-soft * F.log_softmax(sim.t(), dim=1), dim=1).mean()
    return 0.5 * (i2t + t2i)


class BridgeITC(nn.Module):
    """The bridge with the corpus' captions, trained by :func:`itc_loss`. ``forward(feats, caption_ids)`` → losses."""

    def __init__(self, bridge: BridgeEncoder, captions: list[str], tune: str, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if tune not in ("new", "query", "all"):
            raise ValueError(f"pretrain.tune: expected new, query or all, got {tune!r}")
        self.bridge, self.captions, self.tune, self.label_smoothing = bridge, captions, tune, label_smoothing
        trainable = set(bridge.new_parameter_names()) | {"logit_scale"}
        for name, p in bridge.named_parameters():
            query_ffn = "intermediate_query" in name or "output_query" in name
            p.requires_grad_(tune == "all" or name in trainable or (tune == "query" and query_ffn))
        ids, mask = bridge.tokenize(captions)
        self.register_buffer("caption_tokens", ids, persistent=False)  # (C, T)
        self.register_buffer("caption_mask", mask, persistent=False)
        self._text_states: torch.Tensor | None = None

    def text_states(self) -> torch.Tensor:
        """Pooled text states (C, H_b) of every caption through the frozen text path, computed once (eval mode: the
        frozen path is a fixed function, without dropout)."""
        if self._text_states is None:
            was = self.bridge.training
            self.bridge.eval()
            with torch.no_grad():
                chunks = [
                    self.bridge.text_hidden(self.caption_tokens[i : i + 512], self.caption_mask[i : i + 512])
                    for i in range(0, len(self.captions), 512)
                ]
            self.bridge.train(was)
            self._text_states = torch.cat(chunks)
        return self._text_states

    def caption_embeddings(self, caption_ids: torch.Tensor) -> torch.Tensor:
        """(U, e) embeddings of the given captions (with gradients through the trained parts)."""
        if self.tune == "all":
            hidden = self.bridge.text_hidden(self.caption_tokens[caption_ids], self.caption_mask[caption_ids])
        else:
            hidden = self.text_states()[caption_ids]
        return self.bridge.text_projection(hidden)

    def forward(self, feats: torch.Tensor, caption_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        caps, target = torch.unique(caption_ids, return_inverse=True)  # (U,), (B,)
        image = self.bridge.encode_visual(feats)  # (B, L, e)
        text = self.caption_embeddings(caps)  # (U, e)
        return {"L_itc": itc_loss(image, text, target, self.bridge.tau, self.label_smoothing)}

    @torch.no_grad()
    def evaluate(
        self,
        feats: torch.Tensor,
        caption_ids: torch.Tensor,
        objects: list[str],
        predicates: list[str],
        batch: int = 256,
    ) -> dict[str, float]:
        """Held-out retrieval (see the module docstring); ``objects`` / ``predicates`` are phrases. Image-to-text
        R@K ranks each item's caption among the distinct captions of the items given (``val_i2t_R@K``)."""
        bridge = self.bridge
        image = torch.cat([bridge.encode_visual(feats[i : i + batch]) for i in range(0, len(feats), batch)])
        caps, column = torch.unique(caption_ids, return_inverse=True)  # (U,) the items' captions, (V,) each one's
        text = torch.cat([self.caption_embeddings(caps[i : i + 512]) for i in range(0, len(caps), 512)])
        out = {}
        sim = BridgeEncoder.similarity(image, text)  # (V, U)
        rank = (sim > sim.gather(1, column[:, None])).sum(1)  # (V,) captions scored above the right one
        out["val_i2t_R@1"] = float((rank < 1).float().mean())
        out["val_i2t_R@5"] = float((rank < 5).float().mean())
        names = {c: i for i, c in enumerate(objects)}
        caps = [self.captions[int(c)] for c in caption_ids]
        obj_rows = [i for i, c in enumerate(caps) if c in names]
        if obj_rows:
            s = BridgeEncoder.similarity(image[obj_rows], bridge.encode_names(objects))
            truth = torch.tensor([names[caps[i]] for i in obj_rows])
            out["val_objects_top1"] = float((s.argmax(1) == truth).float().mean())
        found = [(i, p) for i, c in enumerate(caps) for p, name in enumerate(predicates) if f" {name} " in f" {c} "]
        if found:
            rows = torch.tensor([i for i, _ in found])
            s = BridgeEncoder.similarity(image[rows], bridge.encode_names(predicates))
            truth = torch.tensor([p for _, p in found])
            rank = (s > s.gather(1, truth[:, None])).sum(1)
            out["val_predicates_R@5"] = float((rank < 5).float().mean())
        return out


def build_stage0_bridge(spec: Any) -> BridgeEncoder:
    """The text-model-initialised bridge of ``spec`` (a ModelConfig without ``bridge_path``), before stage 0."""
    return BridgeEncoder.from_text_model(
        spec.visual_dim, embed_dim=spec.embed_dim, num_queries=spec.L, num_layers=spec.bridge_layers,
        tau_init=spec.tau_init,
    )  # fmt: skip


def save_stage0_bridge(bridge: BridgeEncoder, spec: Any, cfg: TrainConfig, metrics: dict[str, float], path: Path):
    """``OUT/stage0/bridge.pt``: {spec, config, state_dict (no τ), metrics}, written atomically."""
    from dataclasses import asdict

    from uasan.files import atomic_write

    payload = {
        "spec": asdict(spec),
        "config": to_dict(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in bridge.base_state_dict().items()},
        "metrics": dict(metrics),
        "tau": float(bridge.tau.detach()),
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_stage0_bridge(path: Path, spec: Any) -> BridgeEncoder:
    """The stage-0 bridge of ``path`` as stage 0 left it (τ included), without LoRA."""
    payload = _read_stage0_payload(path, spec)
    bridge = build_stage0_bridge(spec)
    bridge.load_base_state(payload["state_dict"], str(path))
    tau = payload.get("tau")
    if isinstance(tau, float) and tau > 0:
        with torch.no_grad():
            bridge.logit_scale.fill_(float(np.log(1.0 / tau)))
    return bridge


def read_stage0_bridge(path: Path, spec: Any) -> dict[str, torch.Tensor]:
    """The stage-0 bridge weights of ``path``, checked to fit ``spec`` (STAGE0_FIELDS); ValueError naming the file."""
    return _read_stage0_payload(path, spec)["state_dict"]


def _read_stage0_payload(path: Path, spec: Any) -> dict[str, Any]:
    what = "--stage 1 / --resume (the stage-0 bridge)"
    payload = safe_torch_load(path, what)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise ValueError(f"{what}: {path} is not a stage-0 bridge file (no field 'state_dict')")
    stored = payload.get("spec") if isinstance(payload.get("spec"), dict) else {}
    diff = spec_differences(stored, spec, STAGE0_FIELDS)
    if diff:
        raise ValueError(
            f"{what}: {path} was trained for another bridge; it differs in " + ", ".join(diff)
            + " (run stage 0 again: --overwrite, or another --out)"
        )  # fmt: skip
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{what}: {path}: field 'state_dict[{bad[0]!r}]' is not a tensor")
    return payload


def read_world_corpus(root: Path, visual_dim: int):
    """``ROOT/pretrain`` (:func:`uasan.data.synth.read_corpus`), checked against the task features' width."""
    from uasan.data.synth.corpus import read_corpus

    if not (Path(root) / "pretrain").is_dir():
        raise ValueError(
            f"data.root: {root} has no pretraining corpus (pretrain/) for stage 0: generate the world with it "
            "(python -m uasan.data.synth without --no-pretrain), or pass model.bridge_path=<BLIP-2 folder>"
        )
    corpus = read_corpus(root)
    if corpus.features.shape[2] != visual_dim:
        raise ValueError(
            f"{Path(root) / 'pretrain' / 'features.npy'}: {corpus.features.shape[2]}-d visual tokens, but the task "
            f"features are {visual_dim}-d"
        )
    return corpus


def _class_phrases(root: Path) -> tuple[list[str], list[str]]:
    """The world's category and predicate phrases (``walk_left`` → "walk left"), base and novel: the corpus names
    every one of them (it is pretraining data, not task data)."""
    from uasan.data.splits import Vocabulary, load_split

    split = Path(root) / "splits.json"
    vocab = Vocabulary.from_split(load_split(split if split.is_file() else "vidvrd"))
    return [c.replace("_", " ") for c in vocab.objects], [p.replace("_", " ") for p in vocab.predicates]


def train_stage0(
    cfg: TrainConfig, spec: Any, corpus: Any, out_dir: Path, *, resume: bool, progress: bool, device: torch.device
) -> None:
    """Stage 0 through the Trainer (checkpoints and exact resume in ``out_dir``, ``log.jsonl``, ``curves.png``,
    per-epoch held-out validation); writes ``out_dir/bridge.pt``."""
    from uasan.engine import distributed as dist
    from uasan.engine.hooks import default_hooks
    from uasan.engine.repro import build_dataloader, seed_everything
    from uasan.engine.trainer import Trainer, build_optimizer, warmup_cosine_schedule

    p = cfg.pretrain
    seed_everything(cfg.train.seed)
    model = BridgeITC(build_stage0_bridge(spec), corpus.captions, p.tune, p.label_smoothing).to(device)
    train_idx, val_idx = split_corpus(len(corpus), p.val_items, cfg.train.seed)
    loader = build_dataloader(
        CorpusItems(corpus.features, corpus.caption_ids, train_idx), p.batch, shuffle=True, seed=cfg.train.seed + 2,
        drop_last=len(train_idx) > p.batch,
    )  # fmt: skip
    root = Path(cfg.data.root) if cfg.data.root is not None else out_dir.parent / "data"
    objects, predicates = _class_phrases(root)
    val_feats = torch.from_numpy(corpus.features[val_idx].astype(np.float32)).to(device)
    val_ids = torch.from_numpy(corpus.caption_ids[val_idx].astype(np.int64)).to(device)

    def eval_fn(m: BridgeITC) -> dict[str, float]:
        return m.evaluate(val_feats, val_ids, objects, predicates) if len(val_idx) else {}

    params = [q for q in model.parameters() if q.requires_grad]
    opt = build_optimizer(params, lr=p.lr, weight_decay=p.weight_decay)
    total = max(1, p.epochs * len(loader))
    ddp = dist.wrap_ddp(model, find_unused_parameters=True) if dist.is_distributed() else model
    trainer = Trainer(
        ddp, opt, loader, lambda m, b: m(b[0], b[1]), max_epochs=p.epochs,
        scheduler=warmup_cosine_schedule(opt, min(p.warmup_steps, total // 2), total),
        hooks=default_hooks(eval_fn=eval_fn, eval_every=max(cfg.train.eval_every_epoch, 1),
                            log_every=cfg.train.log_every,
                            items_fn=lambda b: b[0].shape[0], items_name="items", progress=progress,
                            name="stage 0"),
        grad_clip=None, amp_bf16=cfg.train.amp_bf16 and device.type == "cuda", out_dir=out_dir, device=device,
        save_frozen=False,
    )  # fmt: skip
    if resume:
        trainer.resume(out_dir, missing_ok=True)
    trainer.train()
    if dist.is_main_process():
        save_stage0_bridge(model.bridge, spec, cfg, trainer.metrics, out_dir / "bridge.pt")
    dist.barrier()
