"""Console progress of long phases: a tqdm bar on a terminal, plain lines otherwise.

Without a terminal (stderr redirected to a log file, ``nohup``, CI) a tqdm bar is a stream of carriage returns that
shows nothing until its line ends, so a run said nothing for minutes. There :func:`progress` prints a line when a
loop starts, one every ``interval`` seconds (default :data:`PLAIN_INTERVAL_S`) and one when it ends, and
:func:`phase` a start and a finish line around a phase without a loop of its own (world generation). Below every
part of the package: no torch import.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["PLAIN_INTERVAL_S", "is_terminal", "phase", "progress", "say"]

PLAIN_INTERVAL_S = 30.0  # seconds between two progress lines without a terminal


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where the bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def say(line: str) -> None:
    """One progress line on stderr, flushed at once (a log file must show it now, not at exit)."""
    print(line, file=sys.stderr, flush=True)


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def progress(
    iterable: Iterable[Any],
    desc: str,
    *,
    enabled: bool = True,
    total: int | None = None,
    unit: str = "batch",
    interval: float | None = None,
    terminal: bool | None = None,
) -> Iterator[Any]:
    """Iterate ``iterable`` with progress: a transient tqdm bar on a terminal; without one, plain lines
    ``"<desc>: started (<total> <unit>s)"``, ``"<desc>: 40/120 <unit>s, 31 s"`` every ``interval`` seconds and
    ``"<desc>: done, 120 <unit>s in 93 s"``; nothing when not ``enabled``. ``terminal`` overrides the check of
    stderr (tests)."""
    if not enabled:
        yield from iterable
        return
    if total is None:
        with contextlib.suppress(TypeError):
            total = len(iterable)  # type: ignore[arg-type]
    if is_terminal() if terminal is None else terminal:
        from tqdm import tqdm

        yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
        return
    every = PLAIN_INTERVAL_S if interval is None else interval
    of = f"/{total}" if total is not None else ""
    say(f"{desc}: started" + (f" ({total} {_plural(unit)})" if total is not None else ""))
    t0 = last = time.monotonic()
    n = 0
    for item in iterable:
        yield item
        n += 1
        now = time.monotonic()
        if now - last >= every:
            say(f"{desc}: {n}{of} {_plural(unit)}, {_fmt_s(now - t0)}")
            last = now
    say(f"{desc}: done, {n} {_plural(unit)} in {_fmt_s(time.monotonic() - t0)}")


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("ch", "s", "x")) else "s")


@contextlib.contextmanager
def phase(desc: str, *, enabled: bool = True, terminal: bool | None = None) -> Iterator[None]:
    """Around a phase without a bar of its own: without a terminal (and ``enabled``), ``"<desc> ..."`` before it
    and ``"<desc>: done in 80 s"`` after it; on a terminal the phase's own bars say it, nothing is printed."""
    show = enabled and not (is_terminal() if terminal is None else terminal)
    if show:
        say(f"{desc} ...")
    t0 = time.monotonic()
    yield
    if show:
        say(f"{desc}: done in {_fmt_s(time.monotonic() - t0)}")
