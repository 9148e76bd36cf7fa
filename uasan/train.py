"""``python -m uasan.train``: train UASAN and evaluate it (DESIGN §6–7; the seed paper's stages).

Stage 0 (synthetic world only, :mod:`uasan.pretrain`): ITC pretraining of the MiniLM-initialised bridge on the
world's corpus, the stand-in for a BLIP-2 checkpoint; with ``model.bridge_path`` (real data) the checkpoint is the
bridge and stage 0 is skipped. Stage 1 adapts the pretrained bridge (frozen, LoRA) for trajectory classification on
base classes; stage 2 freezes it and trains the relation model. Validation (per epoch: ``OUT/stage*/log.jsonl``,
``curves.png``) reads the held-out ``val`` subset only and scores base classes; the test subset is read once, at
the end, by prediction: SGDet, SGCls and PredCls × novel and all, the same pipeline for the baselines
(:mod:`uasan.baselines`), and ``OUT/metrics.json``, ``OUT/metrics.md``, ``OUT/predictions/<mode>_<split>.json``
(:func:`uasan.predict.write_predictions`, as ``uasan.predict`` writes them), ``OUT/model.pt``. Ctrl-C and SIGTERM
stop a run with the command that resumes it (:mod:`uasan._interrupt`); without a terminal, progress is printed as
plain lines (:mod:`uasan._console`).

With no arguments it generates the built-in synthetic world under ``OUT/data`` and trains on it. Multi-process:
``torchrun --nproc_per_node=K -m uasan.train ...`` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import uasan._openmp  # noqa: F401 - before torch: the OpenMP wait policy (see the module)

# isort: split

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from uasan._console import is_terminal, phase
from uasan._interrupt import exit_status, interrupted_message, sigterm_as_interrupt, world_size_from_env
from uasan.config import BUILTIN_CONFIGS, TrainConfig, dump_config, load_config
from uasan.engine import distributed as dist
from uasan.engine.hooks import default_hooks, plot_curves, read_jsonl
from uasan.engine.repro import build_dataloader, resolve_device, seed_everything
from uasan.engine.run_folder import clear_entries
from uasan.engine.threads import configure_threads
from uasan.engine.trainer import Trainer, build_optimizer, warmup_cosine_schedule
from uasan.evaluation.bootstrap import compare_runs, strip_per_video
from uasan.files import atomic_write_text
from uasan.models.config import VARIANTS
from uasan.reports import data_record, metrics_markdown, pct, write_ablation
from uasan.runs import check_bridge_source, check_run_folder, read_bridge, world_arguments
from uasan.validation import validation_fns


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m uasan.train",
        description="Train UASAN for open-vocabulary video scene graph generation. With no arguments it trains on "
        "the built-in synthetic world and writes OUT/metrics.json, OUT/metrics.md and OUT/curves.png.",
        epilog="Overrides may stand anywhere among the options. A run folder holds one run: a fresh run refuses a "
        "folder that holds another one unless --overwrite (which deletes that run's files, keeping a generated "
        "world of the same seed under OUT/data) or --resume (which first checks that the config is the same).",
    )
    p.add_argument(
        "--config", default="synth", help=f"built-in config {BUILTIN_CONFIGS} or a YAML path (default synth)"
    )
    p.add_argument("--data-root", help="data set root (default for synth: generated under OUT/data)")
    p.add_argument("--out", default="runs/uasan", help="run folder (default runs/uasan)")
    p.add_argument("--variant", choices=VARIANTS, help="ablation variant (default: the config's, full)")
    p.add_argument("--ablation", action="store_true", help="train A, B, C and full on the same data; one table")
    p.add_argument(
        "--stage",
        type=int,
        choices=(0, 1, 2),
        help="run only stage 0 (bridge pretraining, synthetic world), 1 (bridge adaptation) or 2 (relations); "
        "a later stage reuses OUT/stage0/bridge.pt, OUT/stage1/bridge.pt",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoints (same config)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in OUT (its files are deleted first)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (transformers' included)")
    p.add_argument(
        "--skip-eval",
        action="store_true",
        help="train and save OUT/model.pt; no test-set prediction, evaluation or baselines (validation still runs)",
    )
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

            # without a terminal the world's bar would show nothing: a start and a finish line instead
            with phase(f"uasan.train: generating the synthetic world in {root} (1-2 minutes)", enabled=progress):
                synth.generate(root, **world_arguments(cfg), progress=progress and is_terminal())
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
    model: torch.nn.Module, batch: Any, objects: list[str], predicates: list[str], gt_feats: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Stage-2 losses of a SegmentBatch (or a BatchWithGroundTruth: its ground-truth features feed L_dis)."""
    if hasattr(batch, "gt_features"):
        batch, gt_feats = batch.batch, batch.gt_features
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
        gt_feats=gt_feats,
    )


