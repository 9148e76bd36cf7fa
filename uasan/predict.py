"""Inference and evaluation of a trained UASAN (``python -m uasan.predict``), shared with ``uasan.train``.

Per segment (DESIGN §6, "Inference"; RePro's protocol, :mod:`uasan.inference`): classify the trajectories over all
object classes + background (SGDet and SGCls; PredCls takes the ground-truth classes), skip pairs with a background
member, keep each pair's top ``infer.pred_topk`` target predicates (novel or all), merge subject, predicate and
object scores (``infer.triplet_score``, mean by default), keep the top ``infer.topk_per_segment`` and drop pairs
without a common frame; then per video ``uasan.ops.greedy_relation_association`` links segment relations into
video relations. :func:`run_evaluation` builds them as columns, writes the official prediction files from them and
evaluates them as they are; relation tagging comes from SGDet, trajectory classification uses each split's own
classifier (:func:`trajectory_metrics`).
"""

from __future__ import annotations

import uasan._openmp  # noqa: F401 - before torch: the OpenMP wait policy (see the module)

# isort: split

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uasan import ops
from uasan._console import phase
from uasan._console import progress as progress_lines
from uasan._model_files import (  # noqa: F401 - re-exported: uasan.predict's model-file API
    MODEL_KIND,
    STAGE1_KIND,
    load_model,
    load_state,
    model_spec,
    read_model_file,
    save_model,
    spec_from_payload,
)
from uasan.config import InferConfig, TrainConfig
from uasan.data import SegmentBatch, SegmentDataset, Vocabulary, collate_segments, load_groundtruth
from uasan.evaluation import (
    RelationColumns,
    RelationEvaluator,
    split_categories,
    trajectory_recall,
)
from uasan.evaluation.bootstrap import bootstrap_intervals, video_scores
from uasan.evaluation.columns import ColumnarRelations
from uasan.files import atomic_write_text, check_writable
from uasan.inference import (
    VideoColumns,
    association_options,
    candidate_dicts,
    segment_candidates,
    segment_groundtruth,
    split_classification,
)
from uasan.models import UASAN

MODES = ("SGDet", "SGCls", "PredCls")
SPLITS = ("novel", "all")
# (N, C_obj + 1) object probabilities (last column = background) and (P, C_pred) predicate probabilities
Scorer = Callable[[SegmentBatch], tuple[torch.Tensor, torch.Tensor]]


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


def segment_relations(
    batch: SegmentBatch,
    obj_probs: torch.Tensor,
    pred_probs: torch.Tensor,
    mode: str,
    vocab: Vocabulary,
    predicate_ids: np.ndarray,
    topk: int,
    triplet_score: str = "mean",
    *,
    pred_topk: int = 10,
) -> dict[str, dict[tuple[int, int], list[dict[str, Any]]]]:
    """The relations every segment of ``batch`` keeps, in the official segment format ``{vid: {(fstart, fend):
    [relation]}}``: RePro's per-segment protocol (:mod:`uasan.inference`) with ``pred_topk`` predicates per pair,
    ``topk`` relations per segment and the ``triplet_score`` merge."""
    infer = InferConfig(pred_topk=pred_topk, topk_per_segment=topk, triplet_score=triplet_score)
    return candidate_dicts(batch, segment_candidates(batch, obj_probs, pred_probs, mode, predicate_ids, infer), vocab)


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
    *,
    output: str = "dicts",
    label: str = "UASAN",
) -> dict[str, Any]:
    """Video-level predictions of one mode over ``subset`` for each target split (RePro's protocol with the
    ``infer`` section of ``cfg``, :mod:`uasan.inference`). ``label`` names the scorer in the progress bar (or,
    without a terminal, the progress lines): ``"<label>: predict <mode>"``.

    ``output="dicts"``: ``{split: {vid: [relation]}}`` in the official format (segment relations as dicts, the dict
    association: the reference path). ``output="columns"``: ``{split: RelationColumns}``, the same relations built,
    associated and returned as arrays (no Python object per box); :func:`evaluate_predictions` and
    ``RelationColumns.write_json`` take them as they are.
    """
    if output not in ("dicts", "columns"):
        raise ValueError(f"predict: expected output to be 'dicts' or 'columns', got {output!r}")
    ds = SegmentDataset(root, subset, split=split, mode=mode, labels=False, **cfg.data.dataset_options())
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=cfg.data.batch_segments,
        shuffle=False,
        collate_fn=collate_segments,
        num_workers=cfg.data.num_workers,
    )
    ids = {s: predicate_ids_for(vocab, s) for s in target_splits}
    columns = {s: VideoColumns(vocab, cfg.infer) for s in target_splits}
    groups: dict[str, dict[str, dict[tuple[int, int], list]]] = {s: {} for s in target_splits}
    for batch in progress_lines(loader, f"{label}: predict {mode}", enabled=progress):
        obj, pred = scorer(batch.to(device))
        obj, pred = obj.float().cpu(), pred.float().cpu()
        for s in target_splits:
            cand = segment_candidates(batch, obj, pred, mode, ids[s], cfg.infer)
            if output == "columns":
                columns[s].add(batch, cand)
                continue
            for vid, segs in candidate_dicts(batch, cand, vocab).items():
                groups[s].setdefault(vid, {}).update(segs)
    if output == "columns":
        return {s: columns[s].result() for s in target_splits}
    options = association_options(cfg.infer)
    return {
        s: {vid: ops.greedy_relation_association(segs, **options) for vid, segs in groups[s].items()}
        for s in target_splits
    }


