"""Flat per-segment folders (RePro's VidVRD release, UASAN's release): ``<folder>/<vid>-<fs:04d>-<fe:04d>.<ext>``.

One folder holds the segments of many videos and subsets (RePro's detection folder holds all 1,000 VidVRD
videos, train and test); the subset's videos are picked by the video id in the file name, as RePro's
``prepare_segment_tags`` does (``dataloaders/dataset_vidvrd_v2.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uasan.data.layouts.base import Layout, SegmentKey, first_file
from uasan.data.proposals import Proposals, read_proposals
from uasan.data.segments import parse_segment_tag


class FlatLayout(Layout):
    """Segments from ``<proposal folder>/<tag>.json``; features ``<feature folder>/<tag>.npy|.pkl``."""

    feature_suffix = ".npy"  # what marks this layout's feature folders in auto-detection

    @classmethod
    def probe(cls, root: Path, dataset: str, explicit: Mapping[str, tuple[Path, ...]]) -> str | None:
        if dataset not in cls.datasets:
            return None
        props = next((d for k in ("proposals", "gt_proposals") for d in cls._candidates(root, dataset, k, explicit)
                      if _flat_tag_json(d)), None)  # fmt: skip
        if props is None:
            return None
        for kind in ("features", "gt_features"):
            for d in cls._candidates(root, dataset, kind, explicit):
                name = first_file(d, (".npy", ".pkl"))
                if name is not None:
                    if name.endswith(cls.feature_suffix):
                        return f"{props}/<tag>.json with {d}/<tag>{cls.feature_suffix} ({cls.name} layout)"
                    return None
        return None

    @classmethod
    def _candidates(
        cls, root: Path, dataset: str, kind: str, explicit: Mapping[str, tuple[Path, ...]]
    ) -> tuple[Path, ...]:
        return explicit.get(kind) or cls.default_folders(root, dataset, kind)

    def key(self, vid: str, fs: int, fe: int) -> str:
        return self._index()[(vid, fs, fe)].name[:-5]

    def segments(self) -> list[SegmentKey]:
        return sorted(self._index())

    def _index(self) -> dict[SegmentKey, Path]:
        """``{(vid, fs, fe): proposal file}`` of the subset's videos (built once)."""
        if getattr(self, "_where", None) is not None:
            return self._where
        where: dict[SegmentKey, Path] = {}
        for folder in self.folders["proposals"]:
            with os.scandir(folder) as it:
                names = [e.name for e in it if e.name.endswith(".json")]
            for name in names:
                stem = name[:-5]
                try:
                    seg = parse_segment_tag(stem)
                except ValueError as exc:
                    raise ValueError(f"{folder / name}: {exc} (data.{self.kinds['proposals']})") from None
                if seg[0] not in self.videos.videos:
                    continue  # another subset's video (or one without annotation)
                if seg in where:
                    raise ValueError(
                        f"{folder / name}: segment {stem} is also in {where[seg]}; data.{self.kinds['proposals']} "
                        "lists two folders with the same segments"
                    )
                where[seg] = folder / name
        self._where = where
        return where

    def proposal_file(self, vid: str, fs: int, fe: int) -> Path:
        return self._index()[(vid, fs, fe)]

    def feature_file(self, vid: str, fs: int, fe: int) -> Path:
        return self.find_segment_file("features", self.key(vid, fs, fe))

    def read_proposals(self, vid: str, fs: int, fe: int, **kwargs: Any) -> Proposals:
        return read_proposals(self.proposal_file(vid, fs, fe), **kwargs)


def _flat_tag_json(folder: Path) -> bool:
    """True when ``folder`` holds per-segment ``<vid>-<fs>-<fe>.json`` files directly."""
    name = first_file(folder, (".json",))
    if name is None:
        return False
    try:
        parse_segment_tag(name[:-5])
    except ValueError:
        return False
    return True
