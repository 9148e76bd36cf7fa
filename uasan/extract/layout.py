"""Where the extractor reads and writes: the data-root layout of :mod:`uasan.data`, the video list, and shards.

Outputs (``OUT``, default the data root itself), exactly what ``python -m uasan.train --data-root`` reads::

    OUT/detections/<vid>.json                                per-frame detections (detect step, or yours)
    OUT/proposals/<subset>/<vid>/<tag>.json                  Seq-NMS tracklets (tracklets step)
    OUT/features/<subset>/<vid>/<tag>.npy                    (n, D) or (n, S, D)       (features step)
    OUT/union_features/<subset>/<vid>/<tag>.npy              (n(n-1), D) or (n(n-1), S, D)
    OUT/gt_proposals/..., gt_features/..., gt_union_features/...   the same for ground-truth trajectories (--gt)

The videos are the annotated ones of the chosen subsets, in (subset, vid) order; ``--shard I/N`` takes every N-th
starting at I, so shards are disjoint, cover everything, and each writes its own videos' files: the shards'
outputs together are one data root, byte for byte the single run's.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uasan.data import annotation_paths, canonical_subset, detect_dataset
from uasan.data.annotations import SUBSETS, VAL, own_val_folder
from uasan.files import atomic_write

__all__ = ["KINDS", "Layout", "VideoItem", "list_videos", "parse_shard", "save_npy", "select_shard", "shard_from_env"]

KINDS = {"det": ("proposals", "features", "union_features"), "gt": ("gt_proposals", "gt_features", "gt_union_features")}


@dataclass(frozen=True)
class VideoItem:
    """One annotated video of the data root."""

    subset: str
    vid: str
    annotation: Path


@dataclass(frozen=True)
class Layout:
    """Output paths under ``out``."""

    out: Path

    def _path(self, kind: str, which: int, subset: str, vid: str, name: str) -> Path:
        return self.out / KINDS[kind][which] / subset / vid / name

    def proposals(self, kind: str, subset: str, vid: str, tag: str) -> Path:
        return self._path(kind, 0, subset, vid, f"{tag}.json")

    def proposal_dir(self, kind: str, subset: str, vid: str) -> Path:
        return self.out / KINDS[kind][0] / subset / vid

    def features(self, kind: str, subset: str, vid: str, tag: str) -> Path:
        return self._path(kind, 1, subset, vid, f"{tag}.npy")

    def union_features(self, kind: str, subset: str, vid: str, tag: str) -> Path:
        return self._path(kind, 2, subset, vid, f"{tag}.npy")

    @property
    def detections(self) -> Path:
        return self.out / "detections"


def list_videos(root: str | os.PathLike[str], subsets: list[str] | None = None) -> list[VideoItem]:
    """The annotated videos of ``subsets`` (default: every subset of the detected data set), sorted."""
    root = Path(root)
    dataset = detect_dataset(root)
    names = subsets or list(SUBSETS[dataset])
    items = []
    if subsets is None and own_val_folder(root, dataset).is_dir():
        names.append(VAL)  # a root with its own validation annotations (the synthetic world writes ROOT/val)
    for s in dict.fromkeys(canonical_subset(dataset, x) for x in names):
        folder = root / s if dataset == "vidvrd" else root / "annotation" / s
        if not folder.is_dir() and subsets is None:
            continue  # a root with only some subsets annotated
        # every video of the annotation folder: the held-out validation videos of a real data set live in its
        # training folder, and so do their proposals and features (uasan.data.subsets)
        items.extend(VideoItem(s, vid, p) for vid, p in annotation_paths(root, s, dataset, val_fraction=0).items())
    return items


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard: expected I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard: expected 0 <= I < N, got {text!r}")
    return i, n


def shard_from_env() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) under torchrun, else (0, 1)."""
    try:
        n = int(os.environ.get("WORLD_SIZE", "1"))
        i = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ValueError("RANK / WORLD_SIZE: expected integers") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"RANK / WORLD_SIZE: expected 0 <= RANK < WORLD_SIZE, got {i} / {n}")
    return i, n


def select_shard(items: list[VideoItem], index: int, count: int) -> list[VideoItem]:
    """Every ``count``-th video starting at ``index`` (a deterministic, balanced split)."""
    return items[index::count]


def save_npy(path: Path, arr: np.ndarray) -> None:
    """Writes an array as ``.npy``, atomically (same array, same bytes)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))