# ---------------------------------------------------------------------------------------------------------------
# stages 1 and 2
# ---------------------------------------------------------------------------------------------------------------


def make_trainer(
    model, params, loader, loss_fn, *, epochs, cfg, out_dir, eval_fn, progress, items, device, name
) -> Trainer:
    """The Trainer of stages 1 and 2 with ``optim``'s optimizer (Adam: the paper's) and schedule; ``name`` (e.g.
    "stage 1") is printed in its epoch lines."""
    o = cfg.optim
    params = [p for p in params if p.requires_grad]
    if o.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=o.lr)
    else:
        opt = build_optimizer(params, lr=o.lr, weight_decay=o.weight_decay)
    total = max(1, epochs * len(loader))
    sched = warmup_cosine_schedule(opt, min(o.warmup_steps, total // 2), total) if o.schedule != "constant" else None
    hooks = default_hooks(
        eval_fn=eval_fn,
        eval_every=cfg.train.eval_every_epoch,
        log_every=cfg.train.log_every,
        items_fn=items,
        items_name="pairs" if items is not None else "batches",
        progress=progress,
        name=name,
    )
    return Trainer(
        model,
        opt,
        loader,
        loss_fn,
        max_epochs=epochs,
        scheduler=sched,
        hooks=hooks,
        grad_clip=o.grad_clip,
        amp_bf16=cfg.train.amp_bf16 and device.type == "cuda",
        out_dir=out_dir,
        device=device,
        save_frozen=False,  # the frozen pretrained bridge is in the packaged MiniLM / stage0 / the BLIP-2 folder
    )


def train_stage1(model, cfg: TrainConfig, dataset, out: Path, resume: bool, progress: bool, device, eval_fn) -> None:
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
    # the relation part is trainable but unused in stage 1
    ddp = dist.wrap_ddp(model, find_unused_parameters=True) if dist.is_distributed() else model
    trainer = make_trainer(
        ddp, model.bridge_parameters(), loader, lambda m, b: stage1_loss(m, b, names),
        epochs=cfg.optim.epochs_stage1, cfg=cfg, out_dir=out / "stage1", eval_fn=eval_fn, progress=progress,
        items=None, device=device, name="stage 1",
    )  # fmt: skip
    if resume:
        trainer.resume(out / "stage1", missing_ok=True)
    trainer.train()


def train_stage2(
    model, cfg: TrainConfig, dataset, out: Path, resume: bool, progress: bool, device, eval_fn, name: str = "stage 2"
) -> None:
    from uasan.data.paired import collate_with_ground_truth

    vocab = dataset.det.vocab
    objects = list(vocab.objects[: vocab.num_base_objects])
    predicates = list(vocab.predicates[: vocab.num_base_predicates])
    loader = build_dataloader(
        dataset,
        cfg.data.batch_segments,
        shuffle=True,
        seed=cfg.train.seed + 1,
        collate_fn=collate_with_ground_truth,
        num_workers=cfg.data.num_workers,
    )
    model.freeze_bridge()
    ddp = dist.wrap_ddp(model, find_unused_parameters=True) if dist.is_distributed() else model
    trainer = make_trainer(
        ddp, model.relation_parameters(), loader, lambda m, b: stage2_loss(m, b, objects, predicates),
        epochs=cfg.optim.epochs_stage2, cfg=cfg, out_dir=out / "stage2", eval_fn=eval_fn, progress=progress,
        items=lambda b: b.batch.num_pairs, device=device, name=name,
    )  # fmt: skip
    if resume:
        trainer.resume(out / "stage2", missing_ok=True)
    trainer.train()


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
    overwrite: bool = False,
) -> dict[str, Any] | None:
    """Train (and evaluate) in ``out``. Nothing is written before the run folder, the config (on resume), the
    inputs and a reused earlier stage are checked; a problem with any of them is a ``ValueError``."""
    check_bridge_source(cfg)
    dist.init_distributed()
    try:
        return _run(cfg, out, stage, resume, progress, variants, evaluate, overwrite)
    finally:
        dist.cleanup_distributed()


def _run(cfg, out, stage, resume, progress, variants, evaluate, overwrite) -> dict[str, Any] | None:
    from uasan import predict as P
    from uasan import pretrain
    from uasan.data import SegmentDataset, load_groundtruth
    from uasan.data.checks import check_inputs
    from uasan.data.paired import WithGroundTruth
    from uasan.models import UASAN

    device = resolve_device(cfg.train.device)
    needs_stage0 = cfg.model.bridge_path is None
    if stage == 0 and not needs_stage0:
        raise ValueError("--stage 0: model.bridge_path is a pretrained bridge (the BLIP-2 checkpoint is stage 0)")
    to_clear = check_run_folder(cfg, out, stage=stage, resume=resume, overwrite=overwrite)
    if out / "data" in to_clear and dist.is_main_process():  # a stale world of another seed: regenerated below
        clear_entries([out / "data"])
        to_clear.remove(out / "data")
    dist.barrier()
    root = prepare_data(cfg, out, progress)
    validate = cfg.train.eval_every_epoch > 0 and stage != 0
    reads: dict[str, tuple[str, ...]] = {"train": ("SGDet",) if stage in (0, 1) else ("SGDet", "PredCls")}
    if validate:
        reads["val"] = ("SGDet", "PredCls")
    if stage in (None, 2) and evaluate:
        reads["test"] = P.MODES
    with phase("uasan.train: checking the inputs", enabled=progress and dist.is_main_process()):
        report = check_inputs(
            root, reads, progress=progress and dist.is_main_process() and is_terminal(),
            dataset_options=cfg.data.dataset_options(),
        )  # fmt: skip
    if dist.is_main_process():
        for line in report.warnings:
            print(f"uasan.train: warning: {line}", file=sys.stderr)
        if progress:
            for line in report.notes:
                print(f"uasan.train: {line}", file=sys.stderr)
    if report.feature_shape is None:
        raise ValueError(f"data.root: {root} has no training segments with proposals")
    visual_dim = int(report.feature_shape[-1])
    opts = cfg.data.dataset_options()
    train_set = SegmentDataset(root, "train", mode="SGDet", **opts)
    split, vocab = train_set.split, train_set.vocab
    base = P.model_spec(cfg, visual_dim)
    stage0_file, bridge_file = out / "stage0" / "bridge.pt", out / "stage1" / "bridge.pt"
    if needs_stage0 and stage == 1 and not stage0_file.is_file():
        raise ValueError(f"--stage 1: no stage-0 bridge at {stage0_file}; run --stage 0 first")
    if stage == 2 and not bridge_file.is_file():
        raise ValueError(f"--stage 2: no stage-1 bridge at {bridge_file}; run stage 1 first")
    corpus = None
    if needs_stage0 and stage in (None, 0) and not (resume and stage0_file.is_file()):
        corpus = pretrain.read_world_corpus(root, visual_dim)  # checked before anything is written
    stage0_state = pretrain.read_stage0_bridge(stage0_file, base) if stage == 1 and needs_stage0 else None
    reuse_bridge = stage == 2 or (resume and bridge_file.is_file())
    bridge_state = read_bridge(bridge_file, base) if reuse_bridge else None
    groundtruth = load_groundtruth(root, "test") if "test" in reads else None  # read once, checked up front

    # everything is checked: from here on the run writes
    if dist.is_main_process():
        clear_entries(to_clear)
        dump_config(cfg, out / "config.yaml")
    dist.barrier()
    stage1_fn, stage2_fn = validation_fns(root, vocab, cfg, split, device) if validate else (None, None)

    # stage 0: the bridge's pretraining (synthetic world), shared by every variant
    if needs_stage0 and stage in (None, 0) and bridge_state is None:
        if corpus is not None:
            pretrain.train_stage0(cfg, base, corpus, out / "stage0", resume=resume, progress=progress, device=device)
        if stage == 0:
            return None
        stage0_state = pretrain.read_stage0_bridge(stage0_file, base)

    # stage 1, shared by every variant of an ablation: the same seed and model for every variant, so that it does
    # not depend on which variants run (the full row of an ablation equals a plain run)
    if bridge_state is None:
        seed_everything(cfg.train.seed)
        model = UASAN(base).to(device)
        if stage0_state is not None:  # the stage-0 bridge is the pretrained checkpoint: frozen, with LoRA
            model.bridge.load_base_state(stage0_state, str(stage0_file))
        seed_everything(cfg.train.seed)  # stage 1's random draws do not depend on the model's relation part
        train_stage1(model, cfg, train_set, out, resume, progress, device, stage1_fn)
        if dist.is_main_process():
            P.save_model(model, cfg, split, bridge_file, kind=P.STAGE1_KIND)
        dist.barrier()
        del model
        if stage == 1:
            return None
        bridge_state = read_bridge(bridge_file, base)

    stage2_set = WithGroundTruth(train_set, SegmentDataset(root, "train", mode="PredCls", labels=False, **opts))
    results: dict[str, Any] = {}
    baselines: dict[str, Any] | None = None
    for variant in variants:
        vout = out if len(variants) == 1 else out / f"variant_{variant}"
        seed_everything(cfg.train.seed)
        model = UASAN(replace(base, variant=variant)).to(device)
        missing = [k for k in model.state_dict() if (k.startswith("bridge.") or k == "background")]
        missing = [k for k in missing if k not in bridge_state]
        if missing:
            raise ValueError(f"--stage 2 / --resume: {bridge_file}: field 'state_dict' lacks {missing[:3]}")
        P.load_state(model, bridge_state, bridge_file, "the stage-1 bridge", strict=False)
        name = "stage 2" if len(variants) == 1 else f"stage 2 ({variant})"
        train_stage2(model, cfg, stage2_set, vout, resume, progress, device, stage2_fn, name)
        if not dist.is_main_process():
            continue
        model.eval()
        P.save_model(model, cfg, split, vout / "model.pt")
        if not evaluate:
            continue
        metrics = P.run_evaluation(
            P.model_scorer(model, vocab), root, vocab, cfg, split, device=device, pred_dir=vout / "predictions",
            progress=progress, groundtruth=groundtruth, label="UASAN" if len(variants) == 1 else f"UASAN ({variant})",
        )  # fmt: skip
        if baselines is None:  # the same for every variant
            from uasan.baselines import run_baselines

            baselines = run_baselines(
                cfg, base, root, vocab, split, groundtruth, stage0_file=stage0_file if needs_stage0 else None,
                device=device, progress=progress,
            )  # fmt: skip
        metrics["baselines"] = baselines
        metrics["random_baseline"] = baselines["random"]  # the earlier releases' key, kept for their readers
        metrics["data"] = data_record(root)  # the root, and for a generated world its seed, sizes, text encoder
        # UASAN minus each baseline, paired over the test videos; the per-video numbers go to their own file
        metrics["comparisons"] = {b: compare_runs(metrics["per_video"], m["per_video"]) for b, m in baselines.items()}
        P.write_json(
            vout / "per_video.json",
            {"UASAN": metrics["per_video"], **{b: m["per_video"] for b, m in baselines.items()}},
        )
        P.write_json(vout / "metrics.json", strip_per_video(metrics))
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
    return results


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The run summary: novel PredCls R@50 and novel trajectory R@5 of UASAN and of every baseline."""
    lines = []
    for v, m in results.items():
        rows = [("UASAN", m)] + list(m.get("baselines", {}).items())
        cells = [
            f"{who} R@50 {pct(r['PredCls']['novel']['R@50'])} / traj R@5 {pct(r['trajectory']['novel']['R@5'])}"
            for who, r in rows
        ]
        lines.append(f"[{v}] novel PredCls R@50 / novel trajectory R@5: " + "; ".join(cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_intermixed_args(argv)
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.variant:
        overrides.append(f"model.variant={args.variant}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.quiet:
        from uasan.predict import quiet_libraries

        quiet_libraries()
    out = Path(args.out)
    main_process = int(os.environ.get("RANK", "0")) == 0  # run() has left the process group when it returns
    try:
        with sigterm_as_interrupt():  # SIGTERM (kill, a scheduler's limit) stops the run as Ctrl-C does
            cfg = load_config(TrainConfig, args.config, overrides)
            configure_threads(cfg.train.num_threads)
            variants = VARIANTS if args.ablation else (cfg.model.variant,)
            results = run(
                cfg,
                out,
                stage=args.stage,
                resume=args.resume,
                overwrite=args.overwrite,
                progress=not args.quiet,
                variants=variants,
                evaluate=not args.skip_eval,
            )
    except (ValueError, FileNotFoundError) as exc:
        print(f"uasan.train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (uasan._interrupt.Terminated)
        if main_process:
            print("\n" + interrupted_message(exc, out, argv, world_size_from_env()), file=sys.stderr, flush=True)
        return exit_status(exc)
    if not main_process:
        return 0
    if args.stage in (0, 1):
        print(f"bridge: {out / f'stage{args.stage}' / 'bridge.pt'}")
    elif not results:
        print(f"model: {out / 'model.pt'}" if len(variants) == 1 else f"models: {out}/variant_*/model.pt")
    else:
        for line in summary_lines(results):
            print(line)
        print(f"metrics: {out / 'metrics.md'}" if len(variants) == 1 else f"ablation: {out / 'ablation.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
