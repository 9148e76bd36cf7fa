"""Evaluate a prediction file with the official VidVRD metrics (relation detection mAP / R@50 / R@100 and relation
tagging P@1 / P@5 / P@10), optionally on an open-vocabulary split.

    python -m uasan.evaluate --groundtruth GT.json|DATA_ROOT --predictions PRED.json [--split novel|all|base]
        [--dataset vidvrd|vidor | --split-file SPLIT.json] [--mode SGDet|SGCls|PredCls] [--subset NAME]
        [--check-boxes used|all] [--out metrics.json]

The category split for ``--split`` is ``--split-file``, else ``DATA_ROOT/splits.json`` when there is one, else the
bundled split of ``--dataset`` (default vidvrd).

``--groundtruth`` is a JSON file mapping video id → ground-truth relation instances, or a data set root, whose
test-split ground truth ``uasan.data.load_groundtruth`` builds. ``PRED.json`` is the official prediction format
``{"version": ..., "results": {video: [{triplet, score, duration, sub_traj, obj_traj}]}}``. ``--split`` filters
the ground truth to the split's categories (``uasan.evaluation.filter_groundtruth``); its default is the split the
predictions were scored on when the file records it (``uasan.predict`` and ``uasan.train``'s
``OUT/predictions/<mode>_<split>.json`` do), else ``all`` (no filtering). Evaluate
with the split the predictions were scored on: a mismatch is warned about. ``--mode`` labels the table and the
``--out`` record (default: the mode the file records). A malformed input file gets a one-line message naming the file
and the field or video, exit status 2.

The files are read by ``uasan.evaluation.evaluate_files``' C++ reader straight into columns (no Python object per
box): the whole structure of both files is checked, the box values where the matching compares them
(``--check-boxes all``: every box of the evaluated videos).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from uasan.evaluation.files import read_files
from uasan.evaluation.protocol import MODES, SPLITS, filter_groundtruth, split_categories
from uasan.evaluation.relations import evaluate_relations
from uasan.files import atomic_write_text, check_writable


class InputError(Exception):
    """A bad input file or argument: reported as one line, exit status 2."""


def _load_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _file_message(msg: str, gt_path: str, pred_path: str) -> str:
    """Turns an API message into one naming the file: ``PRED: results['vid'][i] field ...``."""
    for op in ("evaluate_relations", "filter_groundtruth"):
        for arg, path, name in (("prediction", pred_path, "results"), ("groundtruth", gt_path, "")):
            prefix = f"{op}: {arg}"
            if msg.startswith(prefix):
                return f"{path}: {name}{msg[len(prefix) :]}"
    return msg


def _split_file(args: argparse.Namespace) -> dict:
    """The category split: ``--split-file``; else, for a data set root that has one, its ``splits.json`` (the split
    its models were trained with, as ``SegmentDataset`` reads it) unless ``--dataset`` names a bundled one; else the
    bundled split of ``--dataset`` (default vidvrd)."""
    path = args.split_file
    if path is None and args.dataset is None and os.path.isdir(args.groundtruth):
        candidate = os.path.join(args.groundtruth, "splits.json")
        path = candidate if os.path.isfile(candidate) else None
    if path is not None:
        split = _load_json(path, "split")
        if not isinstance(split, dict):
            raise InputError(f"{path}: expected an object with 'objects' and 'predicates'")
        return split
    dataset = args.dataset or "vidvrd"
    try:
        from uasan.data import load_split
    except ImportError as exc:
        raise InputError(
            f"--split {args.split} needs the category split, and uasan.data.load_split is not available ({exc}); "
            "pass --split-file SPLIT.json"
        ) from None
    try:
        return load_split(dataset)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load the {dataset!r} split ({exc})") from None


def format_table(split: str, metrics: dict[str, float]) -> str:
    """The paper's table layout: one row per split, metrics in percent."""
    keys = [k for k in metrics if not k.startswith("per_video")]
    head = f"{'split':<8}" + "".join(f"{k:>8}" for k in keys)
    row = f"{split:<8}" + "".join(f"{100 * metrics[k]:>8.2f}" for k in keys)
    return f"{head}\n{row}"


