"""Atomic file writes: write a temp file in the target's folder, fsync it, then ``os.replace`` it over the target.

A crash or an exception at any point leaves either the old file or the new one, never a torn mix (DESIGN §2).
The temp file lives in the same folder so that the rename stays on one file system (``os.replace`` is atomic there).
No torch import here: the config module uses it too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a binary temp file next to ``path``, then move it onto ``path``. Returns ``path``.

    If ``write`` raises (or the process is interrupted before the rename), ``path`` keeps its previous content and
    the temp file is removed (on an exception; a hard kill can leave a ``.<name>.*.tmp`` file behind, never a torn
    target).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data must be on disk before the rename makes it visible
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint or log should be readable like any other file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); best effort, some file systems refuse to fsync a directory."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
