"""``python -m uasan.ceilings ROOT``: what the whole evaluation pipeline lets a perfect scorer reach.

The protocol (RePro's per-segment inference → VidVRD-II's greedy association → the official evaluator) is an
instrument: a model comparison means something only where an oracle reaches near its ceiling (DESIGN §5). This
runs the project's own pipeline (:func:`uasan.predict.run_evaluation`) with *oracle* scores:

* objects: each trajectory scores 1 for the class of the annotated object it is (:func:`matched_tids`: ground-truth
  trajectories by identity, proposals by their best vIoU > 0.5 as in DESIGN §4, every class of the split),
  background otherwise;
* predicates: each pair scores 1 for the predicates of the relations active in the segment between the two objects
  its members are, 0 elsewhere;

for each triplet score (``product``, ``mean``), beside the random scorer (and, with ``--run OUT``, the run's UASAN
and its stage-0 bridge used zero-shot, :func:`run_scorers`), and reports per mode × split the
metrics and, for SGDet, the proposals' coverage bound (:func:`coverage_bound`): the share of ground-truth relations
whose subject and object both match a proposal in at least one segment the relation overlaps; no scorer can detect
the others, since every video relation is linked from segment candidates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uasan.config import TrainConfig, load_config
from uasan.data import SegmentBatch, SegmentDataset, Vocabulary, load_groundtruth
from uasan.data.labels import assign_trajectory_labels
from uasan.evaluation import split_categories
from uasan.files import atomic_write_text

__all__ = ["ceilings", "coverage_bound", "main", "oracle_scorer"]

MODES = ("SGDet", "SGCls", "PredCls")
SPLITS = ("novel", "all")
TRIPLET_SCORES = ("product", "mean")


def matched_tids(ds: SegmentDataset, seg: Any) -> np.ndarray:
    """(n,) the annotated object (tid) each trajectory of ``seg`` is: its own tid for ground-truth trajectories, the
    best vIoU match (> 0.5, DESIGN §4) for proposals, -1 for none."""
    if (seg.tids >= 0).all() and ds.mode != "SGDet":
        return seg.tids.astype(np.int64)
    ann = ds.annotation(seg.video_id)
    rows, starts, boxes = ann.segment_trajectories(seg.fstart, seg.fend)
    props = [(int(a), seg.boxes[k, a:b]) for k, (a, b) in enumerate(zip(seg.start, seg.end, strict=True))]
    match = assign_trajectory_labels(props, list(zip(starts.tolist(), boxes, strict=True)), np.arange(len(rows)))
    return np.where(match >= 0, ann.tids[rows[np.maximum(match, 0)]] if len(rows) else -1, -1).astype(np.int64)


def segment_truth(ds: SegmentDataset, seg: Any) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's answer for one segment: (n,) class id per trajectory (-1: background) and (P, C_pred) 1 for
    every predicate of a relation active in the segment (``Annotation.segment_relations``) between the objects the
    pair's members are (:func:`matched_tids`)."""
    ann = ds.annotation(seg.video_id)
    tid = matched_tids(ds, seg)
    obj_ids, pred_ids = ds.vocab.object_ids, ds.vocab.predicate_ids
    cls = np.array([obj_ids[ann.category(int(t))] if t >= 0 else -1 for t in tid], dtype=np.int64)  # (n,)
    pred = np.zeros((len(seg.pairs), len(ds.vocab.predicates)), dtype=np.float32)  # (P, C_pred)
    ridx, _ = ann.segment_relations(seg.fstart, seg.fend, ds.min_overlap)
    ps, po = tid[seg.pairs[:, 0]], tid[seg.pairs[:, 1]]
    for r in ridx:
        rel = ann.relations[r]
        pred[(ps == rel.subject_tid) & (po == rel.object_tid), pred_ids[rel.predicate]] = 1.0
    return cls, pred


