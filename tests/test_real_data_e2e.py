"""Issue 9 end to end: ``python -m uasan.train --config vidvrd`` on fixture data in RePro's published layout with a
tiny random BLIP-2 checkpoint as ``model.bridge_path`` trains, predicts and evaluates, with no conversion step;
``python -m uasan.predict`` then reads the same tree with the trained model."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
from tests.data import layout_fixtures as lf  # noqa: E402
from tests.models.tiny_blip2 import write_tiny_blip2  # noqa: E402
from uasan import predict, train  # noqa: E402

D_V = 24  # the tiny checkpoint's vision width = the fixture features' width

SMALL = [
    "model.d=32", "model.L=4", "model.heads=2", "model.L_rel=2", "model.L_mot=1", "model.embed_dim=16",
    "optim.epochs_stage1=1", "optim.epochs_stage2=1", "optim.lr=1e-3", "data.num_workers=0", "train.log_every=1",
]  # fmt: skip


def test_repro_layout_with_a_tiny_blip2_checkpoint(tmp_path, capsys):
    world = lf.make_world("vidvrd", dim=D_V)
    root = tmp_path / "repro"
    overrides = lf.write_repro(root, world)  # + the extracted per-pair union features RePro does not ship
    blip2 = write_tiny_blip2(tmp_path / "blip2", visual_dim=D_V, num_queries=4, embed_dim=16)
    out = tmp_path / "run"
    args = ["--config", "vidvrd", "--data-root", str(root), "--out", str(out), "--quiet",
            f"model.bridge_path={blip2}", *SMALL, *overrides]  # fmt: skip
    assert train.main(args) == 0, capsys.readouterr().err
    assert not (out / "stage0").exists()  # the checkpoint is stage 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"random", "base_probe", "stage0_zero_shot"}
    for who in (metrics, *metrics["baselines"].values()):
        for mode in ("SGDet", "SGCls", "PredCls"):
            assert set(who[mode]["all"]) == {"mAP", "R@50", "R@100", "ci95"}
    md = (out / "metrics.md").read_text()
    assert "| UASAN | PredCls | " in md and "stage-0 zero-shot" in md
    pred = json.loads((out / "predictions" / "PredCls_all.json").read_text())
    assert pred["version"] == "VERSION 1.0" and set(pred["results"]) <= {v.vid for v in world.videos}
    # the trained model through the prediction command, on the same published tree (the model file's config names
    # the layout's folders)
    cli = ["--checkpoint", str(out / "model.pt"), "--data-root", str(root), "--out", str(tmp_path / "p.json"),
           "--mode", "PredCls", "--split", "all", "--quiet"]  # fmt: skip
    assert predict.main(cli) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "p.json").read_text())["results"] == pred["results"]


def test_validation_holds_out_the_configured_videos(tmp_path, capsys):
    """data.val_fraction / data.val_seed other than the defaults: stage-1 and stage-2 validation read the same
    held-out videos as the configuration says (the ground truth and the predictions agree), and training never
    reads the test folders (--skip-eval)."""
    world = lf.make_world("vidvrd", dim=D_V)
    root = tmp_path / "repro"
    overrides = lf.write_repro(root, world)
    blip2 = write_tiny_blip2(tmp_path / "blip2", visual_dim=D_V, num_queries=4, embed_dim=16)
    out = tmp_path / "run"
    args = ["--config", "vidvrd", "--data-root", str(root), "--out", str(out), "--quiet", "--skip-eval",
            f"model.bridge_path={blip2}", *SMALL, *overrides, "data.val_fraction=0.5", "data.val_seed=3"]  # fmt: skip
    assert train.main(args) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "stage2" / "log.jsonl").read_text().splitlines()]
    assert any("val_PredCls_base_R@50" in r.get("metrics", {}) for r in records)


def test_no_held_out_videos_says_how_to_train_without_validation(tmp_path, capsys):
    world = lf.make_world("vidvrd", dim=D_V)
    root = tmp_path / "repro"
    overrides = lf.write_repro(root, world)
    blip2 = write_tiny_blip2(tmp_path / "blip2", visual_dim=D_V, num_queries=4, embed_dim=16)
    base = ["--config", "vidvrd", "--data-root", str(root), "--quiet", "--skip-eval", f"model.bridge_path={blip2}",
            *SMALL, *overrides, "data.val_fraction=0"]  # fmt: skip
    assert train.main([*base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("subset 'val' is empty") == 1 and "train.eval_every_epoch=0" in err
    assert not (tmp_path / "a" / "stage1").exists()  # refused before anything was trained
    assert train.main([*base, "--out", str(tmp_path / "b"), "train.eval_every_epoch=0"]) == 0, capsys.readouterr().err
