"""Run-folder guards, config comparison and safe loading of torch files (uasan.engine.run_folder / checkpoint)."""

from __future__ import annotations

import os

import pytest
import torch

from uasan.engine.run_folder import clear_entries, config_diff, plan_run_folder
from uasan.files import check_writable, safe_torch_load

OWNED = ("config.yaml", "stage*", "model.pt", "data", ".*.tmp")


def test_plan_run_folder(tmp_path):
    out = tmp_path / "run"
    assert plan_run_folder(out, owned=OWNED) == []  # does not exist yet: fine, and nothing is created
    assert not out.exists()
    out.mkdir()
    (out / "data").mkdir()
    assert plan_run_folder(out, owned=OWNED, prior=["data"]) == []  # only the inputs: a fresh run may start
    (out / "config.yaml").write_text("x")
    (out / "stage1").mkdir()
    with pytest.raises(ValueError, match=r"already holds a run \(config.yaml, stage1\).*--resume.*--overwrite"):
        plan_run_folder(out, owned=OWNED, prior=["data"])
    assert plan_run_folder(out, owned=OWNED, prior=["data", "stage1", "config.yaml"]) == []  # a second stage
    assert plan_run_folder(out, owned=OWNED, resume=True) == []
    to_clear = plan_run_folder(out, owned=OWNED, prior=["data"], overwrite=True)
    assert sorted(p.name for p in to_clear) == ["config.yaml", "stage1"]
    clear_entries(to_clear)
    assert sorted(os.listdir(out)) == ["data"]
    (out / "mine.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not a uasan run folder.*mine.txt"):
            plan_run_folder(out, owned=OWNED, prior=["data"], overwrite=overwrite)
    with pytest.raises(ValueError, match="choose one"):
        plan_run_folder(out, owned=OWNED, resume=True, overwrite=True)


def test_check_writable(tmp_path):
    check_writable(tmp_path / "a" / "b", "--out")  # creatable under a writable folder; nothing is left behind
    assert os.listdir(tmp_path) == []
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="--out: .* is a file, not a folder"):
        check_writable(tmp_path / "f", "--out")
    with pytest.raises(ValueError, match="--out: cannot create .*: .* is a file, not a folder"):
        check_writable(tmp_path / "f" / "x.json", "--out", is_dir=False)
    with pytest.raises(ValueError, match="is a folder, not a file"):
        check_writable(tmp_path, "--out", is_dir=False)


def test_config_diff():
    a = {"model": {"d": 32, "L": 2}, "train": {"seed": 0, "num_threads": 1}}
    b = {"model": {"d": 64, "L": 2}, "train": {"seed": 1, "num_threads": 2, "new": True}}
    assert config_diff(a, b, ignore=["train.num_threads"]) == [
        "model.d: 32 → 64",
        "train.new: '<absent>' → True",
        "train.seed: 0 → 1",
    ]
    assert config_diff(a, a) == []


class _Runs:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_safe_torch_load(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2), "meta": {"a": [1, "x", None]}}, good)
    assert safe_torch_load(good, "--checkpoint")["meta"] == {"a": [1, "x", None]}
    evil = tmp_path / "evil.pt"
    torch.save({"x": _Runs(tmp_path / "marker")}, evil)
    with pytest.raises(ValueError, match=rf"--checkpoint: {evil} holds a reference to .*open.*could run code"):
        safe_torch_load(evil, "--checkpoint")
    assert not (tmp_path / "marker").exists()
    torn = tmp_path / "torn.pt"
    torn.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"--checkpoint: {torn} cannot be read"):
        safe_torch_load(torn, "--checkpoint")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02junk" * 10)
    with pytest.raises(ValueError, match=rf"--checkpoint: {junk} (is not a torch file|cannot be read)"):
        safe_torch_load(junk, "--checkpoint")
    with pytest.raises(ValueError, match="does not exist"):
        safe_torch_load(tmp_path / "none.pt", "--checkpoint")
