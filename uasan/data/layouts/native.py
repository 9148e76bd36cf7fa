"""The ``uasan`` layout: this package's own tree (what the synthetic world and ``uasan.extract`` write)::

    <proposals>/<subset>/<vid>/<vid>-<fs:04d>-<fe:04d>.json     a list of {fstart, score, bboxes, label}
    <features>/<subset>/<vid>/<tag>.npy (or .pkl)               (n, D) or (n, S, D), one row per list entry
    <union_features>/<subset>/<vid>/<tag>.npy                   (n(n-1), [S,] D), ordered pairs row-major
    gt_proposals / gt_features / gt_union_features              the same for ground-truth trajectories
                                                                ({..., class, tid} entries)

``<subset>`` is the annotation folder of the video (``train``/``test``/``val``, VidOR ``training``/``validation``;
held-out validation videos stay in the training folder). Defaults: ``ROOT/<kind>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uasan.data.annotations import SUBSETS, VAL
from uasan.data.layouts.base import Layout, SegmentKey
from uasan.data.proposals import Proposals, read_proposals
from uasan.data.segments import parse_segment_tag, segment_tag


class UasanLayout(Layout):
    name = "uasan"

    @classmethod
    def default_folders(cls, root: Path, dataset: str, kind: str) -> tuple[Path, ...]:
        return (Path(root) / kind,)

    @classmethod
    def probe(cls, root: Path, dataset: str, explicit: Mapping[str, tuple[Path, ...]]) -> str | None:
        subsets = (*SUBSETS[dataset], VAL)
        for kind in ("proposals", "gt_proposals"):
            for d in explicit.get(kind) or cls.default_folders(root, dataset, kind):
                hit = next((s for s in subsets if (d / s).is_dir()), None)
                if hit:
                    return f"{d / hit}/<vid>/<tag>.json (uasan layout)"
        return None

    def check(self) -> None:
        if not any((f / self.videos.folder).is_dir() for f in self.folders["proposals"]):
            kind = self.kinds["proposals"]
            where = self.folders["proposals"][0] / self.videos.folder
            raise ValueError(
                f"{where}: proposal directory does not exist; {self.mode} expects "
                f"<data.{kind}>/{self.videos.folder}/<vid>/<vid>-<fstart:04d>-<fend:04d>.json"
            )

    def key(self, vid: str, fs: int, fe: int) -> str:
        return segment_tag(vid, fs, fe)

    def _segment_file(self, role: str, vid: str, fs: int, fe: int, suffixes: tuple[str, ...]) -> Path:
        tag = self.key(vid, fs, fe)
        for folder in self.folders[role]:
            for suffix in suffixes:
                if (p := folder / self.videos.folder / vid / f"{tag}{suffix}").is_file():
                    return p
        first = self.folders[role][0] / self.videos.folder / vid / tag if self.folders[role] else Path(tag)
        raise ValueError(f"{first}{suffixes[0]}: {self.kinds[role]} file does not exist (nor {tag}{suffixes[-1]})")

    def segments(self) -> list[SegmentKey]:
        found: dict[SegmentKey, Path] = {}
        for folder in self.folders["proposals"]:
            for vid in self.videos.videos:
                d = folder / self.videos.folder / vid
                if not d.is_dir():
                    continue
                for name in os.listdir(d):
                    if not name.endswith(".json"):
                        continue
                    try:
                        v, fs, fe = parse_segment_tag(name[:-5])
                    except ValueError as exc:
                        raise ValueError(f"{d / name}: {exc}") from None
                    if v != vid:
                        raise ValueError(f"{d / name}: segment tag names video {v!r} but lies under {vid!r}")
                    found.setdefault((vid, fs, fe), d / name)
        return sorted(found)

    def proposal_file(self, vid: str, fs: int, fe: int) -> Path:
        return self._segment_file("proposals", vid, fs, fe, (".json",))

    def feature_file(self, vid: str, fs: int, fe: int) -> Path:
        return self._segment_file("features", vid, fs, fe, (".npy", ".pkl"))

    def union_file(self, vid: str, fs: int, fe: int) -> Path:
        return self._segment_file("union_features", vid, fs, fe, (".npy", ".pkl"))

    def read_proposals(self, vid: str, fs: int, fe: int, **kwargs: Any) -> Proposals:
        return read_proposals(self.proposal_file(vid, fs, fe), **kwargs)
