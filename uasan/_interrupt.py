"""An interrupted ``python -m uasan.train``: SIGTERM stops a run as Ctrl-C does, and both say how to continue it.

A run stopped by Ctrl-C (SIGINT) or by SIGTERM (``kill PID``, a batch scheduler's time limit, ``docker stop``)
keeps every finished epoch in its run folder (checkpoints are written atomically, each epoch); the message names
the command that continues it. :func:`sigterm_as_interrupt` turns SIGTERM into :class:`Terminated`, a
``KeyboardInterrupt``, so that the same ``except KeyboardInterrupt`` path handles both, and ``except Exception``
clauses on the way do not swallow it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Terminated", "exit_status", "interrupted_message", "resume_command", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread (see :func:`sigterm_as_interrupt`)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM raises :class:`Terminated` in the main thread (elsewhere, or where signals cannot be
    set, nothing changes). The previous handler is restored on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # e.g. an embedded interpreter without signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(exc: KeyboardInterrupt) -> int:
    """The shell's status of a process that a signal ended: 128 + 15 for SIGTERM, 128 + 2 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def resume_command(argv: list[str], world_size: int = 1) -> str:
    """The command line that continues this run: the same arguments, ``--resume`` instead of ``--overwrite``."""
    args = [a for a in argv if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    head = ["torchrun", f"--nproc_per_node={world_size}"] if world_size > 1 else ["python"]
    return shlex.join([*head, "-m", "uasan.train", *args])


def interrupted_message(exc: KeyboardInterrupt, out: Path, argv: list[str], world_size: int = 1) -> str:
    """``uasan.train: interrupted; OUT keeps every finished epoch. Continue with: <command> --resume``; when the
    run had written nothing yet (no ``OUT/config.yaml``, no generated world), the command to start it again."""
    how = " by SIGTERM" if isinstance(exc, Terminated) else ""
    if not (out / "config.yaml").is_file() and not (out / "data").is_dir():
        args = [a for a in argv if a != "--resume"]
        head = ["torchrun", f"--nproc_per_node={world_size}"] if world_size > 1 else ["python"]
        again = shlex.join([*head, "-m", "uasan.train", *args])
        return f"uasan.train: interrupted{how}; nothing was written to {out} yet. Start again with: {again}"
    return (
        f"uasan.train: interrupted{how}; {out} keeps every finished epoch. "
        f"Continue with: {resume_command(argv, world_size)}"
    )


def world_size_from_env() -> int:
    """WORLD_SIZE as torchrun sets it (1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1
