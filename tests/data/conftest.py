"""Shared fixtures of the data tests: one tiny synthetic world per session (the generator is deterministic, so
every test reads the same files)."""

from __future__ import annotations

from pathlib import Path

import pytest

SPLIT = Path(__file__).resolve().parents[2] / "uasan" / "data" / "splits" / "vidvrd.json"
SYNTH_WORLD = {"videos": 32, "size": "tiny"}  # 20 train + 4 val + 8 test videos of 90–150 frames, 256 distractors


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from uasan.data import synth

    return synth.generate(tmp_path_factory.mktemp("synth") / "w", seed=0, split=SPLIT, progress=False, **SYNTH_WORLD)
