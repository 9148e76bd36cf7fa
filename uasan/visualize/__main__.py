"""``python -m uasan.visualize``: pictures of one video's ground truth and predictions, flagged by the official
matching.

    python -m uasan.visualize --data-root ROOT --predictions PRED.json --video VID --out OUT.png|OUT.html|OUT.mp4
        [--video-file PATH] [--split novel|all|base] [--top K] [--what summary|timeline|keyframes|graph]
        [--segment I | --graphs N] [--frames N] [--split-file SPLIT.json]

``OUT.png``: ``--what`` picks the timeline, the key-frame strip, the segment graphs or all three (``summary``,
default). ``OUT.html``: a report with every picture, the video's official metrics and tables, its assets in
``OUT_files/``, plus the MP4 overlay when ``--video-file`` is given. ``OUT.mp4``: the video with boxes and active
triplets drawn on every frame (needs ``--video-file``). Bad input: one line naming the argument, exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from uasan.evaluation.protocol import SPLITS


def plain(text: str) -> str:
    """Docstring text without its reStructuredText markup (``code``, :func:`name`), for the terminal."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text).replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    from uasan.visualize.report import WHATS

    paragraphs = __doc__.split("\n\n")
    p = argparse.ArgumentParser(prog="python -m uasan.visualize", description=plain(paragraphs[0]),
                                epilog=plain(paragraphs[2]))  # fmt: skip
    p.add_argument("--data-root", required=True, help="data set root (annotations, splits.json)")
    p.add_argument("--predictions", required=True, help="prediction JSON in the official format")
    p.add_argument("--video", required=True, help="video id")
    p.add_argument("--out", required=True, help="OUT.png, OUT.html (assets in OUT_files/) or OUT.mp4")
    p.add_argument("--video-file", help="the video (read with PyAV) for key frames and the overlay")
    p.add_argument("--split", choices=SPLITS, default="all", help="ground truth filter (default all)")
    p.add_argument("--split-file", help="category split JSON (default ROOT/splits.json or the bundled one)")
    p.add_argument("--top", type=int, default=50, help="predictions considered, as R@K does (default 50)")
    p.add_argument("--what", choices=WHATS, default="summary", help="PNG content (default summary: all three)")
    p.add_argument("--segment", type=int, help="segment index for the graph (default: the top segments)")
    p.add_argument("--graphs", type=int, default=4, help="number of top segments drawn as graphs (default 4)")
    p.add_argument("--frames", type=int, default=6, help="key frames in the strip (default 6)")
    p.add_argument("--viou-threshold", type=float, default=0.5, help="matching threshold (default 0.5)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from uasan.visualize.report import render
    from uasan.visualize.view import load_view, plural

    try:
        view = load_view(
            args.data_root,
            args.predictions,
            args.video,
            split=args.split,
            top_k=args.top,
            split_file=args.split_file,
            viou_threshold=args.viou_threshold,
        )
        kwargs = {"video_file": args.video_file, "what": args.what}
        if not args.out.lower().endswith(".mp4"):
            kwargs.update(frames=args.frames, segment=args.segment, graphs=args.graphs)
        result = render(view, args.out, **kwargs)
    except ValueError as exc:
        print(f"uasan.visualize: error: {exc}", file=sys.stderr)
        return 2
    gt, hits, preds = len(view.groundtruth), view.hits(), len(view.predictions)
    print(f"{view.video_id}: {plural(gt, 'ground-truth relation')} ({view.split}), {plural(hits, 'hit')} in the top "
          f"{view.top_k} of {plural(preds, 'prediction')}")  # fmt: skip
    for f in result.files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
