"""Resume after a kill gives identical bytes; shards union to the single run; bad videos are reported and skipped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import world

from uasan.extract import pipeline
from uasan.extract.__main__ import main

OUTPUTS = ("proposals", "features", "union_features", "gt_proposals", "gt_features", "gt_union_features")
FAST = ["--quiet", "--workers", "1", "--batch-size", "5"]


def outputs(root: Path) -> dict[str, bytes]:
    """Every output file under root (relative path → bytes); temp files of interrupted writes excluded."""
    out = {}
    for d in OUTPUTS:
        for p in sorted((root / d).rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture
def reference(root, blip2, tmp_path) -> dict[str, bytes]:
    """The outputs of one uninterrupted run (on a copy of the same inputs)."""
    ref = Path(shutil.copytree(root, tmp_path / "reference"))
    assert main(["all", "--root", str(ref), "--vision", str(blip2), *FAST]) == 0
    files = outputs(ref)
    assert len(files) == 6 * 8  # 8 segments × (proposals, features, union) × (detected, ground truth)
    return files


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing catches it on the way out."""


def test_resume_after_injected_kill_is_byte_identical(root, blip2, reference, monkeypatch):
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    real, calls = pipeline.save_npy, []

    def dying(path, arr):
        if len(calls) == 7:  # the 4th segment dies between its feature file and its union file
            raise Killed
        calls.append(path)
        real(path, arr)

    monkeypatch.setattr(pipeline, "save_npy", dying)
    with pytest.raises(Killed):
        main(["features", "--root", str(root), "--vision", str(blip2), *FAST])
    monkeypatch.setattr(pipeline, "save_npy", real)
    partial = outputs(root)
    assert 0 < sum(k.endswith(".npy") for k in partial) < 32
    assert all(reference[k] == v for k, v in partial.items())  # what was written before the kill is final
    assert main(["features", "--root", str(root), "--vision", str(blip2), *FAST]) == 0
    assert outputs(root) == reference


def test_resume_after_sigkill_of_a_subprocess_is_byte_identical(root, blip2, reference):
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    cmd = [sys.executable, "-m", "uasan.extract", "features", "--root", str(root), "--vision", str(blip2), "--quiet",
           "--workers", "0", "--batch-size", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list((root / "features").rglob("*.npy")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    rc = proc.wait()
    assert rc == -signal.SIGKILL, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    written = [k for k in outputs(root) if k.endswith(".npy")]
    assert 0 < len(written) < 32
    assert main(["features", "--root", str(root), "--vision", str(blip2), *FAST]) == 0
    assert outputs(root) == reference
    assert not [p for d in OUTPUTS for p in (root / d).rglob(".*.tmp")]  # leftovers of the kill are cleaned up


def test_shards_union_to_the_single_run(root, blip2, reference, tmp_path, monkeypatch):
    shard0 = Path(shutil.copytree(root, tmp_path / "shard0"))
    shard1 = Path(shutil.copytree(root, tmp_path / "shard1"))
    assert main(["all", "--root", str(shard0), "--vision", str(blip2), "--shard", "0/2", *FAST]) == 0
    monkeypatch.setenv("RANK", "1")  # the other shard as torchrun would start it
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["all", "--root", str(shard1), "--vision", str(blip2), *FAST]) == 0
    a, b = outputs(shard0), outputs(shard1)
    assert a and b and not a.keys() & b.keys()
    assert {*(k.split("/")[2] for k in a)} == {"vidA", "vidC"} and {*(k.split("/")[2] for k in b)} == {"vidB"}
    assert {**a, **b} == reference


def test_bad_and_missing_videos_are_reported_and_skipped(root, blip2, capsys):
    (root / "videos/vidC.mp4").unlink()
    (root / "videos/vidB.mp4").write_bytes(b"\x00garbage" * 64)
    assert main(["all", "--root", str(root), "--vision", str(blip2), *FAST]) == 1
    out = capsys.readouterr().out
    assert "FAILED vidB: " in out and "vidB.mp4: cannot open the video" in out
    assert "FAILED vidC: vidC: no video file found" in out
    assert "3 videos: 1 written, 0 already complete, 2 failed" in out
    done = outputs(root)
    assert sum(k.startswith("features/train/vidA/") for k in done) == 3
    assert not any("/vidB/" in k and k.endswith(".npy") for k in done)
    # fixed videos: the next run does only what is missing
    world.write_video(root / "videos/vidB.mp4", world.render(1, 45, 2, 0))
    world.write_video(root / "videos/vidC.mp4", world.render(2, 60, 3, 10))
    assert main(["features", "--root", str(root), "--vision", str(blip2), *FAST]) == 0
    out = capsys.readouterr().out
    assert "1 already complete" in out and "10 segments written, 6 skipped as complete" in out


def test_video_shorter_than_annotated_keeps_finished_segments(root, blip2, capsys):
    world.write_video(root / "videos/vidA.mp4", world.render(0, 40, 3, 20))  # annotation says 60 frames
    assert main(["all", "--root", str(root), "--vision", str(blip2), *FAST, "--no-gt"]) == 1
    out = capsys.readouterr().out
    assert "FAILED vidA: " in out and "the video has 40 frames" in out
    assert (root / "union_features/train/vidA/vidA-0000-0030.npy").is_file()  # finished before the failure
    assert not (root / "features/train/vidA/vidA-0030-0060.npy").exists()
    assert (root / "features/test/vidC/vidC-0030-0060.npy").is_file()


def test_usage_errors_exit_2(root, blip2, tmp_path, capsys):
    assert main(["features", "--root", str(root), "--vision", str(tmp_path), "--quiet"]) == 2
    assert "not a vision tower checkpoint folder" in capsys.readouterr().err
    assert main(["tracklets", "--root", str(root), "--shard", "2/2"]) == 2
    assert "--shard: expected 0 <= I < N" in capsys.readouterr().err
    assert main(["features", "--root", str(tmp_path / "none"), "--vision", str(blip2)]) == 2
    assert "data set root does not exist" in capsys.readouterr().err
