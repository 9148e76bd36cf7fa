"""The baselines every report gives beside UASAN (DESIGN §7), each a scorer run through the same prediction and
evaluation pipeline (:func:`uasan.predict.run_evaluation`) on the same test subset:

* ``random``: uniform random scores (:func:`uasan.predict.random_scorer`);
* ``base_probe``: a probe trained on base labels only — a small MLP on the same features (mean over tokens) into the
  bridge's ITC space, trained on the train subset's ground-truth trajectories (objects) and related pairs' union
  features (predicates) of base classes, DeViSE-style: softmax over cos(probe(x), o_c) / τ with o_c the pretrained
  bridge's class-name embeddings (:func:`uasan.data.synth.calibrate.fit_label_probe`). What task labels of base
  classes alone teach about novel ones;
* ``stage0_zero_shot``: the pretrained bridge itself (the stage-0 bridge, or the BLIP-2 checkpoint) without stages
  1–2: objects by Eq. 3 (max over query tokens of the cosine with the class-name embeddings), predicates by the
  bridge's embedding of the pair's union region against the predicate names' embeddings.

Probabilities: objects softmax over all classes (no background: every proposal gets a class, the background column
is 0), predicates softmax over all predicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from uasan.config import TrainConfig
from uasan.data import SegmentBatch, Vocabulary
from uasan.models.bridge import BridgeEncoder

__all__ = ["BASELINES", "base_probe_scorer", "pretrained_bridge", "run_baselines", "zero_shot_scorer"]

BASELINES = ("random", "base_probe", "stage0_zero_shot")
PROBE_TAU = 0.05


def pretrained_bridge(spec: Any, stage0_file: Path | None) -> BridgeEncoder:
    """The bridge before stages 1–2: the stage-0 bridge of ``stage0_file`` (τ as stage 0 learnt it), or the BLIP-2
    checkpoint of ``spec.bridge_path`` (τ = ``tau_init``: transformers' BLIP-2 has no temperature)."""
    from uasan import pretrain

    if stage0_file is None:
        bridge = BridgeEncoder.build(spec.visual_dim, path=spec.bridge_path, num_queries=spec.L, tau_init=spec.tau_init)
    else:
        bridge = pretrain.load_stage0_bridge(stage0_file, spec)
    for p in bridge.parameters():
        p.requires_grad_(False)
    return bridge.eval()


def _probs(zero_bg: torch.Tensor) -> torch.Tensor:
    return torch.cat([zero_bg, zero_bg.new_zeros(zero_bg.shape[0], 1)], dim=1)  # (N, C + 1), background 0


def _mean_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1) if x.dim() == 3 else x


def zero_shot_scorer(bridge: BridgeEncoder, vocab: Vocabulary, device: torch.device | str = "cpu"):
    """Scorer of the pretrained bridge alone (see the module docstring)."""
    with torch.no_grad():
        obj_text = bridge.encode_names(list(vocab.objects))  # (C_obj, e)
        pred_text = bridge.encode_names(list(vocab.predicates))  # (C_pred, e)
    tau = float(bridge.tau)

    @torch.no_grad()
    def score(batch: SegmentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        obj = (BridgeEncoder.similarity(bridge.encode_visual(batch.traj_features), obj_text) / tau).softmax(-1)
        if batch.num_pairs:
            pred = BridgeEncoder.similarity(bridge.encode_visual(batch.union_features), pred_text) / tau
        else:
            pred = obj.new_zeros(0, len(vocab.predicates))
        return _probs(obj), pred.softmax(-1)

    return score


def _probe_samples(root: Path, cfg: TrainConfig, split: dict[str, Any], vocab: Vocabulary):
    """Train subset, ground-truth trajectories: (object features (n, D), [[base class]]), (union features of related
    pairs (m, D), [[base predicates]]); base labels only (the dataset drops every other annotation)."""
    from uasan.data import SegmentDataset, collate_segments

    ds = SegmentDataset(root, "train", split=split, mode="PredCls", **cfg.data.dataset_options())
    ox, oy, ux, uy = [], [], [], []
    n_pred = vocab.num_base_predicates
    for batch in torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_segments, collate_fn=collate_segments):
        lab = batch.traj_labels
        keep = lab >= 0
        ox.append(_mean_tokens(batch.traj_features)[keep])
        oy += [[int(c)] for c in lab[keep]]
        if batch.num_pairs:
            targets = batch.pred_labels[:, :n_pred]
            valid = batch.pair_valid if batch.pair_valid is not None else torch.ones(batch.num_pairs, dtype=torch.bool)
            rows = torch.nonzero(valid & targets.any(1)).flatten()
            ux.append(_mean_tokens(batch.union_features)[rows])
            uy += [torch.nonzero(targets[r]).flatten().tolist() for r in rows]
    cat = lambda xs: torch.cat(xs).numpy() if xs else np.zeros((0, 1), np.float32)  # noqa: E731
    return (cat(ox), oy), (cat(ux), uy)


