"""Shared fixtures: the tiny video data root (written once per session, copied per test) and tiny random models."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("av")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).parent))
import world  # noqa: E402


@pytest.fixture(scope="session")
def base_root(tmp_path_factory) -> Path:
    return world.make_root(tmp_path_factory.mktemp("base_root"))


@pytest.fixture
def root(base_root, tmp_path) -> Path:
    """A fresh copy of the tiny data root (annotations, videos, detections) for one test."""
    return Path(shutil.copytree(base_root, tmp_path / "root"))


@pytest.fixture(scope="session")
def blip2(tmp_path_factory) -> Path:
    return world.tiny_blip2_tower(tmp_path_factory.mktemp("blip2"))


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return world.tiny_clip_tower(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def yolos(tmp_path_factory) -> Path:
    return world.tiny_yolos(tmp_path_factory.mktemp("yolos"))
