"""Inference and evaluation of a trained UASAN (``python -m uasan.predict``), shared with ``uasan.train``.

Per segment (DESIGN §6, "Inference"): classify the trajectories over all object classes + background (SGDet and
SGCls; PredCls takes the ground-truth classes), skip pairs with a background member, score the target predicates
(novel or all), triplet score = product (or mean) of subject, predicate and object scores, keep the top k per
segment; then per video ``uasan.ops.greedy_relation_association`` links segment relations into video relations
in the official prediction format.
"""

from __future__ import annotations

import uasan._openmp  # noqa: F401 - before torch: the OpenMP wait policy (see the module)

# isort: split

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
from uasan.engine.checkpoint import safe_torch_load
from uasan.engine.config import TrainConfig, from_dict, to_dict
from uasan.engine.run_folder import check_writable
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


def read_model_file(path: str | Path, what: str = "--checkpoint") -> dict[str, Any]:
    """The payload of a file written by :func:`save_model`, read with ``torch.load(weights_only=True)`` (no code can
    run from it) and checked; every problem is a ``ValueError`` naming ``what`` (the option) and the file."""
    path = Path(path)
    payload = safe_torch_load(path, what)
    fields = {"spec": dict, "config": dict, "split": dict, "state_dict": dict}
    if not isinstance(payload, dict):
        raise ValueError(f"{what}: {path} is not a uasan model file (holds a {type(payload).__name__}, not a dict)")
    for key, kind in fields.items():
        if not isinstance(payload.get(key), kind):
            raise ValueError(
                f"{what}: {path} is not a uasan model file: field '{key}' is missing or not a {kind.__name__}"
            )
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{what}: {path}: field 'state_dict[{bad[0]!r}]' is not a tensor")
    return payload


def spec_from_payload(payload: dict[str, Any], path: str | Path, what: str = "--checkpoint") -> ModelSpec:
    try:
        return ModelSpec(**payload["spec"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {path}: field 'spec': {exc}") from None


def load_state(model: UASAN, state: dict[str, torch.Tensor], path: str | Path, what: str, strict: bool = True) -> None:
    """``model.load_state_dict(state)``; a mismatch is a ``ValueError`` naming the file (not a size-mismatch dump)."""
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        detail = "; ".join(lines[:3]) + (f"; ... ({len(lines) - 3} more)" if len(lines) > 3 else "")
        raise ValueError(f"{what}: {path}: field 'state_dict' does not fit the model: {detail}") from None


def load_model(
    path: str | Path, device: str | torch.device = "cpu", what: str = "--checkpoint"
) -> tuple[UASAN, TrainConfig, dict[str, Any]]:
    """A model file written by :func:`save_model` → (model in eval mode on ``device``, its config, its split)."""
    path = Path(path)
    payload = read_model_file(path, what)
    spec = spec_from_payload(payload, path, what)
    cfg = from_dict(TrainConfig, payload["config"], source=f"{what} {path}: field 'config'")
    split = payload["split"]
    try:
        Vocabulary.from_split(split)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {path}: field 'split': {exc}") from None
    model = UASAN(spec)
    load_state(model, payload["state_dict"], path, what)
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


def quiet_libraries() -> None:
    """Silence transformers' weight-loading bars and info logs (``--quiet``); warnings and errors still show."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m uasan.predict", description="Relation predictions of a trained UASAN.")
    p.add_argument("--checkpoint", required=True, help="model file written by uasan.train (OUT/model.pt)")
    p.add_argument("--data-root", required=True, help="data set root (test subset)")
    p.add_argument("--out", required=True, help="prediction JSON (official format)")
    p.add_argument("--mode", choices=MODES, default="SGDet")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="predicates to score: novel or all (default all). Evaluate with the same --split: "
        "OUT/metrics.json's <mode>/<split> entry is this pair",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    if args.quiet:
        quiet_libraries()
    try:
        # everything that can fail cheaply fails before the predictions are computed
        from uasan.data.checks import check_inputs

        check_writable(args.out, "--out", is_dir=False)
        model, cfg, split = load_model(args.checkpoint, args.device)
        vocab = Vocabulary.from_split(split)
        if not Path(args.data_root).is_dir():
            raise ValueError(f"--data-root: {args.data_root} does not exist")
        check_inputs(args.data_root, {"test": [args.mode]}, split)
        pred = predict(
            model_scorer(model, vocab),
            args.data_root,
            args.mode,
            vocab,
            cfg,
            split,
            (args.split,),
            device=args.device,
            progress=not args.quiet,
        )[args.split]
        # "split" / "mode" are extra keys (the official evaluator reads "results" only); uasan.evaluate checks them
        write_json(Path(args.out), {"version": "VERSION 1.0", "results": pred, "split": args.split, "mode": args.mode})
    except ValueError as exc:
        print(f"uasan.predict: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("uasan.predict: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"wrote {sum(len(v) for v in pred.values())} relations of {len(pred)} videos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