TRAJECTORY_SPLITS = ("novel", "base", "all")


def trajectory_metrics(
    scorer: Scorer,
    root: str | Path,
    vocab: Vocabulary,
    cfg: TrainConfig,
    split: dict[str, Any],
    device: torch.device | str = "cpu",
    subset: str = "test",
) -> dict[str, dict[str, float]]:
    """Trajectory classification R@5 / R@10 (the paper's Table 1) for the novel, base and all object classes, as
    RePro's evaluation (``tools/eval_traj_cls_both.py``) computes them: each row classifies the SGDet proposals with
    its own classifier (the softmax over that split's classes alone: novel-only, base-only, all; no background),
    the ground truth is the annotated trajectories of that split's classes in each segment
    (:func:`uasan.inference.segment_groundtruth`), and :func:`uasan.evaluation.trajectory_recall` micro-averages
    over them; segments without a proposal file do not count."""
    ds = SegmentDataset(
        root, subset, split=split, mode="SGDet", labels=False, union_features=False, **cfg.data.dataset_options()
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.data.batch_segments, collate_fn=collate_segments)
    masks = {name: vocab.object_mask(name) for name in TRAJECTORY_SPLITS}
    classes = {name: {vocab.objects[c] for c in np.flatnonzero(m)} for name, m in masks.items()}
    props: dict[str, dict[str, list]] = {name: {} for name in TRAJECTORY_SPLITS}
    gt: dict[str, dict[str, list]] = {name: {} for name in TRAJECTORY_SPLITS}
    for batch in loader:
        obj, _ = scorer(_without_pairs(batch).to(device))
        obj = obj.float().cpu()
        boxes, starts, ends = batch.traj_boxes.numpy(), batch.traj_start.tolist(), batch.traj_end.tolist()
        for vid, (fs, fe), tag in zip(batch.video_ids, batch.segment_frames.tolist(), batch.tags, strict=True):
            ann = ds.annotation(vid)
            for name in TRAJECTORY_SPLITS:
                props[name][tag] = []  # the segment has a proposal file: its ground truth counts
                gt[name][tag] = segment_groundtruth(ann, fs, fe, classes[name])
        for name in TRAJECTORY_SPLITS:
            score, label = split_classification(obj, masks[name])
            for n, seg in enumerate(batch.traj_segment.tolist()):
                props[name][batch.tags[seg]].append(
                    {
                        "fstart": starts[n],
                        "bboxes": boxes[n, starts[n] : ends[n]],
                        "score": float(score[n]),
                        "label": vocab.objects[int(label[n])],
                    }
                )
    return {name: trajectory_recall(gt[name], props[name], ks=(5, 10)) for name in TRAJECTORY_SPLITS}


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
    groundtruth: dict[str, list[dict[str, Any]]] | ColumnarRelations,
    predictions: dict[str, dict[str, Any]],
    split: dict[str, Any],
) -> dict[str, Any]:
    """``{mode: {split: {mAP, R@50, R@100, ci95}}, "RelTag": {split: {P@1, P@5, P@10}}, "per_video": {mode: {split:
    VideoScores}}}`` (the official evaluator; ``ci95``: each metric's 95 % bootstrap interval over the test videos,
    :mod:`uasan.evaluation.bootstrap`; ``per_video`` the numbers behind it, for paired comparisons).

    ``predictions``: ``{mode: {split: predictions}}``, each the official dicts or columns (:func:`predict`'s two
    outputs); the ground truth is filtered to each split. Relation tagging is computed from the SGDet predictions,
    as RePro does and as the paper reports it (its tagging table equals its SGDet-all row); ``"RelTag"`` is empty
    without SGDet predictions.
    """
    out: dict[str, Any] = {}
    tags: dict[str, dict[str, float]] = {}
    per_video: dict[str, dict[str, Any]] = {}
    gt_columns = groundtruth if isinstance(groundtruth, ColumnarRelations) else None
    for mode, by_split in predictions.items():
        out[mode] = {}
        for name, pred in by_split.items():
            gt = groundtruth
            if isinstance(pred, ColumnarRelations):  # columns meet columns: the ground truth is converted once
                if gt_columns is None:
                    gt_columns = RelationColumns.from_dicts(groundtruth, scores=False, op="evaluate_predictions")
                gt = gt_columns
            objects, preds = split_categories(split, name)
            ev = RelationEvaluator(gt, objects=objects, predicates=preds, check_boxes="used", per_video=True)
            if isinstance(pred, ColumnarRelations):
                ev.process_columns(pred)
            else:
                for vid, rels in pred.items():
                    ev.process(vid, rels)
            m = ev.evaluate()
            videos = video_scores(m["per_video"], m["per_video_hits"], m["per_video_gt"], (50, 100))
            out[mode][name] = {k: m[k] for k in ("mAP", "R@50", "R@100")}
            out[mode][name]["ci95"] = bootstrap_intervals(videos)  # over the test videos, seeded
            per_video.setdefault(mode, {})[name] = videos.to_dict()
            if mode == "SGDet":
                tags[name] = {k: m[k] for k in ("P@1", "P@5", "P@10")}
    out["RelTag"] = tags
    out["per_video"] = per_video
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
    groundtruth: dict[str, list[dict[str, Any]]] | ColumnarRelations | None = None,
    subset: str = "test",
    label: str = "UASAN",
) -> dict[str, Any]:
    """Predictions for every mode × split (as columns; written to ``pred_dir/<mode>_<split>.json`` by
    :func:`write_predictions` when given), their metrics (:func:`evaluate_predictions`) and the trajectory
    classification (:func:`trajectory_metrics`), all on ``subset``. ``label`` names the scorer in the progress."""
    with phase(f"{label}: predictions and metrics on the {subset} subset", enabled=progress):
        predictions = {
            m: predict(
                scorer,
                root,
                m,
                vocab,
                cfg,
                split,
                device=device,
                progress=progress,
                subset=subset,
                output="columns",
                label=label,
            )  # fmt: skip
            for m in modes
        }
        if pred_dir is not None:
            for mode, by_split in predictions.items():
                for name, pred in by_split.items():
                    write_predictions(pred, pred_dir / f"{mode}_{name}.json", mode=mode, split=name)
        if groundtruth is None:
            groundtruth = load_groundtruth(root, subset, val_fraction=cfg.data.val_fraction, val_seed=cfg.data.val_seed)
        metrics = evaluate_predictions(groundtruth, predictions, split)
        metrics["trajectory"] = trajectory_metrics(scorer, root, vocab, cfg, split, device=device, subset=subset)
    return metrics


