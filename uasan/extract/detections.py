"""Per-frame object detections of one video: the file format any detector can write, its reader and writer.

One file per video, ``<vid>.json`` or ``<vid>.npz`` (default folder ``OUT/detections/``). JSON::

    {"video_id": "<vid>",                      # optional; when present it must equal the file name
     "frames": [                               # frame f of the video is frames[f]; frames past the end have none
        {"boxes": [[x1, y1, x2, y2], ...],     # pixels, x1 <= x2, y1 <= y2 (any pixel convention)
         "scores": [s, ...],                   # one finite confidence per box
         "labels": ["dog", ...]},              # optional: one class name or id per box
        {},                                    # a frame without detections: {} or empty lists
        ...]}

NPZ (for long videos): ``frame_offsets`` (F + 1,) int, frame f owns rows ``[frame_offsets[f], frame_offsets[f+1])``
of ``boxes`` (M, 4), ``scores`` (M,) and the optional ``labels`` (M,) (strings or integers).

Labels are kept only when every frame that has boxes gives them; Seq-NMS is class-agnostic by default and uses them
only with ``class_aware=True`` (VidVRD-II's ``tag_constrained``); a tracklet's ``label`` is its boxes' majority
label. A bad file raises ``ValueError`` naming the file and the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uasan.data._io import bad_file, load_json
from uasan.files import atomic_write_text

__all__ = ["Detections", "detections_path", "read_detections", "write_detections"]

SUFFIXES = (".json", ".npz")


@dataclass
class Detections:
    """Detections of one video in CSR form: frame f owns rows ``[offsets[f], offsets[f + 1])``."""

    num_frames: int  # F, frames covered by the file
    offsets: np.ndarray  # (F + 1,) int64
    boxes: np.ndarray  # (M, 4) float64
    scores: np.ndarray  # (M,) float64
    labels: list[Any] | None  # (M,) class names / ids, or None

    def window(self, fstart: int, fend: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[Any]]:
        """Frames ``[fstart, fend)`` padded for Seq-NMS.

        Returns boxes (L, B, 4), scores (L, B) with −inf where absent, label codes (L, B) int64 (−1 where absent;
        None without labels) and the label of each code (codes follow the sorted label texts, so they are
        deterministic). Frames past the file's end have no detections.
        """
        L = fend - fstart
        f = np.clip(np.arange(fstart, fend), 0, self.num_frames)
        counts = np.where(
            np.arange(fstart, fend) < self.num_frames,
            self.offsets[np.minimum(f + 1, self.num_frames)] - self.offsets[f],
            0,
        )  # (L,)
        B = int(counts.max()) if L else 0
        boxes = np.zeros((L, B, 4), dtype=np.float64)
        scores = np.full((L, B), -np.inf, dtype=np.float64)
        total = int(counts.sum())
        rows = np.repeat(np.arange(L), counts)
        cols = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        src = np.repeat(self.offsets[f], counts) + cols
        boxes[rows, cols] = self.boxes[src]
        scores[rows, cols] = self.scores[src]
        if self.labels is None:
            return boxes, scores, None, []
        window = [self.labels[i] for i in src]
        names = sorted(set(window), key=lambda v: (str(v), type(v).__name__))
        code = {v: i for i, v in enumerate(names)}
        labels = np.full((L, B), -1, dtype=np.int64)
        labels[rows, cols] = [code[v] for v in window]
        return boxes, scores, labels, names


def detections_path(folder: str | os.PathLike[str], vid: str) -> Path | None:
    """The detections file of ``vid`` in ``folder`` (``.json`` first, then ``.npz``), or None."""
    for suffix in SUFFIXES:
        p = Path(folder) / f"{vid}{suffix}"
        if p.is_file():
            return p
    return None


def read_detections(path: str | os.PathLike[str]) -> Detections:
    """Reads a detections file (JSON or NPZ, see the module docstring); ``ValueError`` names the file and field."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        dets = _read_npz(path)
    elif path.suffix.lower() == ".json":
        dets = _read_json(path)
    else:
        raise ValueError(f"{path}: expected a .json or .npz detections file")
    _check(path, dets)
    return dets