def oracle_scorer(root: str | Path, subset: str, cfg: TrainConfig, split: dict[str, Any], vocab: Vocabulary):
    """A scorer (``batch -> (obj (N, C_obj + 1), pred (P, C_pred))``) that knows the answer (:func:`segment_truth`,
    every class, novel included), read for the batch's segments from the annotations. SGDet batches are scored on
    the proposals, SGCls / PredCls batches on the ground-truth trajectories."""
    opts = cfg.data.dataset_options()
    sets: dict[bool, tuple[SegmentDataset, dict[str, int]]] = {}

    def segments(gt: bool) -> tuple[SegmentDataset, dict[str, int]]:
        if gt not in sets:
            ds = SegmentDataset(root, subset, split=split, mode="PredCls" if gt else "SGDet", labels=False,
                                features=False, union_features=False, **opts)  # fmt: skip
            sets[gt] = ds, {ds.tag(i): i for i in range(len(ds))}
        return sets[gt]

    C_obj, C_pred = len(vocab.objects), len(vocab.predicates)

    def score(batch: SegmentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        ds, index = segments(bool((batch.traj_classes >= 0).any()))
        truth = [segment_truth(ds, ds[index[tag]]) for tag in batch.tags]
        traj = np.concatenate([t[0] for t in truth]) if truth else np.zeros(0, dtype=np.int64)  # (N,)
        pred = np.concatenate([t[1] for t in truth]) if truth else np.zeros((0, C_pred), np.float32)  # (P, C_pred)
        if batch.num_pairs == 0:  # trajectory classification scores a batch without its pairs
            pred = pred[:0]
        if len(traj) != batch.num_trajectories or len(pred) != batch.num_pairs:
            raise RuntimeError("oracle_scorer: the annotated segments do not align with the batch")
        obj = np.zeros((len(traj), C_obj + 1), dtype=np.float32)  # (N, C_obj + 1), last column background
        obj[np.arange(len(traj)), np.where(traj >= 0, traj, C_obj)] = 1.0
        return torch.from_numpy(obj), torch.from_numpy(pred)

    return score


def coverage_bound(
    root: str | Path, subset: str, cfg: TrainConfig, split: dict[str, Any], split_names: Sequence[str] = SPLITS
) -> dict[str, dict[str, float]]:
    """SGDet's coverage bound on ``subset``: ``{split name: {"covered", "total", "bound"}}`` over the ground-truth
    relations of each split (novel: novel predicates; all). A relation is covered when, in at least one segment with
    proposals in which it is active, both its subject and its object are the match of some proposal
    (:func:`matched_tids`): only then can a segment candidate — and so a video relation — be built on it. The
    proposals are matched once; each split only counts."""
    ds = SegmentDataset(root, subset, split=split, mode="SGDet", labels=False, features=False, union_features=False,
                        **cfg.data.dataset_options())  # fmt: skip
    covered: set[tuple[str, int]] = set()  # (vid, relation index)
    for i in range(len(ds)):
        seg = ds[i]
        ann = ds.annotation(seg.video_id)
        tids = set(matched_tids(ds, seg).tolist())
        for r in ann.segment_relations(seg.fstart, seg.fend, ds.min_overlap)[0]:
            rel = ann.relations[r]
            if rel.subject_tid in tids and rel.object_tid in tids:
                covered.add((seg.video_id, int(r)))
    out = {}
    for name in split_names:
        objects, predicates = split_categories(split, name)
        total = hit = 0
        for vid in ds.videos.videos:
            ann = ds.annotation(vid)
            for r, rel in enumerate(ann.relations):
                names = (ann.category(rel.subject_tid), ann.category(rel.object_tid))
                if (predicates is None or rel.predicate in predicates) and (objects is None or set(names) <= objects):
                    total += 1
                    hit += (vid, r) in covered
        out[name] = {"covered": hit, "total": total, "bound": hit / total if total else 0.0}
    return out


def ceilings(
    root: str | Path,
    cfg: TrainConfig,
    *,
    subset: str = "test",
    triplet_scores: Sequence[str] = TRIPLET_SCORES,
    scorers: dict[str, Any] | None = None,
    run: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """``{"oracle": {score: metrics}, <name>: {score: metrics}, "coverage": {split: coverage_bound}}``; metrics as
    :func:`uasan.predict.run_evaluation` gives them (``{mode: {split: {mAP, R@50, R@100}}, ...}``). ``scorers``:
    more rows (default: ``random``), run with the same protocol; ``run``: a finished run folder whose UASAN and
    zero-shot rows follow them (:func:`run_scorers`)."""
    from uasan import predict as P

    root = Path(root)
    probe = SegmentDataset(root, subset, mode="PredCls", labels=False, features=False, union_features=False,
                           **cfg.data.dataset_options())  # fmt: skip
    split, vocab = probe.split, probe.vocab  # as training resolves them (ROOT/splits.json, else the data set's)
    gt = load_groundtruth(root, subset, val_fraction=cfg.data.val_fraction, val_seed=cfg.data.val_seed)
    more = {"random": None} if scorers is None else dict(scorers)
    if run is not None:
        more.update(run_scorers(run, vocab))
    rows = {"oracle": oracle_scorer(root, subset, cfg, split, vocab), **more}
    out: dict[str, Any] = {}
    for name, scorer in rows.items():
        out[name] = {}
        for how in triplet_scores:
            run_cfg = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, triplet_score=how))
            s = scorer if scorer is not None else P.random_scorer(vocab, seed=cfg.train.seed)
            m = P.run_evaluation(s, root, vocab, run_cfg, split, progress=progress, groundtruth=gt, subset=subset,
                                 label=f"{name} ({how})")  # fmt: skip
            out[name][how] = {mode: m[mode] for mode in MODES}
    out["coverage"] = coverage_bound(root, subset, cfg, split)
    return out