def write_predictions(pred: RelationColumns, path: str | Path, *, mode: str, split: str) -> Path:
    """The official prediction file ``{"version", "results", "split", "mode"}``, written atomically: the one writer
    of ``uasan.train``'s ``OUT/predictions/<mode>_<split>.json`` and of ``uasan.predict --out``. ``split`` (the
    predicates scored: novel, all) and ``mode`` are extra keys that the official evaluator ignores and
    ``uasan.evaluate`` reads (its default ``--split`` and ``--mode``)."""
    if mode not in MODES or split not in (*SPLITS, "base"):
        raise ValueError(f"write_predictions: expected a mode of {MODES} and a split of {SPLITS}, got {mode!r}, "
                         f"{split!r}")  # fmt: skip
    return pred.write_json(Path(path), extra={"split": split, "mode": mode})


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
        # the model file's data section names the layout and its folders (e.g. extracted union features)
        check_inputs(args.data_root, {"test": [args.mode]}, split, dataset_options=cfg.data.dataset_options())
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
            output="columns",
        )[args.split]
        write_predictions(pred, args.out, mode=args.mode, split=args.split)  # as uasan.train writes them
    except ValueError as exc:
        print(f"uasan.predict: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("uasan.predict: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"wrote {len(pred)} relations of {len(pred.videos)} videos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
