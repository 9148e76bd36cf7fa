"""Console output without a terminal (uasan._console) and interrupted runs (uasan._interrupt): plain progress lines,
SIGTERM as Ctrl-C, the message that says how to continue."""

from __future__ import annotations

import os
import signal
import time

import pytest

from uasan import _console as console
from uasan._interrupt import Terminated, exit_status, interrupted_message, sigterm_as_interrupt


def test_plain_progress_lines_without_a_terminal(capsys):
    items = list(console.progress(range(3), "UASAN: predict SGDet", interval=0.0, terminal=False))
    assert items == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "UASAN: predict SGDet: started (3 batches)"
    assert lines[1].startswith("UASAN: predict SGDet: 1/3 batches, ")
    assert lines[-1].startswith("UASAN: predict SGDet: done, 3 batches in ")
    assert all("\r" not in ln for ln in lines)
    # the default interval: a start and a finish line only for a quick loop; nothing at all when disabled
    list(console.progress(iter(range(5)), "baseline random: predict SGCls", terminal=False))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "baseline random: predict SGCls: started" and len(lines) == 2, lines
    assert list(console.progress(range(2), "x", enabled=False, terminal=False)) == [0, 1]
    assert capsys.readouterr().err == ""


def test_phase_lines_only_without_a_terminal(capsys):
    with console.phase("uasan.train: generating the synthetic world in OUT/data", terminal=False):
        pass
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "uasan.train: generating the synthetic world in OUT/data ..."
    assert err[1].startswith("uasan.train: generating the synthetic world in OUT/data: done in ")
    with console.phase("quiet", terminal=True):
        pass
    with console.phase("quiet", enabled=False, terminal=False):
        pass
    assert capsys.readouterr().err == ""
    assert console.is_terminal() is False  # pytest captures stderr


def test_sigterm_raises_terminated_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at once; never reached
    assert signal.getsignal(signal.SIGTERM) == before
    assert exit_status(Terminated()) == 143 and exit_status(KeyboardInterrupt()) == 130


def test_interrupted_message(tmp_path):
    argv = ["--out", str(tmp_path / "run"), "--overwrite", "optim.lr=0.1"]
    out = tmp_path / "run"
    msg = interrupted_message(Terminated(), out, argv)
    assert msg.startswith("uasan.train: interrupted by SIGTERM; nothing was written to ")  # nothing to resume yet
    assert msg.endswith("python -m uasan.train --out " + str(out) + " --overwrite optim.lr=0.1")
    (out / "stage0").mkdir(parents=True)
    (out / "config.yaml").write_text("")
    msg = interrupted_message(KeyboardInterrupt(), out, argv, world_size=2)
    assert msg == (
        f"uasan.train: interrupted; {out} keeps every finished epoch. Continue with: torchrun --nproc_per_node=2 "
        f"-m uasan.train --out {out} optim.lr=0.1 --resume"
    )


def test_world_generation_says_when_it_starts_and_ends(tmp_path, capsys, monkeypatch):
    """Without a terminal, the minute or two of world generation is not silent: a start and a finish line (and no
    carriage-return stream from the generator's own bar, which is turned off)."""
    from uasan import train
    from uasan.config import TrainConfig
    from uasan.data import synth

    seen = {}

    def generate(root, seed, progress):
        seen["progress"] = progress
        (root / "meta.json").parent.mkdir(parents=True)
        (root / "meta.json").write_text("{}")
        return root

    monkeypatch.setattr(synth, "generate", generate)
    root = train.prepare_data(TrainConfig(), tmp_path, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert root == tmp_path / "data" and seen == {"progress": False}
    assert err[0] == f"uasan.train: generating the synthetic world in {root} (1-2 minutes) ..."
    assert err[1].startswith(f"uasan.train: generating the synthetic world in {root} (1-2 minutes): done in ")