def base_probe_scorer(
    bridge: BridgeEncoder, root: Path, cfg: TrainConfig, split: dict[str, Any], vocab: Vocabulary, seed: int
):
    """Scorer of the base-label probe (see the module docstring); trained here, on the CPU, in seconds."""
    from uasan.data.synth.calibrate import ProbeConfig, fit_label_probe

    with torch.no_grad():
        obj_text = bridge.encode_names(list(vocab.objects)).float()
        pred_text = bridge.encode_names(list(vocab.predicates)).float()
    (ox, oy), (ux, uy) = _probe_samples(root, cfg, split, vocab)
    pcfg = ProbeConfig(tau=PROBE_TAU)
    nb_o, nb_p = vocab.num_base_objects, vocab.num_base_predicates
    obj_probe = fit_label_probe(ox, oy, obj_text[:nb_o], pcfg, seed) if oy else None
    pred_probe = fit_label_probe(ux, uy, pred_text[:nb_p], pcfg, seed) if uy else None
    obj_t, pred_t = F.normalize(obj_text, dim=-1), F.normalize(pred_text, dim=-1)

    @torch.no_grad()
    def score(batch: SegmentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        n, p = batch.num_trajectories, batch.num_pairs
        if obj_probe is None or n == 0:
            obj = torch.full((n, len(vocab.objects)), 1.0 / len(vocab.objects))
        else:
            z = F.normalize(obj_probe(_mean_tokens(batch.traj_features).float().cpu()), dim=-1)
            obj = (z @ obj_t.t() / PROBE_TAU).softmax(-1)
        if pred_probe is None or p == 0:
            pred = torch.full((p, len(vocab.predicates)), 1.0 / len(vocab.predicates))
        else:
            z = F.normalize(pred_probe(_mean_tokens(batch.union_features).float().cpu()), dim=-1)
            pred = (z @ pred_t.t() / PROBE_TAU).softmax(-1)
        return _probs(obj), pred

    return score


def run_baselines(
    cfg: TrainConfig,
    spec: Any,
    root: Path,
    vocab: Vocabulary,
    split: dict[str, Any],
    groundtruth: dict[str, Any] | None,
    *,
    stage0_file: Path | None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """``{"random": m, "base_probe": m, "stage0_zero_shot": m}``, each m with UASAN's metrics structure."""
    from uasan import predict as P

    bridge = pretrained_bridge(spec, stage0_file)  # on the CPU: the probe trains there, then it moves to device
    scorers = {
        "random": P.random_scorer(vocab, cfg.train.seed),
        "base_probe": base_probe_scorer(bridge, root, cfg, split, vocab, cfg.train.seed),
        "stage0_zero_shot": zero_shot_scorer(bridge.to(device), vocab, device),
    }
    return {
        name: P.run_evaluation(
            scorer,
            root,
            vocab,
            cfg,
            split,
            device=device,
            progress=progress,
            groundtruth=groundtruth,
            label=f"baseline {name}",
        )
        for name, scorer in scorers.items()
    }
