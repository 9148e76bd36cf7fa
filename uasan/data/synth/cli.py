"""``python -m uasan.data.synth --out DIR [--videos N] [--seed S] [--size small] [--visual-dim 1408] ...``."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence

from uasan.data.synth.corpus import CorpusConfig
from uasan.data.synth.features import FeatureConfig
from uasan.data.synth.scene import SIZES
from uasan.data.synth.writer import generate

__all__ = ["main"]

log = logging.getLogger("uasan.data.synth")


def main(argv: Sequence[str] | None = None) -> int:
    """Writes a synthetic world (see :mod:`uasan.data.synth`); returns 0."""
    ap = argparse.ArgumentParser(
        prog="python -m uasan.data.synth",
        description="Write the synthetic VidVRD-like world (annotations, proposals, features of train / val / test, "
        "and the pretraining corpus) in the on-disk formats of the real data sets.",
    )
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--videos", type=int, default=None, help="total videos (train:val:test = 5:1:2); default: preset")
    for name in ("train", "val", "test"):
        ap.add_argument(f"--{name}-videos", type=int, default=None, help=f"videos of the {name} subset (default: as "
                        "--videos / --size give)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--tokens", type=int, default=4, help="feature tokens S per trajectory / pair / corpus item")
    ap.add_argument("--text-encoder", choices=("auto", "minilm", "hash"), default="auto")
    ap.add_argument("--visual-dim", type=int, default=FeatureConfig.visual_dim, help="D_v of the vision encoder")
    ap.add_argument("--no-pretrain", action="store_true", help="do not write the pretraining corpus")
    ap.add_argument("--distractors", type=int, default=None, help="distractor words in the corpus (default: preset)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    corpus = CorpusConfig(distractors=args.distractors) if args.distractors is not None else None
    root = generate(
        args.out, args.videos, args.seed, args.size, tokens=args.tokens, text_encoder=args.text_encoder,
        progress=not args.quiet, visual_dim=args.visual_dim, pretrain=corpus, write_pretrain=not args.no_pretrain,
        subsets={n: v for n in ("train", "val", "test") if (v := getattr(args, f"{n}_videos")) is not None},
    )  # fmt: skip
    with open(root / "meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    items = meta["pretrain"]["items"] if meta["pretrain"] else 0
    log.info("wrote %s in %.1f s (videos %s, corpus items %d, text encoder: %s)", root, time.perf_counter() - t0,
             meta["videos"], items, meta["text_encoder"]["name"])  # fmt: skip
    return 0
