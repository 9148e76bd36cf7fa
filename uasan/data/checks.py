"""Up-front checks of the inputs a run will read, so that a bad file fails the run before its first step.

A training run reads the train subset for hours and the test subset only at the end; a missing or torn test-set
feature file must not wait until then. :func:`check_inputs` walks every segment of every (subset, mode) the run
will read, locating each file through :class:`~uasan.data.SegmentDataset`'s layout (``proposal_file``,
``feature_file``, :meth:`~uasan.data.layouts.base.Layout.expected_rows`), and checks what is cheap to check:

* every proposal file parses (:func:`~uasan.data.read_proposals`, with the dataset's filter);
* every feature and union-feature file exists; for ``.npy`` the header gives the shape and dtype without reading the
  data, and the file size must hold them (a torn copy fails here): rows = the proposal file's entries (features) or
  n(n−1) ordered pairs (union features), and the trailing shape ``(D,)`` or ``(S, D)`` is the same in every file of
  every subset (the model is built for one width). ``.pkl`` files are only checked for existence: reading them
  means unpickling.

Problems are collected and raised together as one ``ValueError`` that names each file and field. What a dataset
skips (an annotated video without a proposal folder: its segments are not items) is reported as a warning with
counts; segments whose proposals are all filtered away (they stay in the data as empty segments) as a note.

    report = check_inputs(root, {"train": ["SGDet"], "test": ["SGDet", "SGCls", "PredCls"]})
    for line in report.warnings:
        print("warning:", line)
    visual_dim = report.feature_shape[-1]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uasan.data._io import PathLike
from uasan.data.dataset import MODES, SegmentDataset

__all__ = ["InputReport", "check_inputs", "npy_shape"]

MAX_LISTED = 10  # problems named in the error; the rest are counted


@dataclass
class InputReport:
    """What :func:`check_inputs` found (no problems: those raise)."""

    root: Path
    segments: dict[str, int] = field(default_factory=dict)  # "subset/mode" → segments (dataset items)
    empty_segments: dict[str, int] = field(default_factory=dict)  # "subset/mode" → items with no proposal kept
    feature_shape: tuple[int, ...] | None = None  # trailing feature shape, (D,) or (S, D); None if not read
    warnings: list[str] = field(default_factory=list)  # data the run will not see (skipped videos)
    notes: list[str] = field(default_factory=list)  # facts worth a line (segments left empty by the filter)


def npy_shape(path: PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header, after checking that the file holds that much data.

    Raises ``ValueError`` naming the file for a file that is not a ``.npy`` array, an object array, or one shorter
    than its header says (a torn copy).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            data_start = f.tell()
    except FileNotFoundError:
        raise ValueError(f"{path}: feature file does not exist") from None
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    del fortran
    if dtype.hasobject:
        raise ValueError(f"{path}: field 'dtype': expected real numbers, got {dtype} (an object array)")
    need = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < need:
        raise ValueError(f"{path}: truncated: the header says {shape} {dtype} ({need} bytes), the file has {size}")
    return tuple(int(x) for x in shape), dtype


def check_inputs(
    root: PathLike,
    reads: Mapping[str, Sequence[str]] | Sequence[str],
    split: str | PathLike | dict[str, Any] | None = None,
    *,
    features: bool = True,
    progress: bool = False,
    dataset_options: Mapping[str, Any] | None = None,
) -> InputReport:
    """Checks every file a run will read, before it starts (see the module docstring).

    Args:
        root: data set root.
        reads: the subsets the run reads, each with the modes it reads it in (``{"train": ["SGDet"], "test":
            ["SGDet", "SGCls", "PredCls"]}``); a plain list of subsets means every mode.
        split: the category split, as :class:`SegmentDataset` takes it.
        features: also check the feature and union-feature files.
        progress: a tqdm bar over the segments.
        dataset_options: further keyword arguments of :class:`SegmentDataset` (layout, folders, validation split:
            ``DataConfig.dataset_options()``).

    Returns an :class:`InputReport` (warnings for skipped data); raises ``ValueError`` listing every problem found.
    """
    from tqdm import tqdm

    if not isinstance(reads, Mapping):
        reads = {subset: MODES for subset in reads}
    report = InputReport(root=Path(root))
    problems: list[str] = []
    tail: tuple[int, ...] | None = None
    tail_source = ""
    datasets: list[tuple[str, SegmentDataset]] = []
    for subset, modes in reads.items():
        for mode in modes:
            try:
                ds = SegmentDataset(root, subset, split=split, mode=mode, labels=False, **(dataset_options or {}))
            except ValueError as exc:
                problems.append(str(exc))
                continue
            datasets.append((f"{subset}/{mode}", ds))

    total = sum(len(ds) for _, ds in datasets)  # an upper bound (shared files are walked once)
    bar = tqdm(total=total, desc="check inputs", disable=not progress, leave=False, unit="seg")
    walked: dict[tuple, str] = {}  # SGCls and PredCls read the same files: walk them once
    for key, ds in datasets:
        report.segments[key] = len(ds)
        folders = tuple(sorted(ds.layout.folders.items()))
        same = walked.setdefault((folders, ds.videos.folder, ds.filter, ds.min_length, ds.min_size), key)
        if same != key:
            report.empty_segments[key] = report.empty_segments[same]
            bar.update(len(ds))
            continue
        if ds.skipped_videos:
            n_videos = len(ds.skipped_videos) + len({vid for vid, _, _ in ds.index})
            names = ", ".join(ds.skipped_videos[:3]) + (", ..." if len(ds.skipped_videos) > 3 else "")
            report.warnings.append(
                f"{key}: {len(ds.skipped_videos)} of {n_videos} annotated videos have no proposals under "
                f"{', '.join(map(str, ds.layout.folders['proposals']))} and are skipped ({names}); "
                f"{len(ds)} segments remain"
            )
        empty = 0
        for i in range(len(ds)):
            bar.update(1)
            try:
                vid, fs, fe = ds.index[i]
                prop = ds.layout.read_proposals(
                    vid,
                    fs,
                    fe,
                    filter=ds.filter,
                    min_length=ds.min_length,
                    min_size=ds.min_size,
                    gt=ds.mode != "SGDet",
                    segment_length=fe - fs,
                )
                empty += len(prop) == 0
                if not features:
                    continue
                for union in (False, True):
                    path = ds.feature_file(i, union=union)
                    rows = ds.layout.expected_rows(vid, fs, fe, prop, union=union)
                    if path.suffix != ".npy" or rows is None:
                        continue  # a pickle (unpickling is not a cheap check, nor a safe one) or no per-file count
                    shape, _ = npy_shape(path)
                    if len(shape) not in (2, 3):
                        raise ValueError(f"{path}: field 'shape': expected (n, D) or (n, S, D), got {shape}")
                    if shape[0] != rows:
                        raise ValueError(
                            f"{path}: field 'shape[0]': {shape[0]} rows but {prop.path} gives {rows} "
                            + ("ordered pairs (n(n-1) of its trajectories)" if union else "trajectories")
                        )
                    if rows == 0 and shape[1:] in ((0,), ()):
                        continue  # an empty (0, 0) array carries no width
                    if tail is None:
                        tail, tail_source = shape[1:], str(path)
                    elif shape[1:] != tail:
                        raise ValueError(
                            f"{path}: field 'shape': trailing shape {shape[1:]} differs from {tail} of {tail_source} "
                            "(every feature file must have the same token count and width)"
                        )
            except ValueError as exc:
                problems.append(str(exc))
        report.empty_segments[key] = empty
        if empty:
            report.notes.append(
                f"{key}: {empty} of {len(ds)} segments have no proposal after the filter (kept as empty segments)"
            )
    bar.close()
    problems = list(dict.fromkeys(problems))  # a subset's problem found once per mode is one problem
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise ValueError(
            f"inputs under {root}: {len(problems)} problem(s) found before the run started:\n  {listed}{more}"
        )
    report.feature_shape = tail
    return report
