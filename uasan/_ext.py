"""Loads the C++ extension ``uasan._C`` once.

``HAS_EXT`` tells whether it loaded; ``EXT_ERROR`` keeps the import error and ``EXT_REASON`` says in words why it
is missing (:func:`explain_missing`). Without the extension the ops fall back to their reference paths and warn
once. ``UASAN_REQUIRE_EXT=1`` turns a missing extension into an ``ImportError`` (CI sets it, so a broken build
cannot pass as a slow one).

The usual cause is not a failed build but a shadowed install: ``python -m ...`` puts the current directory first
on ``sys.path``, so run from a checkout it imports the source tree's ``uasan/``, which has no compiled ``_C``,
instead of the installed package. An editable install (``pip install -e .``, what the README does) maps the
package to the checkout and its ``_C`` to the build, so the two cannot disagree.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

_C: ModuleType | None
EXT_ERROR: ImportError | None
try:
    from uasan import _C  # type: ignore[attr-defined, no-redef]

    EXT_ERROR = None
except ImportError as exc:  # the wheel was installed as pure Python, or the source tree shadows the install
    _C = None
    EXT_ERROR = exc

HAS_EXT: bool = _C is not None


def installed_extension() -> tuple[bool, Path | None]:
    """(is a ``uasan`` distribution installed, the ``uasan/_C*`` file its RECORD lists or None)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("uasan")
    except metadata.PackageNotFoundError:
        return False, None
    for f in dist.files or ():
        parts = Path(str(f)).parts
        if (
            len(parts) == 2
            and parts[0] == "uasan"
            and parts[1].startswith("_C.")
            and parts[1].endswith((".so", ".pyd"))
        ):
            return True, Path(str(dist.locate_file(f))).resolve()
    return True, None


def explain_missing(error: BaseException | None, package_dir: Path, installed: bool, ext_file: Path | None) -> str:
    """Why ``uasan._C`` did not load from the package at ``package_dir``, and what to do about it.

    ``installed`` / ``ext_file``: whether a ``uasan`` distribution is installed and the extension file it holds.
    """
    package_dir = package_dir.resolve()
    if ext_file is not None and ext_file.parent != package_dir:
        return (
            f"the source tree at {package_dir.parent} shadows the installed package: Python imports uasan from "
            f"{package_dir} (the current directory comes first on sys.path), which has no built extension, while "
            f"the installed package at {ext_file.parent} has one. Run from another folder, or install this checkout "
            "in editable mode (pip install -e .), which builds the extension for it"
        )
    if ext_file is not None:
        return f"{ext_file} is installed but does not load ({error}); rebuild it: pip install -e . (or pip install .)"
    if installed:
        return (
            "the installed package was built without it: the C++ build failed at install time (it needs CMake >= "
            f"3.18 and a C++17 compiler; pip install -v . shows the compiler's error) ({error})"
        )
    return (
        f"uasan is imported from {package_dir} without being installed, so nothing built the extension: "
        "pip install -e . builds it for this checkout"
    )


EXT_REASON: str = "" if HAS_EXT else explain_missing(EXT_ERROR, Path(__file__).parent, *installed_extension())

if not HAS_EXT and os.environ.get("UASAN_REQUIRE_EXT", "") == "1":
    raise ImportError(f"UASAN_REQUIRE_EXT=1 but the C++ extension uasan._C is not available: {EXT_REASON}")

_warned = False


def warn_fallback() -> None:
    """Warns, once per process, that the C++ ops are unavailable and the reference paths are used."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"uasan: C++ extension not available: {EXT_REASON}. uasan.ops uses the slower reference paths.",
            RuntimeWarning,
            stacklevel=3,
        )


def ext() -> ModuleType:
    """Returns the extension module or raises a RuntimeError explaining why it is missing."""
    if _C is None:
        raise RuntimeError(f"impl='cpp' requested but the C++ extension uasan._C is not available: {EXT_REASON}")
    return _C
