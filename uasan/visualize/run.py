"""The picture ``python -m uasan.train`` leaves in its run folder: the summary PNG of the first test video."""

from __future__ import annotations

import os
from pathlib import Path

from uasan.data import annotation_paths


def run_picture(
    run_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    mode: str = "PredCls",
    split: str = "novel",
    top_k: int = 20,
) -> Path:
    """Writes ``RUN/visualize/<vid>.png`` (timeline, key frames, segment graphs) for the first test video, from
    ``RUN/predictions/<mode>_<split>.json`` with the ground truth filtered to ``split`` and the top ``top_k``
    predictions (20: a picture to read; the command line's default is R@50's 50); returns its path."""
    from uasan.visualize.report import render_png
    from uasan.visualize.view import load_view

    run_dir = Path(run_dir)
    vid = next(iter(annotation_paths(data_root, "test")))
    view = load_view(data_root, run_dir / "predictions" / f"{mode}_{split}.json", vid, split=split, top_k=top_k)
    return render_png(view, run_dir / "visualize" / f"{vid}.png").files[0]
