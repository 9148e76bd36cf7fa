"""Inference and evaluation of a trained UASAN (``python -m uasan.predict``), shared with ``uasan.train``.

Per segment (DESIGN §6, "Inference"): classify the trajectories over all object classes + background (SGDet and
SGCls; PredCls takes the ground-truth classes), skip pairs with a background member, score the target predicates
(novel or all), triplet score = product (or mean) of subject, predicate and object scores, keep the top k per
segment; then per video ``uasan.ops.greedy_relation_association`` links segment relations into video relations
in the official prediction format.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from uasan import ops
from uasan.data import SegmentBatch, SegmentDataset, Vocabulary, collate_segments, load_groundtruth
from uasan.engine._atomic import atomic_write, atomic_write_text
from uasan.engine.config import TrainConfig, from_dict, to_dict
from uasan.evaluation import evaluate_relations, filter_groundtruth, split_categories, trajectory_recall
from uasan.models import UASAN, ModelSpec

MODES = ("SGDet", "SGCls", "PredCls")
SPLITS = ("novel", "all")
# (N, C_obj + 1) object probabilities (last column = background) and (P, C_pred) predicate probabilities
Scorer = Callable[[SegmentBatch], tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------------------------------------------------
# model files
# ---------------------------------------------------------------------------------------------------------------


def model_spec(cfg: TrainConfig, visual_dim: int, variant: str | None = None, impl: str | None = None) -> ModelSpec:
    """The model's spec: the ``model`` config section (same field names) plus the data's feature width."""
    fields = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)}
    return ModelSpec(
        visual_dim=visual_dim, **{**fields, "variant": variant or fields["variant"], "impl": impl or fields["impl"]}
    )


def save_model(model: UASAN, cfg: TrainConfig, split: dict[str, Any], path: str | Path) -> Path:
    """Weights + spec + config + category split in one file, written atomically."""
    payload = {"spec": asdict(model.spec), "config": to_dict(cfg), "split": split, "state_dict": model.state_dict()}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[UASAN, TrainConfig, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--checkpoint: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        spec = ModelSpec(**payload["spec"])
        cfg = from_dict(TrainConfig, payload["config"], source=str(path))
        split = payload["split"]
    except (KeyError, TypeError, RuntimeError, EOFError) as exc:
        raise ValueError(f"--checkpoint: {path} is not a uasan model file ({exc})") from None
    model = UASAN(spec)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), cfg, split


# ---------------------------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------------------------


def model_scorer(model: UASAN, vocab: Vocabulary) -> Scorer:
    objects, predicates = list(vocab.objects), list(vocab.predicates)

    @torch.no_grad()
    def score(batch: SegmentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        obj = model.traj_logits(batch.traj_features, objects, frozen=True).softmax(-1)  # (N, C_obj + 1)
        subj, objx = batch.pairs[:, 0], batch.pairs[:, 1]
        pred = model.predicate_scores(
            batch.traj_features, batch.union_features, batch.motion, subj, objx, predicates
        )  # (P, C_pred)
        return obj, pred

    return score


def random_scorer(vocab: Vocabulary, seed: int = 0) -> Scorer:
    """Uniform random scores with the model's output shapes: the baseline every table reports."""
    gen = torch.Generator().manual_seed(seed)

    def score(batch: SegmentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        obj = torch.rand(batch.num_trajectories, len(vocab.objects) + 1, generator=gen)
        return obj / obj.sum(-1, keepdim=True), torch.rand(batch.num_pairs, len(vocab.predicates), generator=gen)

    return score


def _object_labels(batch: SegmentBatch, obj_probs: torch.Tensor, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(N,) class id (−1 = background) and (N,) score of every trajectory."""
    if mode == "PredCls":
        labels = batch.traj_classes.numpy()
        return labels, np.where(labels >= 0, 1.0, 0.0)
    best = obj_probs.argmax(-1).numpy()
    scores = obj_probs.max(-1).values.numpy()
    background = obj_probs.shape[1] - 1
    return np.where(best == background, -1, best), scores


def segment_relations(
    batch: SegmentBatch,
    obj_probs: torch.Tensor,
    pred_probs: torch.Tensor,
    mode: str,
    vocab: Vocabulary,
    predicate_ids: np.ndarray,
    topk: int,
    triplet_score: str = "product",
) -> dict[str, dict[tuple[int, int], list[dict[str, Any]]]]:
    """Top-``topk`` relations of every segment of ``batch``: ``{vid: {(fstart, fend): [relation]}}``."""
    labels, obj_scores = _object_labels(batch, obj_probs, mode)
    pairs = batch.pairs.numpy()
    probs = pred_probs[:, predicate_ids].numpy()  # (P, C_target)
    starts, ends = batch.traj_start.numpy(), batch.traj_end.numpy()
    boxes = batch.traj_boxes.numpy()
    out: dict[str, dict[tuple[int, int], list[dict[str, Any]]]] = defaultdict(dict)
    poff = batch.pair_offsets.numpy()
    for b, (vid, (fs, fe)) in enumerate(zip(batch.video_ids, batch.segment_frames.tolist(), strict=True)):
        rels: list[dict[str, Any]] = []
        out[vid][(fs, fe)] = rels
        lo, hi = int(poff[b]), int(poff[b + 1])
        s, o = pairs[lo:hi, 0], pairs[lo:hi, 1]
        keep = (labels[s] >= 0) & (labels[o] >= 0) & (s != o)
        keep &= np.maximum(starts[s], starts[o]) < np.minimum(ends[s], ends[o])  # a common frame
        idx = np.flatnonzero(keep)
        if idx.size == 0 or probs.shape[1] == 0:
            continue
        ss, os_ = obj_scores[s[idx]][:, None], obj_scores[o[idx]][:, None]
        p = probs[lo + idx]  # (P_kept, C_target)
        score = ss * p * os_ if triplet_score == "product" else (ss + p + os_) / 3.0
        flat = score.ravel()
        k = min(topk, flat.size)
        top = np.argpartition(-flat, k - 1)[:k]
        top = top[np.lexsort((top, -flat[top]))]  # score descending, ties by index: deterministic
        for t in top:
            row, col = divmod(int(t), p.shape[1])
            si, oi = int(s[idx[row]]), int(o[idx[row]])
            ss_, se_, os0, oe = int(starts[si]), int(ends[si]), int(starts[oi]), int(ends[oi])
            rels.append(
                {
                    "triplet": [
                        vocab.objects[labels[si]],
                        vocab.predicates[predicate_ids[col]],
                        vocab.objects[labels[oi]],
                    ],
                    "score": float(flat[t]),
                    "duration": [fs + max(ss_, os0), fs + min(se_, oe)],
                    "sub_duration": [fs + ss_, fs + se_],
                    "obj_duration": [fs + os0, fs + oe],
                    "sub_traj": boxes[si, ss_:se_].tolist(),
                    "obj_traj": boxes[oi, os0:oe].tolist(),
                }
            )
    return out


def predicate_ids_for(vocab: Vocabulary, split: str) -> np.ndarray:
    return np.flatnonzero(vocab.predicate_mask(split))


def predict(
    scorer: Scorer,
    root: str | Path,
    mode: str,
    vocab: Vocabulary,
    cfg: TrainConfig,
    split: dict[str, Any],
    target_splits: tuple[str, ...] = SPLITS,
    device: torch.device | str = "cpu",
    progress: bool = True,
    subset: str = "test",
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Video-level predictions ``{target split: {vid: [relation]}}`` of one mode over the test subset."""
    ds = SegmentDataset(root, subset, split=split, mode=mode, labels=False, **cfg.data.dataset_options())
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.data.batch_segments,
        shuffle=False,
        collate_fn=collate_segments,
        num_workers=cfg.data.num_workers,
    )
    groups: dict[str, dict[str, dict[tuple[int, int], list]]] = {s: defaultdict(dict) for s in target_splits}
    ids = {s: predicate_ids_for(vocab, s) for s in target_splits}
    for batch in tqdm(loader, desc=f"predict {mode}", disable=not progress, leave=False):
        obj, pred = scorer(batch.to(device))
        obj, pred = obj.float().cpu(), pred.float().cpu()
        for s in target_splits:
            rels = segment_relations(
                batch, obj, pred, mode, vocab, ids[s], cfg.infer.topk_per_segment, cfg.infer.triplet_score
            )
            for vid, segs in rels.items():
                groups[s][vid].update(segs)
    return {
        s: {
            vid: ops.greedy_relation_association(
                segs, inference_topk=cfg.infer.topk_per_segment, association_topk=cfg.infer.association_topk
            )
            for vid, segs in groups[s].items()
        }
        for s in target_splits
    }


def trajectory_metrics(
    scorer: Scorer,
    root: str | Path,
    vocab: Vocabulary,
    cfg: TrainConfig,
    split: dict[str, Any],
    device: torch.device | str = "cpu",
    subset: str = "test",
) -> dict[str, dict[str, float]]:
    """Trajectory classification R@5 / R@10 per segment (DESIGN §5) for novel, base and all ground-truth classes."""
    gt: dict[str, list[dict[str, Any]]] = {}
    for batch in torch.utils.data.DataLoader(
        SegmentDataset(
            root,
            subset,
            split=split,
            mode="PredCls",
            labels=False,
            features=False,
            union_features=False,
            **cfg.data.dataset_options(),
        ),
        batch_size=cfg.data.batch_segments,
        collate_fn=collate_segments,
    ):
        for n, seg in enumerate(batch.traj_segment.tolist()):
            s, e, c = int(batch.traj_start[n]), int(batch.traj_end[n]), int(batch.traj_classes[n])
            gt.setdefault(batch.tags[seg], []).append(
                {"fstart": s, "bboxes": batch.traj_boxes[n, s:e].tolist(), "class": vocab.objects[c]}
            )
    props: dict[str, list[dict[str, Any]]] = defaultdict(list)
    loader = torch.utils.data.DataLoader(
        SegmentDataset(
            root, subset, split=split, mode="SGDet", labels=False, union_features=False, **cfg.data.dataset_options()
        ),
        batch_size=cfg.data.batch_segments,
        collate_fn=collate_segments,
    )
    for batch in loader:
        obj, _ = scorer(_without_pairs(batch).to(device))
        obj = obj[:, :-1].float().cpu()  # a class for every proposal: recall counts the classes, not background
        score, label = obj.max(-1)
        for n, seg in enumerate(batch.traj_segment.tolist()):
            s, e = int(batch.traj_start[n]), int(batch.traj_end[n])
            props[batch.tags[seg]].append(
                {
                    "fstart": s,
                    "bboxes": batch.traj_boxes[n, s:e].tolist(),
                    "score": float(score[n]),
                    "label": vocab.objects[int(label[n])],
                }
            )
    out = {}
    for name in ("novel", "base", "all"):
        classes = (
            set(vocab.objects) if name == "all" else {vocab.objects[i] for i in np.flatnonzero(vocab.object_mask(name))}
        )
        sub = {tag: [t for t in ts if t["class"] in classes] for tag, ts in gt.items()}
        out[name] = trajectory_recall(sub, props, ks=(5, 10))
    return out


def _without_pairs(batch: SegmentBatch) -> SegmentBatch:
    from dataclasses import replace

    empty = torch.zeros(0, dtype=torch.long)
    return replace(
        batch,
        pairs=empty.reshape(0, 2),
        pair_segment=empty,
        motion=torch.zeros(0, 14),
        union_features=torch.zeros((0, *batch.traj_features.shape[1:])),
    )


def evaluate_predictions(
    groundtruth: dict[str, list[dict[str, Any]]],
    predictions: dict[str, dict[str, dict[str, list[dict[str, Any]]]]],
    split: dict[str, Any],
) -> dict[str, Any]:
    """``{mode: {split: {mAP, R@50, R@100}}, "RelTag": {split: {P@1, P@5, P@10}}}`` (tagging from PredCls)."""
    out: dict[str, Any] = {}
    tags: dict[str, dict[str, float]] = {}
    for mode, by_split in predictions.items():
        out[mode] = {}
        for name, pred in by_split.items():
            objects, preds = split_categories(split, name)
            gt = filter_groundtruth(groundtruth, objects, preds)
            m = evaluate_relations(gt, pred, check_boxes="used")
            out[mode][name] = {k: m[k] for k in ("mAP", "R@50", "R@100")}
            if mode == "PredCls":
                tags[name] = {k: m[k] for k in ("P@1", "P@5", "P@10")}
    out["RelTag"] = tags
    return out


def run_evaluation(
    scorer: Scorer,
    root: str | Path,
    vocab: Vocabulary,
    cfg: TrainConfig,
    split: dict[str, Any],
    device: torch.device | str = "cpu",
    modes: tuple[str, ...] = MODES,
    pred_dir: Path | None = None,
    progress: bool = True,
    groundtruth: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Predictions for every mode × split (written to ``pred_dir`` when given) and their metrics."""
    predictions = {m: predict(scorer, root, m, vocab, cfg, split, device=device, progress=progress) for m in modes}
    if pred_dir is not None:
        for mode, by_split in predictions.items():
            for name, pred in by_split.items():
                write_json(pred_dir / f"{mode}_{name}.json", {"version": "VERSION 1.0", "results": pred})
    if groundtruth is None:
        groundtruth = load_groundtruth(root, "test")
    metrics = evaluate_predictions(groundtruth, predictions, split)
    metrics["trajectory"] = trajectory_metrics(scorer, root, vocab, cfg, split, device=device)
    return metrics


def write_json(path: Path, obj: Any) -> Path:
    """Atomic JSON write (temp file + rename)."""
    return atomic_write_text(path, json.dumps(obj))


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m uasan.predict", description="Relation predictions of a trained UASAN.")
    p.add_argument("--checkpoint", required=True, help="model file written by uasan.train (OUT/model.pt)")
    p.add_argument("--data-root", required=True, help="data set root (test subset)")
    p.add_argument("--out", required=True, help="prediction JSON (official format)")
    p.add_argument("--mode", choices=MODES, default="SGDet")
    p.add_argument("--split", choices=SPLITS, default="all", help="predicates to score (default: all)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        model, cfg, split = load_model(args.checkpoint, args.device)
        vocab = Vocabulary.from_split(split)
        pred = predict(
            model_scorer(model, vocab), args.data_root, args.mode, vocab, cfg, split, (args.split,), device=args.device
        )[args.split]
    except ValueError as exc:
        print(f"uasan.predict: {exc}", file=sys.stderr)
        return 2
    write_json(Path(args.out), {"version": "VERSION 1.0", "results": pred})
    print(f"wrote {sum(len(v) for v in pred.values())} relations of {len(pred)} videos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
