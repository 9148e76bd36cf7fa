"""``python -m uasan.train``: train UASAN and evaluate it (DESIGN §6; the seed paper's two stages).

Stage 1 fine-tunes the bridge (LoRA) for trajectory classification on base classes; stage 2 freezes it and trains
the relation model. Then inference on the test subset for SGDet, SGCls and PredCls × novel and all, the same
pipeline with random scores as a baseline, and ``OUT/metrics.json``, ``OUT/metrics.md``, ``OUT/curves.png``,
``OUT/predictions/<mode>_<split>.json`` and ``OUT/model.pt``.

With no arguments it generates the built-in synthetic world under ``OUT/data`` and trains on it. Multi-process:
``torchrun --nproc_per_node=K -m uasan.train ...`` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from uasan.engine import distributed as dist
from uasan.engine._atomic import atomic_write_text
from uasan.engine.config import BUILTIN_CONFIGS, TrainConfig, dump_config, load_config
from uasan.engine.hooks import EvalHook, default_hooks, plot_curves, read_jsonl
from uasan.engine.repro import build_dataloader, resolve_device, seed_everything
from uasan.engine.trainer import Trainer, build_optimizer, warmup_cosine_schedule

VARIANTS = ("A", "B", "C", "full")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m uasan.train",
        description="Train UASAN for open-vocabulary video scene graph generation. With no arguments it trains on "
        "the built-in synthetic world and writes OUT/metrics.json, OUT/metrics.md and OUT/curves.png.",
    )
    p.add_argument(
        "--config", default="synth", help=f"built-in config {BUILTIN_CONFIGS} or a YAML path (default synth)"
    )
    p.add_argument("--data-root", help="data set root (default for synth: generated under OUT/data)")
    p.add_argument("--out", default="runs/uasan", help="run folder (default runs/uasan)")
    p.add_argument("--variant", choices=VARIANTS, help="ablation variant (default: the config's, full)")
    p.add_argument("--ablation", action="store_true", help="train A, B, C and full on the same data; one table")
    p.add_argument("--stage", type=int, choices=(1, 2), help="run only stage 1 (bridge) or stage 2 (relations)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--skip-eval", action="store_true", help="train and save OUT/model.pt, skip the test-set evaluation")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. optim.epochs_stage2=3")
    return p


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------


def prepare_data(cfg: TrainConfig, out: Path, progress: bool) -> Path:
    """The data set root: the configured one, or the synthetic world generated (once) under ``OUT/data``."""
    if cfg.data.root is not None:
        root = Path(cfg.data.root)
        if not root.is_dir():
            raise ValueError(f"data.root: {root} does not exist (see README, 'Real data', for the expected layout)")
        return root
    if cfg.data.dataset != "synth":
        raise ValueError(f"data.root: the {cfg.data.dataset} config needs --data-root (README, 'Real data')")
    root = out / "data"
    if not (root / "meta.json").is_file():
        if dist.is_main_process():
            from uasan.data import synth

            synth.generate(root, seed=cfg.train.seed, progress=progress)
        dist.barrier()
    return root


def stage1_labels(labels: torch.Tensor, n_base: int) -> torch.Tensor:
    """Data labels (class id over base + novel, −1 background, −100 ignore) → [0, n_base] with n_base = background
    and −1 = ignore, as :meth:`UASAN.stage1_loss` takes them."""
    out = labels.clone()
    out[labels == -1] = n_base
    out[(labels == -100) | (labels >= n_base)] = -1
    return out


def stage1_loss(model: torch.nn.Module, batch: Any, names: list[str]) -> dict[str, torch.Tensor]:
    return model(1, traj_feats=batch.traj_features, labels=stage1_labels(batch.traj_labels, len(names)), names=names)


def stage2_loss(
    model: torch.nn.Module, batch: Any, objects: list[str], predicates: list[str]
) -> dict[str, torch.Tensor]:
    keep = batch.pair_valid if batch.pair_valid is not None else torch.ones(batch.num_pairs, dtype=torch.bool)
    pairs = batch.pairs[keep]
    return model(
        2,
        traj_feats=batch.traj_features,
        union_feats=batch.union_features[keep],
        motion=batch.motion[keep],
        subj=pairs[:, 0],
        obj=pairs[:, 1],
        traj_labels=stage1_labels(batch.traj_labels, len(objects)),
        predicate_targets=batch.pred_labels[keep][:, : len(predicates)],
        object_names=objects,
        predicate_names=predicates,
    )


# ---------------------------------------------------------------------------------------------------------------
# the two stages
# ---------------------------------------------------------------------------------------------------------------


def _trainer(model, params, loader, loss_fn, epochs, cfg, out_dir, eval_fn, progress, items, device) -> Trainer:
    opt = build_optimizer(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    total = max(1, epochs * len(loader))
    sched = warmup_cosine_schedule(opt, min(cfg.optim.warmup_steps, total // 2), total)
    hooks = default_hooks(
        eval_fn=eval_fn,
        eval_every=max(cfg.train.eval_every_epoch, 1),
        log_every=cfg.train.log_every,
        items_fn=items,
        items_name="pairs" if items is not None else "batches",
        progress=progress,
    )
    if eval_fn is None:
        hooks = [h for h in hooks if not isinstance(h, EvalHook)]
    return Trainer(
        model,
        opt,
        loader,
        loss_fn,
        max_epochs=epochs,
        scheduler=sched,
        hooks=hooks,
        grad_clip=cfg.optim.grad_clip,
        amp_bf16=cfg.train.amp_bf16 and device.type == "cuda",
        out_dir=out_dir,
        device=device,
    )


def train_stage1(model, cfg: TrainConfig, dataset, out: Path, resume: bool, progress: bool, device) -> None:
    from uasan.data import collate_segments

    names = list(dataset.vocab.objects[: dataset.vocab.num_base_objects])
    loader = build_dataloader(
        dataset,
        cfg.data.batch_segments,
        shuffle=True,
        seed=cfg.train.seed,
        collate_fn=collate_segments,
        num_workers=cfg.data.num_workers,
    )
    params = [p for p in model.bridge_parameters() if p.requires_grad]
    # the relation part is trainable but unused in stage 1
    ddp = dist.wrap_ddp(model, find_unused_parameters=True) if dist.is_distributed() else model
    trainer = _trainer(
        ddp,
        params,
        loader,
        lambda m, b: stage1_loss(m, b, names),
        cfg.optim.epochs_stage1,
        cfg,
        out / "stage1",
        None,
        progress,
        None,
        device,
    )
    if resume:
        trainer.resume(out / "stage1", missing_ok=True)
    trainer.train()


def train_stage2(model, cfg: TrainConfig, dataset, out: Path, resume: bool, progress: bool, device, eval_fn) -> None:
    from uasan.data import collate_segments

    vocab = dataset.vocab
    objects = list(vocab.objects[: vocab.num_base_objects])
    predicates = list(vocab.predicates[: vocab.num_base_predicates])
    loader = build_dataloader(
        dataset,
        cfg.data.batch_segments,
        shuffle=True,
        seed=cfg.train.seed + 1,
        collate_fn=collate_segments,
        num_workers=cfg.data.num_workers,
    )
    model.freeze_bridge()
    ddp = dist.wrap_ddp(model, find_unused_parameters=True) if dist.is_distributed() else model
    trainer = _trainer(
        ddp,
        model.relation_parameters(),
        loader,
        lambda m, b: stage2_loss(m, b, objects, predicates),
        cfg.optim.epochs_stage2,
        cfg,
        out / "stage2",
        eval_fn,
        progress,
        lambda b: b.num_pairs,
        device,
    )
    if resume:
        trainer.resume(out / "stage2", missing_ok=True)
    trainer.train()


# ---------------------------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{100 * x:.2f}"


def metrics_markdown(metrics: dict[str, Any], title: str) -> str:
    """Tables laid out like the paper's Table 1 (relation detection / tagging) and Table 3 (trajectories)."""
    lines = [f"# {title}", "", "## Relation detection (Table 1 layout)", ""]
    lines += [
        "| model | mode | split | mAP | R@50 | R@100 | P@1 | P@5 | P@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for who, m in (("UASAN", metrics), ("random", metrics.get("random_baseline", {}))):
        for mode in ("SGDet", "SGCls", "PredCls"):
            for split in ("novel", "all"):
                r = m.get(mode, {}).get(split)
                if r is None:
                    continue
                tag = m.get("RelTag", {}).get(split, {}) if mode == "PredCls" else {}
                p = [_fmt(tag[k]) if k in tag else "–" for k in ("P@1", "P@5", "P@10")]
                lines.append(
                    f"| {who} | {mode} | {split} | {_fmt(r['mAP'])} | {_fmt(r['R@50'])} | {_fmt(r['R@100'])} | "
                    + " | ".join(p)
                    + " |"
                )
    lines += [
        "",
        "## Trajectory classification (Table 3 layout)",
        "",
        "| model | classes | R@5 | R@10 |",
        "|---|---|---|---|",
    ]
    for who, m in (("UASAN", metrics), ("random", metrics.get("random_baseline", {}))):
        for split, r in m.get("trajectory", {}).items():
            lines.append(f"| {who} | {split} | {_fmt(r['R@5'])} | {_fmt(r['R@10'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


def run(
    cfg: TrainConfig,
    out: Path,
    *,
    stage: int | None,
    resume: bool,
    progress: bool,
    variants: tuple[str, ...],
    evaluate: bool = True,
) -> dict[str, Any] | None:
    from uasan import predict as P
    from uasan.data import SegmentDataset, load_groundtruth

    info = dist.init_distributed()
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    out.mkdir(parents=True, exist_ok=True)
    root = prepare_data(cfg, out, progress)
    train_set = SegmentDataset(root, "train", mode="SGDet", **cfg.data.dataset_options())
    split, vocab = train_set.split, train_set.vocab
    if len(train_set) == 0:
        raise ValueError(f"data.root: {root} has no training segments with proposals")
    visual_dim = int(train_set[0].features.shape[-1])
    if dist.is_main_process():
        dump_config(cfg, out / "config.yaml")

    # stage 1, shared by every variant of an ablation
    base = P.model_spec(cfg, visual_dim, variants[0])
    from uasan.models import UASAN

    model = UASAN(base).to(device)
    bridge_file = out / "stage1" / "bridge.pt"
    if stage in (None, 1) and not (resume and bridge_file.is_file()):
        train_stage1(model, cfg, train_set, out, resume, progress, device)
        if dist.is_main_process():
            P.save_model(model, cfg, split, bridge_file)
        dist.barrier()
    if stage == 1:
        return None
    if not bridge_file.is_file():
        raise ValueError(f"--stage 2: no stage-1 bridge at {bridge_file}; run stage 1 first")
    bridge_state = torch.load(bridge_file, map_location="cpu", weights_only=False)["state_dict"]

    groundtruth = load_groundtruth(root, "test")  # read once: every validation pass and report uses it
    results = {}
    random_baseline = None
    for variant in variants:
        vout = out if len(variants) == 1 else out / f"variant_{variant}"
        torch.manual_seed(cfg.train.seed)
        model = UASAN(replace(base, variant=variant)).to(device)
        bridge_only = {k: v for k, v in bridge_state.items() if k.startswith("bridge.") or k == "background"}
        model.load_state_dict(bridge_only, strict=False)
        scorer = P.model_scorer(model, vocab)

        def eval_fn(m, scorer=scorer) -> dict[str, float]:
            r = P.evaluate_predictions(
                groundtruth,
                {"PredCls": P.predict(scorer, root, "PredCls", vocab, cfg, split, device=device, progress=False)},
                split,
            )["PredCls"]
            return {f"val_PredCls_{s}_R@50": r[s]["R@50"] for s in r}

        train_stage2(model, cfg, train_set, vout, resume, progress, device, eval_fn if evaluate else None)
        if not dist.is_main_process():
            continue
        model.eval()
        P.save_model(model, cfg, split, vout / "model.pt")
        if not evaluate:
            continue
        metrics = P.run_evaluation(
            scorer,
            root,
            vocab,
            cfg,
            split,
            device=device,
            pred_dir=vout / "predictions",
            progress=progress,
            groundtruth=groundtruth,
        )
        if random_baseline is None:  # the same for every variant
            random_baseline = P.run_evaluation(
                P.random_scorer(vocab, cfg.train.seed),
                root,
                vocab,
                cfg,
                split,
                progress=progress,
                groundtruth=groundtruth,
            )
        metrics["random_baseline"] = random_baseline
        P.write_json(vout / "metrics.json", metrics)
        atomic_write_text(vout / "metrics.md", metrics_markdown(metrics, f"UASAN ({variant}) on {root}"))
        log = vout / "stage2" / "log.jsonl"
        if log.is_file() and read_jsonl(log):
            plot_curves(log, vout / "curves.png", title=f"UASAN ({variant}) stage 2")
        try:  # OUT/visualize/<first test video>.png; a drawing failure must not fail a finished run
            from uasan.visualize import run_picture

            run_picture(vout, root)
        except Exception as exc:
            print(f"uasan.train: no picture in {vout / 'visualize'} ({type(exc).__name__}: {exc})", file=sys.stderr)
        results[variant] = metrics
    if len(variants) > 1 and results and dist.is_main_process():
        write_ablation(out, results)
    dist.cleanup_distributed()
    del info
    return results


def write_ablation(out: Path, results: dict[str, dict[str, Any]]) -> None:
    rows = [
        "| variant | PredCls novel mAP | PredCls novel R@50 | PredCls all mAP | PredCls all R@50 | SGDet novel R@50 |",
        "|---|---|---|---|---|---|",
    ]
    for v, m in results.items():
        pc, sg = m["PredCls"], m["SGDet"]
        rows.append(
            f"| {v} | {_fmt(pc['novel']['mAP'])} | {_fmt(pc['novel']['R@50'])} | {_fmt(pc['all']['mAP'])} | "
            f"{_fmt(pc['all']['R@50'])} | {_fmt(sg['novel']['R@50'])} |"
        )
    base = next(iter(results.values()))["random_baseline"]["PredCls"]
    rows.append(
        f"| random | {_fmt(base['novel']['mAP'])} | {_fmt(base['novel']['R@50'])} | {_fmt(base['all']['mAP'])} | "
        f"{_fmt(base['all']['R@50'])} | – |"
    )
    text = (
        "# Ablation (DESIGN §6 variants)\n\n"
        "A: pair only; B: + union and motion; C: + SACEncoder; full: + URADecoder.\n\n"
    )
    atomic_write_text(out / "ablation.md", text + "\n".join(rows) + "\n")
    atomic_write_text(
        out / "ablation.json",
        json.dumps({v: {k: m[k] for k in ("SGDet", "SGCls", "PredCls")} for v, m in results.items()}, indent=1),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.variant:
        overrides.append(f"model.variant={args.variant}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    try:
        cfg = load_config(TrainConfig, args.config, overrides)
        variants = VARIANTS if args.ablation else (cfg.model.variant,)
        results = run(
            cfg,
            Path(args.out),
            stage=args.stage,
            resume=args.resume,
            progress=not args.quiet,
            variants=variants,
            evaluate=not args.skip_eval,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"uasan.train: {exc}", file=sys.stderr)
        return 2
    if results and dist.is_main_process():
        for v, m in results.items():
            pc, rb = m["PredCls"]["novel"], m["random_baseline"]["PredCls"]["novel"]
            print(f"[{v}] PredCls novel: R@50 {_fmt(pc['R@50'])} (random {_fmt(rb['R@50'])}), mAP {_fmt(pc['mAP'])}")
        print(f"metrics: {Path(args.out) / 'metrics.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