def write_json_atomic(path: str, data: Any) -> None:
    """Writes ``data`` to a temporary file beside ``path`` and renames it over ``path``."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m uasan.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--groundtruth", required=True, help="ground-truth JSON (video -> relations) or data set root")
    p.add_argument("--predictions", required=True, help="prediction JSON {'version', 'results': {video: [...]}}")
    p.add_argument(
        "--split",
        choices=SPLITS,
        help="open-vocabulary split of the ground truth (default: the split the predictions were scored on, as "
        "uasan.predict and uasan.train record it in the file, else all)",
    )
    p.add_argument(
        "--dataset",
        help="bundled category split for --split (vidvrd, vidor; default: DATA_ROOT/splits.json when --groundtruth "
        "is a data set root that has one, else vidvrd)",
    )
    p.add_argument("--split-file", help="category split JSON instead of the bundled one")
    p.add_argument("--viou-threshold", type=float, default=0.5)
    p.add_argument("--out", help="write the metrics to this JSON file (atomically)")
    p.add_argument("--mode", choices=MODES, help="the setting the predictions were made in (a label of the table)")
    p.add_argument("--subset", help="annotation subset of a data set root (default: VidVRD test, VidOR validation)")
    p.add_argument("--check-boxes", choices=("used", "all"), default="used",
                   help="check the box values the matching compares (default) or every box")  # fmt: skip
    return p


def _read_files(args: argparse.Namespace) -> tuple:
    """(ground truth, predictions) as columns; bad files become InputError naming the file."""
    try:
        gt, pred = read_files(args.groundtruth, args.predictions, args.subset)
    except ValueError as exc:
        msg = str(exc)
        if os.path.isdir(args.groundtruth) and not msg.startswith((str(args.groundtruth), str(args.predictions))):
            raise InputError(f"{args.groundtruth}: cannot build the ground truth ({exc})") from None
        raise InputError(msg) from None
    known = set(gt.videos)
    unknown = [vid for vid in pred.videos if vid not in known]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise InputError(f"{args.predictions}: field 'results' names video {unknown[0]!r}{more}, not in the ground "
                         "truth")  # fmt: skip
    return gt, pred


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    try:
        if args.out:
            try:
                check_writable(args.out, "--out", is_dir=False)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        gt, results = _read_files(args)
        header = getattr(results, "header", {})  # what uasan.predict / uasan.train recorded in the file
        scored = header.get("split")
        if args.split is None:
            args.split = scored if scored in SPLITS else "all"
        elif scored in SPLITS and scored != args.split:
            print(
                f"uasan.evaluate: warning: {args.predictions} scored {scored} predicates (uasan.predict --split "
                f"{scored}); the {args.split} protocol scores {args.split} predicates (uasan.predict --split "
                f"{args.split}), so these numbers are not the {args.split} rows of metrics.md",
                file=sys.stderr,
            )
        if args.mode is None and header.get("mode") in MODES:
            args.mode = header["mode"]
        objects = predicates = None
        if args.split != "all":
            objects, predicates = split_categories(_split_file(args), args.split)
        gt = filter_groundtruth(gt, objects, predicates)
        metrics = evaluate_relations(gt, results, viou_threshold=args.viou_threshold, check_boxes=args.check_boxes)
        n_videos = int((np.diff(gt.video_offsets) > 0).sum())
        mode = f"{args.mode}, " if args.mode else ""
        print(f"Relation detection and tagging, {mode}split {args.split}: {n_videos} videos, {len(gt)} ground-truth "
              "relations")  # fmt: skip
        print(format_table(args.split, metrics))
        if args.out:
            out = {
                "groundtruth": args.groundtruth,
                "predictions": args.predictions,
                "split": args.split,
                "mode": args.mode,
                "viou_threshold": args.viou_threshold,
                "metrics": metrics,
            }
            try:
                write_json_atomic(args.out, out)
            except OSError as exc:
                raise InputError(f"{args.out}: cannot write the metrics ({exc.strerror or exc})") from None
    except (InputError, ValueError) as exc:  # ValueError: the API's checks, which name the video and field
        print(f"uasan.evaluate: error: {_file_message(str(exc), args.groundtruth, args.predictions)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
