"""File helpers below every part of the package (models, data, evaluation, extraction, pictures, the engine).

Atomic writes: write a temp file in the target's folder, fsync it, then ``os.replace`` it over the target. A crash
or an exception at any point leaves either the old file or the new one, never a torn mix (DESIGN §2). The temp file
lives in the same folder so that the rename stays on one file system (``os.replace`` is atomic there).
Also: safe ``torch.load`` of model files, the write probe of output folders, and the config range check. No torch
import at module level: the config modules use this module too.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "atomic_write", "atomic_write_text", "check_min", "check_writable", "safe_torch_load", "unreadable_torch_file",
]  # fmt: skip


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


def safe_torch_load(path: str | os.PathLike[str], what: str) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, every failure a ``ValueError`` naming ``what`` (the
    option or role of the file, e.g. ``"--checkpoint"``) and the file.

    ``weights_only=True`` unpickles tensors, plain containers and primitives only: a crafted file cannot run code
    (a pickle's ``__reduce__`` may name any callable, e.g. ``os.system``). Such a file, a truncated one and one that
    is not a torch file at all are told apart in the message.
    """
    import torch  # lazily: the config modules import this one, and they must not need torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        ref = re.search(r"GLOBAL ([\w.]+)", text)
        if ref is None and "Weights only load failed" not in text or "Unsupported operand" in text:
            raise ValueError(f"{what}: {path} is not a torch file (or is corrupt): cannot unpickle it") from None
        holds = f"a reference to {ref.group(1)}" if ref else "objects other than tensors and plain values"
        raise ValueError(
            f"{what}: {path} holds {holds}; it is not loaded, since unpickling it could run code "
            "(torch.load with weights_only=True). uasan files hold only tensors and plain values: this one is "
            "not a uasan file, or it was tampered with"
        ) from None
    except Exception as exc:  # torch raises several types for torn or foreign files; name the file in all cases
        raise ValueError(f"{what}: {path} {unreadable_torch_file(path, exc)}") from None


def unreadable_torch_file(path: str | os.PathLike[str], exc: BaseException) -> str:
    """Why ``torch.load`` could not read ``path``, as the end of a sentence that starts with the file's name:
    ``"cannot be read: it is truncated (...)"``. The file's first bytes tell the cases apart: empty, a torch zip
    archive cut short (an interrupted write or copy), anything else (not a torch file, or corrupt). The exception's
    own text follows in parentheses, its first sentence only (torch's run on for several lines)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        size, head = -1, b""
    if size == 0:
        why = "it is empty (0 bytes), from a write or copy that never finished, or not a torch file"
    elif head == b"PK\x03\x04":  # torch.save's zip format: the archive's end (its directory) is missing or bad
        why = f"it is truncated or corrupt, a torch zip archive of {size} bytes whose end is missing or damaged"
    else:
        why = "it is not a torch file, or it is truncated or corrupt"
    text = " ".join(str(exc).split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".") if text else ""
    detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"cannot be read: {why} ({detail})"


def check_writable(path: str | os.PathLike[str], what: str, *, is_dir: bool = True) -> None:
    """Raises ``ValueError`` naming ``what`` unless ``path`` (a folder, or with ``is_dir=False`` a file) can be
    written: the path, or its nearest existing ancestor, must be a folder in which a file can be created (a probe
    file is created and removed at once; ``os.access`` is not enough, e.g. for root or on a read-only mount)."""
    path = Path(path).absolute()
    if path.exists() and path.is_dir() != is_dir:
        raise ValueError(f"{what}: {path} is {'a file, not a folder' if is_dir else 'a folder, not a file'}")
    probe_dir = path if is_dir else path.parent
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise ValueError(f"{what}: cannot create {path}: {probe_dir} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=".uasan-write-probe.")
    except OSError as exc:
        raise ValueError(f"{what}: cannot write in {probe_dir} ({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def check_min(obj: Any, name: str, lo: int, section: str) -> None:
    """``ValueError`` naming ``section.name`` unless the field ``name`` of ``obj`` is at least ``lo``."""
    value = getattr(obj, name)
    if value < lo:
        raise ValueError(f"{section}.{name}: expected >= {lo}, got {value}")
