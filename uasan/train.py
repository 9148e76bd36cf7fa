"""``python -m uasan.train``: train UASAN (stage 1: bridge trajectory classification; stage 2: relations).

The command line is fixed here so that scripts can be written against it; the trainer itself arrives with the
model (see README, "Status"). Until then a run stops with a clear message and exit code 2 instead of
pretending to train.
"""

from __future__ import annotations

import argparse
import sys

VARIANTS = ("A", "B", "C", "full")
CONFIGS = ("synth", "vidvrd", "vidor")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m uasan.train",
        description="Train UASAN for open-vocabulary video scene graph generation. With no arguments it trains on "
        "the built-in synthetic world and writes OUT/metrics.json, OUT/metrics.md and OUT/curves.png.",
    )
    p.add_argument("--config", default="synth", help=f"built-in config name {CONFIGS} or a YAML path (default: synth)")
    p.add_argument("--data-root", help="data set root (default for synth: generated under OUT/data)")
    p.add_argument("--out", default="runs/uasan", help="run folder for checkpoints, predictions and metrics")
    p.add_argument("--variant", choices=VARIANTS, default="full", help="ablation variant (default: full)")
    p.add_argument("--ablation", action="store_true", help="train A, B, C and full on the same data; one table")
    p.add_argument("--stage", type=int, choices=(1, 2), help="run only stage 1 (bridge) or stage 2 (relations)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoint")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.epochs=3")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for item in args.overrides:
        if "=" not in item or item.startswith("="):
            print(f"uasan.train: override {item!r} is not of the form key.sub=value", file=sys.stderr)
            return 2
    print(
        "uasan.train: the UASAN model and trainer are not part of this version yet; the command line above is "
        "final. Available now: uasan.ops (C++ video-geometry ops). See README, 'Status'.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
