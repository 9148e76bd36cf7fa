"""Configuration machinery: frozen dataclasses loaded from YAML, with ``key.sub=value`` overrides.

Generic (any tree of frozen dataclasses; it knows no model or data set) and strict: an unknown key, a value of the
wrong type or a value outside a ``Literal`` raises ``ValueError`` naming the dotted key and where it came from (the
YAML file or the override), so a typo never silently falls back to a default.

    cfg = load_config(MyConfig, "my.yaml", ["optim.lr=3e-4", "model.variant=B"])
    cfg.optim.lr            # 0.0003 (float)
    dump_config(cfg, "runs/x/config.yaml")   # atomic; load_config(MyConfig, "runs/x/config.yaml") gives it back

Override values are parsed with ``yaml.safe_load``, so ``3`` is an int, ``0.1`` a float, ``true`` a bool, ``[1, 2]`` a
list and ``null`` is None. Missing keys keep the dataclass defaults. UASAN's own schema is :mod:`uasan.config`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from uasan.files import atomic_write_text, check_min

__all__ = ["load_config", "from_dict", "apply_overrides", "to_dict", "dump_config", "check_min"]

T = TypeVar("T")

# PyYAML follows YAML 1.1, where "1e-3" (no dot) is a string, not a float. Float fields accept such strings
# when they spell a number, because that is what the user meant; anything else stays a type error.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Build ``cls`` (a frozen dataclass) from a YAML file, then apply ``key.sub=value`` overrides.

    ``path=None`` starts from the dataclass defaults. Raises ``ValueError`` naming the key and the file (or the
    override) on an unknown key, a wrong type or an invalid value, ``FileNotFoundError`` for a missing file.
    """
    if path is None:
        source, raw = "<defaults>", {}
    else:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"config {str(path)!r}: no such file")
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{source}: not valid YAML: {e}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    cfg = from_dict(cls, raw, source=source)
    # Overrides go one at a time on top of the validated file so that an error names the override that caused it.
    data = to_dict(cfg)
    for item in overrides:
        data = apply_overrides(data, [item])
        cfg = from_dict(cls, data, source=f"override {item!r} (on {source})")
    return cfg


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the nested dict ``data`` with each ``"a.b.c=value"`` applied (value parsed by ``yaml.safe_load``).

    Intermediate mappings are created when missing; whether the key exists is checked when the dict becomes a
    dataclass (``from_dict``), where the schema is known.
    """
    out = _deep_copy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"override {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ValueError(f"override {item!r}: value is not valid YAML: {e}") from None
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ValueError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "<dict>", prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a nested mapping, checking every key and value against the annotations."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: key '{prefix or '<root>'}': expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in names]
    if unknown:
        key = _join(prefix, str(unknown[0]))
        raise ValueError(f"{source}: unknown key '{key}' (known in '{prefix or '<root>'}': {', '.join(sorted(names))})")
    kwargs = {name: _convert(hints[name], data[name], source, _join(prefix, name)) for name in data}
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ checks name their key already; add the source
        raise ValueError(f"{source}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a dataclass tree (tuples become lists, so the result dumps as plain YAML)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"to_dict: expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(cfg)


def dump_config(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as YAML to ``path`` atomically; ``load_config(type(cfg), path)`` reads it back equal."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    return atomic_write_text(path, text)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    """``value`` checked (and, where lossless, converted) against the annotation ``tp``; ValueError names ``key``."""

    def fail() -> typing.NoReturn:
        raise ValueError(f"{source}: key '{key}': expected {_type_name(tp)}, got {_describe(value)}")

    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            fail()
        return from_dict(tp, value, source, key)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            fail()
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _convert(arm, value, source, key)
            except ValueError:
                continue
        fail()
    if origin is Literal:
        # `True == 1` in Python; compare types too so that `variant: 1` is not taken for a Literal[1] and vice versa.
        if any(value == a and type(value) is type(a) for a in args):
            return value
        fail()
    if tp is type(None):
        if value is None:
            return None
        fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                fail()
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_convert(a, v, source, f"{key}[{i}]") for i, (a, v) in pairs)
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            fail()
        k_tp, v_tp = args if args else (Any, Any)
        return {_convert(k_tp, k, source, key): _convert(v_tp, v, source, _join(key, str(k))) for k, v in value.items()}
    raise TypeError(f"config field '{key}': unsupported annotation {tp!r}")
