"""Base/novel category splits of the open-vocabulary protocol, and the vocabularies built from them.

A split file is JSON: ``{"dataset", "objects": {"base": [...], "novel": [...]}, "predicates": {"base": [...],
"novel": [...]}, ...}`` with the names in the protocol's id order (extra keys such as counts are kept as they are).
The bundled splits (``vidvrd``, ``vidor``) ship with the package under ``uasan/data/splits/``.

Vocabulary ids put the base categories first: object id ``i < n_base`` is ``objects.base[i]``, and ids
``n_base + j`` are ``objects.novel[j]`` (predicates likewise), so a base-only classifier indexes ids directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from uasan.data._io import PathLike, bad_file, load_json

BUNDLED_SPLITS = ("vidvrd", "vidor")
SPLIT_NAMES = ("base", "novel", "all")


def load_split(name_or_path: str | PathLike) -> dict[str, Any]:
    """Loads a category split: a bundled one by name (``"vidvrd"``, ``"vidor"``) or a JSON file by path.

    Returns the parsed dict after checking its schema (``objects``/``predicates`` each with ``base`` and ``novel``
    lists of unique names, disjoint); a bad file raises ``ValueError`` naming the file and the field.
    """
    key = os.fspath(name_or_path)
    if key in BUNDLED_SPLITS:
        res = resources.files("uasan.data").joinpath("splits", f"{key}.json")
        path: Any = f"<bundled split {key}: {res}>"
        try:
            split = json.loads(res.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:  # a broken install
            raise ValueError(f"{path}: cannot read the bundled split ({exc})") from None
    else:
        path = Path(key)
        if not path.exists():
            raise ValueError(
                f"{path}: split file does not exist (give a bundled name, one of {BUNDLED_SPLITS}, or a JSON path)"
            )
        split = load_json(path, "split")
    _check_split(split, path)
    return split


def _check_split(split: Any, path: Any) -> None:
    if not isinstance(split, dict):
        raise bad_file(path, "<document>", f"expected an object, got {type(split).__name__}")
    for group in ("objects", "predicates"):
        if not isinstance(split.get(group), dict):
            raise bad_file(path, group, "missing or not an object with 'base' and 'novel' lists")
        seen: set[str] = set()
        for part in ("base", "novel"):
            names = split[group].get(part)
            field = f"{group}.{part}"
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise bad_file(path, field, "missing or not a list of names")
            dup = seen.intersection(names) or {n for n in names if names.count(n) > 1}
            if dup:
                raise bad_file(path, field, f"names repeated within the split: {sorted(dup)[:5]}")
            seen.update(names)


@dataclass(frozen=True)
class Vocabulary:
    """Object and predicate names of a split, base first then novel (the id order)."""

    objects: tuple[str, ...]
    predicates: tuple[str, ...]
    num_base_objects: int
    num_base_predicates: int

    @classmethod
    def from_split(cls, split: dict[str, Any]) -> Vocabulary:
        """Builds the vocabulary of a split dict (see :func:`load_split`)."""
        o, p = split["objects"], split["predicates"]
        return cls(
            objects=tuple(o["base"]) + tuple(o["novel"]),
            predicates=tuple(p["base"]) + tuple(p["novel"]),
            num_base_objects=len(o["base"]),
            num_base_predicates=len(p["base"]),
        )

    @property
    def object_ids(self) -> dict[str, int]:
        """Name → id over all objects."""
        return {n: i for i, n in enumerate(self.objects)}

    @property
    def predicate_ids(self) -> dict[str, int]:
        """Name → id over all predicates."""
        return {n: i for i, n in enumerate(self.predicates)}

    def object_mask(self, which: str) -> np.ndarray:
        """(C_obj,) bool: the object ids in ``which`` ∈ {"base", "novel", "all"}."""
        return _mask(len(self.objects), self.num_base_objects, which)

    def predicate_mask(self, which: str) -> np.ndarray:
        """(C_pred,) bool: the predicate ids in ``which`` ∈ {"base", "novel", "all"}."""
        return _mask(len(self.predicates), self.num_base_predicates, which)


def _mask(total: int, n_base: int, which: str) -> np.ndarray:
    if which not in SPLIT_NAMES:
        raise ValueError(f"expected a category split name in {SPLIT_NAMES}, got {which!r}")
    ids = np.arange(total)
    return {"base": ids < n_base, "novel": ids >= n_base, "all": np.ones(total, dtype=bool)}[which]
