"""What every layout provides: the segments of a subset, and per segment the proposals and the aligned features.

A layout is opened for one subset (:class:`~uasan.data.annotations.SubsetVideos`) and one mode. The mode picks the
*kinds* of files it reads, under three *roles*::

    role             SGDet             SGCls / PredCls
    proposals        proposals         gt_proposals
    features         features          gt_features
    union_features   union_features    gt_union_features

Each kind is a tuple of folders (``data.<kind>``: one folder or a list, searched in order; default: the layout's
published folder names under the data root). Whatever the layout, :meth:`Layout.features` returns one row per
trajectory of the :class:`~uasan.data.proposals.Proposals` it is given (after the proposal filter), and
:meth:`Layout.union_features` one row per ordered pair of them, row-major over ``(s, o)``, ``s != o`` — so the
dataset, the collate and the label assignment never see how a layout stores its files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from uasan.data._io import bad_file
from uasan.data.annotations import SubsetVideos
from uasan.data.labels import pair_rows
from uasan.data.proposals import Proposals, read_features

KINDS = ("proposals", "features", "union_features", "gt_proposals", "gt_features", "gt_union_features")
ROLES = ("proposals", "features", "union_features")
MODE_KINDS = {
    "SGDet": ("proposals", "features", "union_features"),
    "SGCls": ("gt_proposals", "gt_features", "gt_union_features"),
    "PredCls": ("gt_proposals", "gt_features", "gt_union_features"),
}
EXTRACT_COMMAND = "python -m uasan.extract features"
FEATURE_SUFFIXES = (".npy", ".pkl")

SegmentKey = tuple[str, int, int]  # (vid, fstart, fend), frames absolute, end exclusive


class Layout:
    """Base class: one published way of storing segment trajectories and their features (see the module docstring).

    Subclasses set ``name`` and ``datasets``, give ``default_folders`` and ``probe``, and implement ``segments``,
    ``proposal_file``, ``read_proposals``, ``feature_file`` and ``union_file`` (``features`` / ``union_features``
    have generic versions that subclasses may refine).
    """

    name: ClassVar[str] = ""
    datasets: ClassVar[tuple[str, ...]] = ("vidvrd", "vidor")

    def __init__(
        self,
        root: Path,
        videos: SubsetVideos,
        mode: str,
        folders: Mapping[str, tuple[Path, ...]],
        *,
        union_segment_mean: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.videos = videos
        self.mode = mode
        self.kinds = dict(zip(ROLES, MODE_KINDS[mode], strict=True))  # role -> config kind, e.g. "gt_features"
        self.folders = {role: tuple(folders.get(role, ())) for role in ROLES}
        self.union_segment_mean = union_segment_mean
        self.options = dict(options or {})

    # -- what a subclass describes ------------------------------------------------------------------------------

    @classmethod
    def default_folders(cls, root: Path, dataset: str, kind: str) -> tuple[Path, ...]:
        """The folders a kind lives in when ``data.<kind>`` is not set (may not exist)."""
        raise NotImplementedError

    @classmethod
    def probe(cls, root: Path, dataset: str, explicit: Mapping[str, tuple[Path, ...]]) -> str | None:
        """A description of what marks ``root`` as this layout, or None (``explicit``: the ``data.<kind>`` folders)."""
        raise NotImplementedError

    def check(self) -> None:
        """Called at start-up after the folders are resolved; raises ``ValueError`` when the subset cannot be read."""

    def check_union(self) -> None:
        """Called at start-up when union features are read; raises ``ValueError`` when they cannot be."""
        if not self.folders["union_features"]:
            kind = self.kinds["union_features"]
            raise ValueError(
                f"data.{kind}: the {self.name} layout has no union features under {self.root} (looked for "
                f"{_names(self.default_folders(self.root, self.videos.dataset, kind))}); extract them with "
                f"`{EXTRACT_COMMAND}` and point data.{kind} at that folder"
            )

    def segments(self) -> list[SegmentKey]:
        """The segments of the subset's videos that have proposals, sorted by (vid, fstart, fend)."""
        raise NotImplementedError

    def key(self, vid: str, fs: int, fe: int) -> str:
        """The name this layout gives the segment in its files (the file stem of per-segment files)."""
        raise NotImplementedError

    def proposal_file(self, vid: str, fs: int, fe: int) -> Path:
        raise NotImplementedError

    def feature_file(self, vid: str, fs: int, fe: int) -> Path:
        raise NotImplementedError

    def union_file(self, vid: str, fs: int, fe: int) -> Path:
        return self.find_segment_file("union_features", self.key(vid, fs, fe))

    def read_proposals(self, vid: str, fs: int, fe: int, **kwargs: Any) -> Proposals:
        """The proposals of a segment (``kwargs``: the filter options of :func:`~uasan.data.read_proposals`)."""
        raise NotImplementedError

    # -- generic parts ------------------------------------------------------------------------------------------

    def files(self, vid: str, fs: int, fe: int, roles: tuple[str, ...] = ROLES) -> dict[str, Path]:
        """``{kind: file}`` holding the segment's data for each role in ``roles`` (a per-video file for VidOR)."""
        getters = {"proposals": self.proposal_file, "features": self.feature_file, "union_features": self.union_file}
        return {self.kinds[r]: getters[r](vid, fs, fe) for r in roles}

    def features(self, vid: str, fs: int, fe: int, prop: Proposals) -> np.ndarray:
        """(n, D) or (n, S, D) float32, one row per trajectory of ``prop``: the file has one row per entry of the
        proposal list (before the filter)."""
        path = self.feature_file(vid, fs, fe)
        return self.select_rows(read_features(path), path, prop)

    def union_features(self, vid: str, fs: int, fe: int, prop: Proposals) -> np.ndarray:
        """(n(n-1), D) or (n(n-1), S, D) float32 for the ordered pairs of ``prop``: the file has one row per ordered
        pair of the proposal list's entries (before the filter), row-major."""
        path = self.union_file(vid, fs, fe)
        return self.select_pair_rows(read_features(path), path, prop)

    def expected_rows(self, vid: str, fs: int, fe: int, prop: Proposals, union: bool = False) -> int | None:
        """Rows the segment's feature (or union-feature) file must hold, for the up-front input checks
        (:mod:`uasan.data.checks`); None where the count is not known from the proposals alone."""
        if union and self.union_segment_mean:
            return None  # one array per segment, any number of rows (UASAN's release)
        n = prop.num_in_file
        return n * (n - 1) if union else n

    @staticmethod
    def select_rows(arr: np.ndarray, path: Path, prop: Proposals) -> np.ndarray:
        if arr.shape[0] != prop.num_in_file:
            raise bad_file(path, "shape[0]", f"{arr.shape[0]} rows but {prop.path} has {prop.num_in_file} trajectories")
        return np.asarray(arr[prop.index], dtype=np.float32)

    @staticmethod
    def select_pair_rows(arr: np.ndarray, path: Path, prop: Proposals) -> np.ndarray:
        n = prop.num_in_file
        if arr.shape[0] != n * (n - 1):
            raise bad_file(
                path,
                "shape[0]",
                f"{arr.shape[0]} rows but {prop.path} has {n} trajectories: expected n(n-1) = {n * (n - 1)} "
                "ordered pairs",
            )
        return np.asarray(arr[pair_rows(prop.index, n)], dtype=np.float32)

    def find_segment_file(self, role: str, stem: str, suffixes: tuple[str, ...] = FEATURE_SUFFIXES) -> Path:
        """``<folder>/<stem><suffix>`` in the role's folders (first hit), or a ``ValueError`` naming what was tried."""
        for folder in self.folders[role]:
            for suffix in suffixes:
                if (p := folder / f"{stem}{suffix}").is_file():
                    return p
        tried = ", ".join(str(f / f"{stem}{{{','.join(suffixes)}}}") for f in self.folders[role]) or "(no folder)"
        raise ValueError(f"data.{self.kinds[role]}: no file for segment {stem}: tried {tried}")

    def __getstate__(self) -> dict[str, Any]:  # caches stay per process (DataLoader workers)
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.reset_caches()

    def reset_caches(self) -> None:
        """Drops per-process caches (subclasses that keep any override this)."""


def first_file(folder: Path, suffixes: tuple[str, ...]) -> str | None:
    """The name of some file in ``folder`` ending in one of ``suffixes`` (stops at the first; None if none)."""
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith(suffixes) and entry.is_file():
                    return entry.name
    except OSError:
        return None
    return None


def _names(paths: tuple[Path, ...]) -> str:
    return ", ".join(str(p) for p in paths) or "(none: this layout has no such folder)"