def _read_json(path: Path) -> Detections:
    raw = load_json(path, "detections")
    if not isinstance(raw, dict):
        raise bad_file(path, "<document>", f"expected an object, got {type(raw).__name__}")
    vid = raw.get("video_id")
    if vid is not None and vid != path.stem:
        raise bad_file(path, "video_id", f"{vid!r} differs from the file name {path.stem!r}")
    frames = raw.get("frames")
    if not isinstance(frames, list):
        raise bad_file(path, "frames", f"expected a list of per-frame objects, got {type(frames).__name__}")
    boxes, scores, labels, counts = [], [], [], []
    with_labels = True
    for f, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise bad_file(path, f"frames[{f}]", f"expected an object, got {type(fr).__name__}")
        b, s = fr.get("boxes", []), fr.get("scores", [])
        try:
            b = np.asarray(b, dtype=np.float64).reshape(-1, 4) if len(b) else np.zeros((0, 4))
            if b.shape[0] != len(fr.get("boxes", [])):
                raise ValueError
        except (TypeError, ValueError):
            raise bad_file(path, f"frames[{f}].boxes", "expected a list of [x1, y1, x2, y2] numbers") from None
        try:
            s = np.asarray(s, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise bad_file(path, f"frames[{f}].scores", "expected a list of numbers") from None
        if len(s) != len(b):
            raise bad_file(path, f"frames[{f}].scores", f"{len(s)} scores for {len(b)} boxes")
        lab = fr.get("labels")
        if lab is None:
            with_labels = with_labels and len(b) == 0
        else:
            if not isinstance(lab, list) or len(lab) != len(b):
                raise bad_file(path, f"frames[{f}].labels", f"expected a list of {len(b)} labels")
            labels.extend(lab)
        boxes.append(b)
        scores.append(s)
        counts.append(len(b))
    offsets = np.zeros(len(frames) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Detections(
        num_frames=len(frames),
        offsets=offsets,
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        scores=np.concatenate(scores) if scores else np.zeros(0),
        labels=labels if with_labels and offsets[-1] > 0 else None,
    )


def _read_npz(path: Path) -> Detections:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"{path}: detections file does not exist") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the detections file ({type(exc).__name__}: {exc})") from None
    for key in ("frame_offsets", "boxes", "scores"):
        if key not in arrays:
            raise bad_file(path, key, "missing")
    offsets = arrays["frame_offsets"]
    if offsets.ndim != 1 or offsets.size == 0 or offsets.dtype.kind not in "iu":
        raise bad_file(path, "frame_offsets", f"expected (F + 1,) integers, got {offsets.dtype} {offsets.shape}")
    boxes = np.asarray(arrays["boxes"], dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        else:
            raise bad_file(path, "boxes", f"expected (M, 4), got {boxes.shape}")
    labels = arrays.get("labels")
    if labels is not None and labels.shape != (boxes.shape[0],):
        raise bad_file(path, "labels", f"expected ({boxes.shape[0]},), got {labels.shape}")
    return Detections(
        num_frames=int(offsets.size - 1),
        offsets=offsets.astype(np.int64),
        boxes=boxes,
        scores=np.asarray(arrays["scores"], dtype=np.float64).reshape(-1),
        labels=None if labels is None else labels.tolist(),
    )


def _check(path: Path, d: Detections) -> None:
    M = d.boxes.shape[0]
    if d.offsets[0] != 0 or (np.diff(d.offsets) < 0).any() or d.offsets[-1] != M:
        raise bad_file(path, "frame_offsets", f"expected non-decreasing offsets from 0 to {M} (the number of boxes)")
    if d.scores.shape != (M,):
        raise bad_file(path, "scores", f"expected {M} scores, got {d.scores.shape[0]}")
    bad = np.flatnonzero(
        ~np.isfinite(d.boxes).all(1) | (d.boxes[:, 2] < d.boxes[:, 0]) | (d.boxes[:, 3] < d.boxes[:, 1])
    )
    if bad.size:
        f = int(np.searchsorted(d.offsets, bad[0], side="right") - 1)
        raise bad_file(
            path, f"frames[{f}].boxes", f"expected finite x1 <= x2 and y1 <= y2, got {d.boxes[bad[0]].tolist()}"
        )
    if d.labels is not None:
        for i, v in enumerate(d.labels):
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                f = int(np.searchsorted(d.offsets, i, side="right") - 1)
                raise bad_file(path, f"frames[{f}].labels", f"expected a class name or integer id, got {v!r:.40}")
    bad = np.flatnonzero(~np.isfinite(d.scores))
    if bad.size:
        f = int(np.searchsorted(d.offsets, bad[0], side="right") - 1)
        raise bad_file(path, f"frames[{f}].scores", f"not finite: {d.scores[bad[0]]}")


def write_detections(path: str | os.PathLike[str], frames: list[tuple[Any, Any, Any]], video_id: str) -> Path:
    """Writes per-frame ``(boxes (B, 4), scores (B,), labels (B,) or None)`` as a JSON detections file, atomically.

    Boxes are rounded to 0.01 px and scores to 1e-4 (the detector's precision is far coarser)."""
    out = []
    for boxes, scores, labels in frames:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        item: dict[str, Any] = {
            "boxes": [[round(float(v), 2) + 0.0 for v in row] for row in b],
            "scores": [round(float(s), 4) + 0.0 for s in np.asarray(scores).reshape(-1)],
        }
        if labels is not None:
            item["labels"] = [x if isinstance(x, str) else int(x) for x in labels]
        out.append(item)
    text = json.dumps({"video_id": video_id, "frames": out}, separators=(",", ":")) + "\n"
    return atomic_write_text(path, text)