def run_scorers(run: str | Path, vocab: Vocabulary) -> dict[str, Any]:
    """The scorers of a finished run folder ``OUT`` to put beside the oracle: ``UASAN`` (``OUT/model.pt``) and
    ``stage0_zero_shot`` (the stage-0 bridge ``OUT/stage0/bridge.pt`` used zero-shot, when the run has one)."""
    from uasan import predict as P
    from uasan.baselines import pretrained_bridge, zero_shot_scorer

    run = Path(run)
    model, _, _ = P.load_model(run / "model.pt", what="--run")
    scorers = {"UASAN": P.model_scorer(model, vocab)}
    stage0 = run / "stage0" / "bridge.pt"
    if stage0.is_file():
        scorers["stage0_zero_shot"] = zero_shot_scorer(pretrained_bridge(model.spec, stage0), vocab)
    return scorers


def ceilings_markdown(result: dict[str, Any], title: str) -> str:
    """One row per scorer × triplet score: R@50 of every mode × split (percent), and the SGDet coverage bound."""
    cols = [(mode, s) for mode in MODES for s in SPLITS]
    lines = [f"# {title}", "", "| scores | triplet score | " + " | ".join(f"{m} {s} R@50" for m, s in cols) + " |"]
    lines.append("|---|---|" + "---|" * len(cols))
    for name, by_score in result.items():
        if name == "coverage":
            continue
        for how, m in by_score.items():
            cells = [f"{100 * m[mode][s]['R@50']:.1f}" for mode, s in cols]
            lines.append(f"| {name} | {how} | " + " | ".join(cells) + " |")
    cov = result.get("coverage", {})
    bound = ["–"] * len(cols)
    for j, (mode, s) in enumerate(cols):
        if mode == "SGDet" and s in cov:
            bound[j] = f"{100 * cov[s]['bound']:.1f}"
        elif s in cov:
            bound[j] = "100.0"
    lines.append("| coverage bound | – | " + " | ".join(bound) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m uasan.ceilings",
        description="Oracle ceilings of the evaluation pipeline (inference protocol, association, official "
        "evaluator) on a data set root, per mode and split, for each triplet score, beside random scores.",
    )
    ap.add_argument("root", help="data set root (e.g. runs/uasan/data)")
    ap.add_argument("--config", default="synth", help="built-in config name or YAML file (its data and infer)")
    ap.add_argument("--subset", default="test", help="subset to score (default: test)")
    ap.add_argument("--triplet-score", nargs="+", choices=TRIPLET_SCORES, default=list(TRIPLET_SCORES))
    ap.add_argument("--out", default=None, help="write the result as JSON (and a .md table beside it)")
    ap.add_argument("--run", default=None, help="a finished run folder: its UASAN and stage-0 zero-shot rows too")
    ap.add_argument("--quiet", action="store_true", help="no progress")
    ap.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"ceilings: ROOT {root} does not exist", file=sys.stderr)
        return 2
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
        result = ceilings(root, cfg, subset=args.subset, triplet_scores=args.triplet_score, run=args.run,
                          progress=not args.quiet)  # fmt: skip
    except ValueError as exc:
        print(f"ceilings: {exc}", file=sys.stderr)
        return 2
    text = ceilings_markdown(result, f"Oracle ceilings on {root} ({args.subset} subset)")
    print(text)
    if args.out:
        out = Path(args.out)
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        atomic_write_text(out.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
