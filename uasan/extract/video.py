"""Video frames with PyAV: only the frames a step asks for, decoded in order, once, one frame in memory at a time.

PyAV's wheels bundle FFmpeg, so no system install is needed; it is imported lazily (``pip install "uasan[extract]"``
or ``pip install av``) and a missing install is a clear ``ImportError``. Frame ``f`` is the ``f``-th frame in
presentation order, counted from 0, which is how VidVRD / VidOR annotations index frames.

Memory: :func:`iter_frames` is a generator that converts a decoded frame to RGB only when it is wanted and drops
it before decoding the next, so a 10-minute 1080p video never holds more than one RGB frame plus FFmpeg's own
small decoder buffers (a few frames for frame threading).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VIDEO_SUFFIXES", "VideoError", "find_videos", "iter_frames", "require_av", "video_size"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


class VideoError(ValueError):
    """A video that is missing, cannot be opened, cannot be decoded or is shorter than needed (names the file)."""


def require_av() -> Any:
    """The ``av`` module, or an ``ImportError`` that says how to install it."""
    try:
        import av
    except ImportError:
        raise ImportError(
            "uasan.extract decodes videos with PyAV, which is not installed: pip install 'uasan[extract]' "
            "(or pip install av; its wheels bundle FFmpeg)"
        ) from None
    return av


def find_videos(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{video id: path}`` of the video files under ``folder`` (searched recursively; the id is the file name
    without its suffix, so VidOR's ``video/XXXX/<vid>.mp4`` groups work). Two files with one id are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: video folder does not exist")
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in VIDEO_SUFFIXES or not p.is_file():
            continue
        if p.stem in out:
            raise ValueError(f"{p}: video id {p.stem!r} also names {out[p.stem]}")
        out[p.stem] = p
    return out


@contextmanager
def _open(path: Path) -> Iterator[tuple[Any, Any]]:
    av = require_av()
    if not path.is_file():
        raise VideoError(f"{path}: video file does not exist")
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: cannot open the video ({type(exc).__name__}: {exc})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg frame threading: a few frames of buffer, several times the speed
        yield container, stream
    finally:
        container.close()


def video_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of the first video stream (from the container header; nothing is decoded)."""
    path = Path(path)
    with _open(path) as (_, stream):
        w, h = int(stream.codec_context.width), int(stream.codec_context.height)
    if w <= 0 or h <= 0:
        raise VideoError(f"{path}: the video stream reports a frame size of {w}x{h}")
    return w, h


def iter_frames(path: str | os.PathLike[str], frames: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(f, rgb)`` for the wanted frames ``f`` in increasing order; ``rgb`` is (H, W, 3) uint8.

    ``frames``: the wanted frame indices (any order, duplicates ignored); ``None`` means every frame. Decoding
    stops after the last wanted frame. Raises :class:`VideoError` naming the file when it cannot be opened or
    decoded, or when it ends before a wanted frame.
    """
    path = Path(path)
    av = require_av()
    wanted = None if frames is None else np.unique(np.asarray(list(frames), dtype=np.int64))
    if wanted is not None and (len(wanted) == 0):
        return
    if wanted is not None and wanted[0] < 0:
        raise ValueError(f"iter_frames: expected frame indices >= 0, got {int(wanted[0])}")
    k = 0  # next position in wanted
    decoded = 0
    with _open(path) as (container, stream):
        try:
            for f, frame in enumerate(container.decode(stream)):
                decoded = f + 1
                if wanted is not None and f != wanted[k]:
                    continue
                yield f, frame.to_ndarray(format="rgb24")
                if wanted is not None:
                    k += 1
                    if k == len(wanted):
                        return
        except av.error.FFmpegError as exc:
            raise VideoError(f"{path}: decoding failed at frame {decoded} ({type(exc).__name__}: {exc})") from None
    if wanted is not None:
        raise VideoError(f"{path}: the video has {decoded} frames, frame {int(wanted[k])} was needed")
