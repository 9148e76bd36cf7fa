"""Loads the C++ extension ``uasan._C`` once.

``HAS_EXT`` tells whether it loaded; ``EXT_ERROR`` keeps the import error for diagnostics. Without the
extension the ops fall back to their reference paths and warn once. ``UASAN_REQUIRE_EXT=1`` turns a missing
extension into an ``ImportError`` (CI sets it, so a broken build cannot pass as a slow one).
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

_C: ModuleType | None
EXT_ERROR: ImportError | None
try:
    from uasan import _C  # type: ignore[attr-defined, no-redef]

    EXT_ERROR = None
except ImportError as exc:  # the wheel was installed as pure Python
    _C = None
    EXT_ERROR = exc

HAS_EXT: bool = _C is not None

if not HAS_EXT and os.environ.get("UASAN_REQUIRE_EXT", "") == "1":
    raise ImportError(f"UASAN_REQUIRE_EXT=1 but the C++ extension uasan._C failed to load: {EXT_ERROR}")

_warned = False


def warn_fallback() -> None:
    """Warns, once per process, that the C++ ops are unavailable and the reference paths are used."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"uasan: C++ extension not available ({EXT_ERROR}); uasan.ops uses the slower reference paths. "
            "Reinstall with a C++17 compiler and CMake >= 3.18 to build it.",
            RuntimeWarning,
            stacklevel=3,
        )


def ext() -> ModuleType:
    """Returns the extension module or raises a RuntimeError explaining why it is missing."""
    if _C is None:
        raise RuntimeError(f"impl='cpp' requested but the C++ extension uasan._C is not available: {EXT_ERROR}")
    return _C
