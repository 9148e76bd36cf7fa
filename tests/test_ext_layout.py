"""The C++ extension is what the README's commands use (issue 14, item 3).

Run from the repository root, ``python -m`` imports the checkout's ``uasan/`` first; after the README's install
(editable) that package still loads the built ``uasan._C``. With a plain ``pip install .`` it would not (the
source tree shadows the install), and the fallback warning must say so rather than blame the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline import TINY
from uasan import _ext

ROOT = Path(__file__).resolve().parents[1]


def _python(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python *args`` from the repository root, output captured."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(
    _ext.installed_extension() == (True, None), reason="the installed package was built without its C++ extension"
)
def test_main_command_from_the_repository_root_uses_the_extension(tiny_world, tmp_path):
    env = {**os.environ, "UASAN_REQUIRE_EXT": "1", "OMP_NUM_THREADS": "1"}
    args = ["--out", str(tmp_path / "run"), "--data-root", str(tiny_world), "--stage", "0", "--quiet", *TINY]
    proc = _python(["-m", "uasan.train", *args, "pretrain.epochs=0"], env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "extension not available" not in proc.stderr
    probe = _python(["-c", "import uasan, uasan._ext as e; print(e._C.__file__); print(uasan.__file__)"], env, 120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert Path(probe.stdout.splitlines()[1]).resolve().parent == ROOT / "uasan"  # the checkout's package ...
    assert Path(probe.stdout.splitlines()[0]).is_file()  # ... with its built extension


def test_missing_extension_is_explained(tmp_path):
    source = tmp_path / "checkout" / "uasan"
    installed = tmp_path / "site-packages" / "uasan" / "_C.cpython-311-x86_64-linux-gnu.so"
    err = ImportError("cannot import name '_C' from 'uasan'")
    shadowed = _ext.explain_missing(err, source, True, installed)
    assert "shadows the installed package" in shadowed and str(source) in shadowed and str(installed.parent) in shadowed
    assert "pip install -e ." in shadowed and "compiler" not in shadowed
    failed_build = _ext.explain_missing(err, source, True, None)
    assert "build failed" in failed_build and "C++17 compiler" in failed_build
    not_installed = _ext.explain_missing(err, source, False, None)
    assert "without being installed" in not_installed and "pip install -e ." in not_installed
    broken = _ext.explain_missing(ImportError("undefined symbol: foo"), installed.parent, True, installed)
    assert "does not load" in broken and "undefined symbol" in broken
