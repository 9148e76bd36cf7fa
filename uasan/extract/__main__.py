"""``python -m uasan.extract {detect,tracklets,features,all}``: from raw videos to UASAN's inputs.

    python -m uasan.extract detect    --root ROOT --detector DET_DIR        # frames → OUT/detections/<vid>.json
    python -m uasan.extract tracklets --root ROOT                           # detections → OUT/proposals/...
    python -m uasan.extract features  --root ROOT --vision BLIP2_DIR        # proposals (+ ground truth) → features
    python -m uasan.extract all       --root ROOT --vision BLIP2_DIR [--detector DET_DIR]

ROOT is a VidVRD / VidOR data root (annotations as published); videos are found under ``--videos`` (default
``ROOT/videos`` or ``ROOT/video``, searched recursively, file name = video id); outputs go to ``--out`` (default
ROOT) in the layout ``python -m uasan.train --data-root`` reads. ``--shard I/N`` (or RANK / WORLD_SIZE under
torchrun) runs one of N disjoint parts. Exit status: 0 when every video succeeded, 1 when some failed (listed at
the end), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uasan.extract.layout import Layout, list_videos, parse_shard, select_shard, shard_from_env

STEPS = ("detect", "tracklets", "features", "all")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, help="data set root with the annotations (VidVRD or VidOR layout)")
    common.add_argument("--out", help="output data root (default: ROOT)")
    common.add_argument("--subsets", nargs="+", help="subsets to process (default: all, e.g. train test)")
    common.add_argument("--shard", help="I/N: process the I-th of N disjoint parts (default: RANK/WORLD_SIZE or 0/1)")
    common.add_argument("--overwrite", action="store_true", help="recompute outputs that exist (default: skip them)")
    common.add_argument("--quiet", action="store_true", help="no progress bar")

    videos = argparse.ArgumentParser(add_help=False)
    videos.add_argument("--videos", help="video folder, searched recursively (default ROOT/videos or ROOT/video)")
    videos.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default; LOCAL_RANK's GPU)")

    det = argparse.ArgumentParser(add_help=False)
    det.add_argument("--detections", help="detections folder (default OUT/detections)")

    detector = argparse.ArgumentParser(add_help=False)
    detector.add_argument("--det-threshold", type=float, default=0.5, help="detector score threshold (default 0.5)")
    detector.add_argument("--det-max", type=int, default=100, help="most detections kept per frame (default 100)")
    detector.add_argument("--det-batch", type=int, default=8, help="frames per detector batch (default 8)")

    track = argparse.ArgumentParser(add_help=False)
    track.add_argument("--link-iou", type=float, default=0.5, help="Seq-NMS link IoU (default 0.5)")
    track.add_argument("--suppress-iou", type=float, default=0.3, help="Seq-NMS suppression IoU (default 0.3)")
    track.add_argument("--class-aware", action="store_true", help="link only boxes with equal labels")
    track.add_argument("--rescore", choices=("none", "avg", "max"), default="none", help="track score (default none)")
    track.add_argument("--min-length", type=int, default=15, help="fewest boxes a tracklet keeps (default 15)")
    track.add_argument("--min-size", type=float, default=5.0, help="smallest max width and height (default 5)")
    track.add_argument("--max-tracklets", type=int, help="most tracklets per segment (default: all)")

    feat = argparse.ArgumentParser(add_help=False)
    feat.add_argument("--vision", required=True, help="vision tower checkpoint folder: BLIP-2 (EVA ViT-g) or CLIP")
    feat.add_argument("--frames", type=int, default=8, help="sampled frames per trajectory / pair (default 8)")
    feat.add_argument("--tokens", action="store_true", help="keep (S, D) tokens per row instead of a (D,) vector")
    feat.add_argument("--pool", choices=("pooler", "cls", "mean"), default="pooler", help="vector per crop")
    feat.add_argument(
        "--gt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also ground-truth trajectories → gt_proposals, gt_features, gt_union_features (default)",
    )
    feat.add_argument("--batch-size", type=int, default=64, help="crops per tower batch (default 64)")
    feat.add_argument("--workers", type=int, default=2, help="image-processor threads (default 2; 0: inline)")
    feat.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored feature dtype")

    p = argparse.ArgumentParser(
        prog="python -m uasan.extract",
        description="From raw videos to UASAN's inputs: detections → Seq-NMS tracklets → trajectory and "
        "union-region features, in the data-root layout python -m uasan.train reads.",
    )
    sub = p.add_subparsers(dest="step", required=True)
    d = sub.add_parser("detect", parents=[common, videos, det, detector], help="run an object detector on the frames")
    d.add_argument("--detector", required=True, help="AutoModelForObjectDetection checkpoint folder (with processor)")
    sub.add_parser("tracklets", parents=[common, det, track], help="detections → Seq-NMS tracklets (proposals)")
    sub.add_parser("features", parents=[common, videos, feat], help="trajectory and union-region features")
    a = sub.add_parser("all", parents=[common, videos, det, detector, track, feat], help="the steps in order")
    a.add_argument("--detector", help="run this detector first (default: use the existing detections files)")
    return p


def _videos(args: argparse.Namespace, root: Path) -> dict[str, Path]:
    from uasan.extract.video import find_videos

    if args.videos:
        return find_videos(args.videos)
    for name in ("videos", "video"):
        if (root / name).is_dir():
            return find_videos(root / name)
    raise ValueError(f"--videos: no video folder given and neither {root / 'videos'} nor {root / 'video'} exists")


#: The keywords of ``segment_tracklets`` the CLI sets, each from the flag of the same name.
_TRACKLET_OPTIONS = ("link_iou", "suppress_iou", "class_aware", "rescore", "min_length", "min_size", "max_tracklets")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, ImportError) as exc:
        print(f"uasan.extract: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from uasan.extract import pipeline

    root = Path(args.root)
    out = Path(args.out) if args.out else root
    layout = Layout(out)
    index, count = parse_shard(args.shard) if args.shard else shard_from_env()
    items = select_shard(list_videos(root, args.subsets), index, count)
    det_dir = Path(args.detections) if getattr(args, "detections", None) else layout.detections
    if count > 1 and not args.quiet:
        print(f"uasan.extract: shard {index}/{count}: {len(items)} videos", file=sys.stderr)
    summaries = []
    step = args.step

    if step == "detect" or (step == "all" and args.detector):
        from uasan.extract.towers import load_detector

        detector = load_detector(args.detector, args.device, args.det_threshold, args.det_max)
        s = pipeline.run_detect(
            items,
            _videos(args, root),
            detector,
            det_dir,
            batch_size=args.det_batch,
            overwrite=args.overwrite,
            quiet=args.quiet,
        )
        summaries.append(s)
        items = [it for it in items if it.vid not in s.failed]
    if step in ("tracklets", "all"):
        tracking = {k: getattr(args, k) for k in _TRACKLET_OPTIONS}
        s = pipeline.run_tracklets(items, layout, det_dir, overwrite=args.overwrite, quiet=args.quiet, **tracking)
        summaries.append(s)
        items = [it for it in items if it.vid not in s.failed]
    if step in ("features", "all"):
        from uasan.extract.features import FeatureEngine
        from uasan.extract.towers import load_vision_tower

        videos = _videos(args, root)
        tower = load_vision_tower(args.vision, args.device, args.pool)
        engine = FeatureEngine(
            tower, frames=args.frames, batch_size=args.batch_size, tokens=args.tokens, workers=args.workers
        )
        summaries.append(
            pipeline.run_features(
                items, layout, videos, engine, gt=args.gt, dtype=args.dtype, overwrite=args.overwrite, quiet=args.quiet
            )
        )
    for s in summaries:
        print(s.report())
    return 1 if any(s.failed for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
