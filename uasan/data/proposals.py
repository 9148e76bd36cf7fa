"""Segment trajectory proposals (RePro layout) and the per-segment feature arrays aligned with them.

A proposal file ``<tag>.json`` is a list with one entry per trajectory::

    {"fstart": int,            # first frame, relative to the segment start
     "score": float,           # detector / tracker confidence (ground-truth files use -1)
     "bboxes": [[x1, y1, x2, y2], ...],   # one box per frame, frames fstart, fstart+1, ... (contiguous)
     "label": ...,             # detector class (optional, kept as is)
     "class": str, "tid": int} # ground-truth files only

What is accepted: ``bboxes`` must be a non-empty list of 4 finite numbers per frame with x1 <= x2 and y1 <= y2;
RePro's trackers write contiguous trajectories, so a ``null`` (missing) frame is rejected rather than guessed, as
is a trajectory that runs past the segment's end when the segment length is known.

Features are ``.npy`` (or ``.pkl`` holding a NumPy array — unpickled with only NumPy's array globals allowed —
or a ``torch.save`` file of a tensor) of shape ``(n, D)`` or ``(n, S, D)`` with one row per entry of the proposal
file, in file order (before any filtering); union features have one row per ordered pair ``(s, o)``, ``s != o``,
row-major: row ``s * (n - 1) + o - (o > s)``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uasan.data._io import PathLike, bad_file, load_json, require

MIN_LENGTH = 15
MIN_SIZE = 5.0


@dataclass
class Proposals:
    """Trajectories of one segment file, after the optional filter, in CSR form (frames relative to the segment)."""

    path: str
    num_in_file: int  # entries in the file before filtering
    index: np.ndarray  # (n,) int64: row of each kept trajectory in the file (aligns features)
    fstart: np.ndarray  # (n,) int64
    length: np.ndarray  # (n,) int64, T_i >= 1
    offsets: np.ndarray  # (n + 1,) int64 into boxes
    boxes: np.ndarray  # (ΣT, 4) float64
    score: np.ndarray  # (n,) float32
    label: list[Any] | None  # (n,) the "label" values, when every entry has one
    category: list[str] | None  # (n,) ground-truth "class"
    tid: np.ndarray | None  # (n,) int64 ground-truth "tid"
    field: str = ""  # where the list sits in ``path`` (a segment key of a per-video file), for error messages

    def __len__(self) -> int:
        return len(self.index)

    @property
    def fend(self) -> np.ndarray:
        """(n,) exclusive end frames, relative to the segment."""
        return self.fstart + self.length

    def trajectories(self) -> list[tuple[int, np.ndarray]]:
        """``[(fstart, boxes (T, 4))]``: the form the vIoU / vPoI ops take."""
        return [
            (int(s), self.boxes[a:b]) for s, a, b in zip(self.fstart, self.offsets[:-1], self.offsets[1:], strict=True)
        ]

    def padded(self, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Boxes on the segment's frame grid: (n, L, 4) float32 (zeros where absent) and valid (n, L) bool."""
        n = len(self)
        L = int(length if length is not None else (self.fend.max() if n else 0))
        boxes = np.zeros((n, L, 4), dtype=np.float32)
        valid = np.zeros((n, L), dtype=bool)
        if n and len(self.boxes):
            rows = np.repeat(np.arange(n), self.length)
            cols = np.arange(len(self.boxes)) - np.repeat(self.offsets[:-1], self.length) + self.fstart[rows]
            boxes[rows, cols] = self.boxes
            valid[rows, cols] = True
        return boxes, valid

    def select(self, keep: np.ndarray) -> Proposals:
        """The subset of trajectories ``keep`` (bool mask or indices), same file alignment."""
        keep = np.flatnonzero(keep) if keep.dtype == bool else np.asarray(keep, dtype=np.int64)
        length = self.length[keep]
        offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(length, out=offsets[1:])
        src = np.repeat(self.offsets[keep], length) + np.arange(offsets[-1]) - np.repeat(offsets[:-1], length)
        return Proposals(
            path=self.path,
            num_in_file=self.num_in_file,
            index=self.index[keep],
            fstart=self.fstart[keep],
            length=length,
            offsets=offsets,
            boxes=self.boxes[src],
            score=self.score[keep],
            label=None if self.label is None else [self.label[i] for i in keep],
            category=None if self.category is None else [self.category[i] for i in keep],
            tid=None if self.tid is None else self.tid[keep],
            field=self.field,
        )


