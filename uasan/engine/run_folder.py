"""Run folders: check one before a run writes anything, so that no run half-overwrites another.

A run folder holds one run. A fresh run starts only in a folder without another run's files (``prior`` names what
may already be there, e.g. its input data or, for a second stage, the first stage's output); ``overwrite`` clears
the other run's files first; ``resume`` continues the run that is there. Everything is checked before the first
write: :func:`plan_run_folder` only reads, and returns what :func:`clear_entries` will remove.

Entries are matched by ``fnmatch`` patterns on their names (top level of the folder). A folder holding entries
that match none of ``owned`` is not a run folder: it is refused, even with ``overwrite``, because clearing it would
delete files this run did not write.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from uasan.files import check_writable

__all__ = ["check_writable", "clear_entries", "config_diff", "plan_run_folder"]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def plan_run_folder(
    out: str | os.PathLike[str],
    *,
    owned: Iterable[str],
    prior: Iterable[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    hint: str = "",
) -> list[Path]:
    """Checks ``out`` for a run and returns the entries to clear before it starts (only with ``overwrite``).

    Args:
        out: the run folder (may not exist yet).
        owned: patterns of every entry a run writes (top level).
        prior: patterns of entries a fresh run may find and keep (inputs, an earlier stage's output).
        resume: continue the run in ``out``: nothing is cleared and nothing is refused.
        overwrite: clear the previous run's entries (those matching ``owned`` but not ``prior``).
        hint: appended to the refusal (e.g. how to resume with this command).

    Raises ``ValueError`` for a folder that holds another run (fresh run without ``overwrite``), one that holds
    files no run writes, or ``resume`` together with ``overwrite``. Nothing is written.
    """
    out = Path(out)
    owned, prior = tuple(owned), tuple(prior)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite: choose one (continue the run in the folder, or replace it)")
    check_writable(out, "--out")
    if not out.exists():
        return []
    names = sorted(os.listdir(out))
    if resume:
        return []
    foreign = [n for n in names if not _matches(n, owned) and not _matches(n, prior)]
    if foreign:
        raise ValueError(
            f"--out: {out} is not empty and not a uasan run folder (it holds {', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); choose a new or empty folder"
        )
    previous = [n for n in names if not _matches(n, prior)]
    if not previous:
        return []
    if not overwrite:
        raise ValueError(
            f"--out: {out} already holds a run ({', '.join(previous[:6])}{', ...' if len(previous) > 6 else ''}); "
            f"pass --resume to continue it or --overwrite to replace it{hint}"
        )
    return [out / n for n in previous]


def clear_entries(paths: Iterable[Path]) -> None:
    """Removes each file or folder (the previous run's entries that :func:`plan_run_folder` returned)."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def config_diff(stored: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Every dotted key whose value differs between two nested config dicts, as ``"key: stored → new"`` lines
    (keys present on one side only count as differing); keys in ``ignore`` are skipped."""
    a, b = _flatten(stored), _flatten(new)
    skip = set(ignore)
    return [
        f"{k}: {a.get(k, '<absent>')!r} → {b.get(k, '<absent>')!r}"
        for k in sorted(a.keys() | b.keys())
        if k not in skip and a.get(k, "<absent>") != b.get(k, "<absent>")
    ]
