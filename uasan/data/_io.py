"""File plumbing shared by the readers: JSON loading and the one error shape for a bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


def bad_file(path: PathLike, field: str, problem: str) -> ValueError:
    """The error for a bad file: ``ValueError("<file>: field '<field>': <problem>")``."""
    return ValueError(f"{os.fspath(path)}: field '{field}': {problem}")


def load_json(path: PathLike, what: str) -> Any:
    """Parses a JSON file; an unreadable or non-JSON file raises ``ValueError`` naming the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the {what} file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise bad_file(path, "<document>", f"not valid JSON ({exc})") from None


def require(obj: Any, key: str, path: PathLike, field: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``obj[key]``, or a ``ValueError`` naming the file and the field when it is missing or of the wrong type."""
    if not isinstance(obj, dict):
        raise bad_file(path, field.rsplit(".", 1)[0] or field, f"expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise bad_file(path, field, "missing")
    value = obj[key]
    if kind is not None:
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
        if not ok:
            names = "/".join(t.__name__ for t in _as_tuple(kind))
            raise bad_file(path, field, f"expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