def read_proposals(
    path: PathLike,
    filter: bool = True,  # noqa: A002 - the public name
    *,
    min_length: int = MIN_LENGTH,
    min_size: float = MIN_SIZE,
    gt: bool | None = None,
    segment_length: int | None = None,
) -> Proposals:
    """Reads a segment proposal file (RePro layout, see the module docstring).

    ``filter=True`` keeps a trajectory when it has at least ``min_length`` boxes and its largest box height and
    largest box width (continuous, x2 − x1) are both at least ``min_size`` (RePro's default filter: 15 and 5).
    ``gt=True`` requires ``class`` and ``tid`` on every entry, ``None`` reads them when every entry has them.
    ``segment_length`` (when given) rejects a trajectory that runs past the segment end. A bad file raises
    ``ValueError`` naming the file and the field.
    """
    path = Path(path)
    data = load_json(path, "proposal")
    return parse_proposals(
        data, path, filter, min_length=min_length, min_size=min_size, gt=gt, segment_length=segment_length
    )


def parse_proposals(
    data: Any,
    path: PathLike,
    filter: bool = True,  # noqa: A002 - the public name
    *,
    field: str = "",
    min_length: int = MIN_LENGTH,
    min_size: float = MIN_SIZE,
    gt: bool | None = None,
    segment_length: int | None = None,
) -> Proposals:
    """:func:`read_proposals` on an already parsed proposal list ``data`` that came from ``path``.

    ``field`` is where the list sits in that file (e.g. a segment key of RePro's per-video VidOR files); errors name
    ``<field>[i].<key>``.
    """
    path = Path(path)
    where = field or "<document>"
    if not isinstance(data, list):
        raise bad_file(path, where, f"expected a list of trajectories, got {type(data).__name__}")
    n = len(data)
    try:
        fstart = np.array([p["fstart"] for p in data], dtype=np.int64)
        score = np.array([p["score"] for p in data], dtype=np.float64)
        arrays = [np.asarray(p["bboxes"], dtype=np.float64) for p in data]
        if not all(a.ndim == 2 and a.shape[1] == 4 and a.shape[0] > 0 for a in arrays):
            raise ValueError
        if not all(type(p["fstart"]) is int for p in data):
            raise ValueError
    except (KeyError, TypeError, ValueError, OverflowError):
        _locate_proposal_error(data, path, field)
        raise bad_file(path, where, "malformed proposal list") from None
    bad = np.flatnonzero(fstart < 0)
    if bad.size:
        raise bad_file(path, f"{field}[{bad[0]}].fstart", f"expected >= 0, got {fstart[bad[0]]}")
    length = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    boxes = np.concatenate(arrays) if n else np.zeros((0, 4))
    bad = np.flatnonzero(~np.isfinite(boxes).all(1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        i = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise bad_file(
            path,
            f"{field}[{i}].bboxes[{bad[0] - offsets[i]}]",
            f"expected x1 <= x2 and y1 <= y2, got {boxes[bad[0]].tolist()}",
        )
    if segment_length is not None:
        bad = np.flatnonzero(fstart + length > segment_length)
        if bad.size:
            i = bad[0]
            raise bad_file(
                path,
                f"{field}[{i}].bboxes",
                f"fstart {fstart[i]} + {length[i]} boxes run past the segment end ({segment_length})",
            )
    if not np.isfinite(score).all():
        raise bad_file(path, f"{field}[{np.flatnonzero(~np.isfinite(score))[0]}].score", "not finite")

    label = [p["label"] for p in data] if all("label" in p for p in data) else None
    category = tid = None
    if gt or (gt is None and n and all("class" in p and "tid" in p for p in data)):
        category = [require(p, "class", path, f"{field}[{i}].class", str) for i, p in enumerate(data)]
        tid = np.array([require(p, "tid", path, f"{field}[{i}].tid", int) for i, p in enumerate(data)], dtype=np.int64)
    props = Proposals(
        path=os.fspath(path),
        num_in_file=n,
        index=np.arange(n, dtype=np.int64),
        fstart=fstart,
        length=length,
        offsets=offsets,
        boxes=boxes,
        score=score.astype(np.float32),
        label=label,
        category=category,
        tid=tid,
        field=field,
    )
    if not filter or n == 0:
        return props
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    max_w, max_h = np.maximum.reduceat(w, offsets[:-1]), np.maximum.reduceat(h, offsets[:-1])  # (n,), T_i >= 1
    keep = (length >= min_length) & (max_w >= min_size) & (max_h >= min_size)
    return props if keep.all() else props.select(keep)


def _locate_proposal_error(data: list, path: Path, field: str) -> None:
    """Names the first malformed field of a proposal list (slow path, only on error)."""
    for i, p in enumerate(data):
        fs = require(p, "fstart", path, f"{field}[{i}].fstart", int)
        del fs
        require(p, "score", path, f"{field}[{i}].score", (int, float))
        bbs = require(p, "bboxes", path, f"{field}[{i}].bboxes", list)
        if not bbs:
            raise bad_file(path, f"{field}[{i}].bboxes", "empty: a trajectory needs at least one box")
        for t, b in enumerate(bbs):
            ok = isinstance(b, (list, tuple)) and len(b) == 4
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
            if not ok:
                raise bad_file(path, f"{field}[{i}].bboxes[{t}]", f"expected [x1, y1, x2, y2] numbers, got {b!r:.80}")


# What a pickled NumPy array needs to rebuild itself; any other global in a feature pickle is refused, so that a
# hostile file cannot run code (pickle.load would call whatever the file names).
_ARRAY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a feature pickle may only hold an array")
        return super().find_class(module, name)


def _load_array_pickle(path: Path) -> Any:
    """A ``.pkl`` feature file: a pickled NumPy array (restricted unpickling), or a ``torch.save`` file of a tensor
    (``weights_only=True``)."""
    import zipfile

    if zipfile.is_zipfile(path):  # torch.save's format
        import torch

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad or hostile file
            raise ValueError(f"{path}: cannot read the feature file ({type(exc).__name__}: {exc})") from None
    with open(path, "rb") as f:
        return _ArrayUnpickler(f).load()


def read_features(path: PathLike) -> np.ndarray:
    """Reads a feature array: ``.npy``, or ``.pkl`` holding a NumPy array / torch tensor, shape (n, D) or (n, S, D).

    An empty 1-d array reads as (0, 0). A missing / unreadable file, a pickle of something else, a non-numeric
    dtype or another rank raises ``ValueError`` naming the file and the field.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr: Any = np.load(path, allow_pickle=False)
        elif suffix == ".pkl":
            arr = _load_array_pickle(path)
        else:
            raise ValueError(f"{path}: expected a .npy or .pkl feature file")
    except FileNotFoundError:
        raise ValueError(f"{path}: feature file does not exist") from None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read the feature file ({type(exc).__name__}: {exc})") from None
    if type(arr).__module__.startswith("torch"):
        arr = arr.detach().cpu().float().numpy()
    if not isinstance(arr, np.ndarray):
        raise bad_file(path, "<array>", f"expected an array, got {type(arr).__name__}")
    if arr.dtype.kind not in "fiub":
        raise bad_file(path, "dtype", f"expected real numbers, got {arr.dtype}")
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim not in (2, 3):
        raise bad_file(path, "shape", f"expected (n, D) or (n, S, D), got {arr.shape}")
    return arr
