"""End to end: tiny videos + detections → ``uasan.extract all`` → ``uasan.train`` → ``uasan.predict`` →
``uasan.evaluate``, each through its command line (the README's path from videos to a trained UASAN)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from uasan.extract.__main__ import main as extract

TINY = ["model.d=32", "model.L=2", "model.heads=2", "model.L_rel=2", "model.bridge_layers=1", "model.lora_r=2",
        "optim.epochs_stage1=1", "optim.epochs_stage2=1", "optim.warmup_steps=1", "data.batch_segments=8"]  # fmt: skip


@pytest.fixture(scope="module")
def blip2_itm(tmp_path_factory):
    """A tiny random full BLIP-2 (``Blip2ForImageTextRetrieval``) with its image processor: its vision tower extracts
    the features and the same folder is the bridge, as the README's path from videos does it."""
    pytest.importorskip("peft")
    from transformers import BlipImageProcessor

    from tests.models.tiny_blip2 import write_tiny_blip2

    folder = write_tiny_blip2(tmp_path_factory.mktemp("blip2_itm"), visual_dim=16, num_queries=4, embed_dim=16)
    BlipImageProcessor(size={"height": 28, "width": 28}).save_pretrained(folder)
    return folder


def test_videos_to_trained_uasan(root, blip2_itm, tmp_path):
    from uasan import evaluate, predict, train

    assert extract(["all", "--root", str(root), "--vision", str(blip2_itm), "--quiet"]) == 0
    run = tmp_path / "run"
    # own videos have no pretraining corpus: the BLIP-2 checkpoint is the pretrained bridge (no stage 0)
    args = ["--config", "synth", "--data-root", str(root), "--out", str(run), "--quiet", *TINY, "model.L=4",
            f"model.bridge_path={blip2_itm}"]  # fmt: skip
    assert train.main(args) == 0
    assert not (run / "stage0").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    for mode in ("SGDet", "SGCls", "PredCls"):
        assert 0.0 <= metrics[mode]["all"]["R@50"] <= 1.0
    pred = tmp_path / "pred.json"
    # PredCls (ground-truth classes): a model trained for one epoch may call every detection background in SGDet,
    # which would leave nothing to check here; the SGDet path ran above inside uasan.train
    args = ["--checkpoint", str(run / "model.pt"), "--data-root", str(root), "--out", str(pred), "--mode", "PredCls"]
    assert predict.main(args) == 0
    results = json.loads(pred.read_text())["results"]
    assert list(results) == ["vidC"] and results["vidC"]
    props = [json.loads(p.read_text()) for p in sorted((root / "gt_proposals/test/vidC").glob("*.json"))]
    starts = {tuple(np.round(p["bboxes"][0], 2)) for seg in props for p in seg}
    assert any(tuple(np.round(r["sub_traj"][0], 2)) in starts for r in results["vidC"])  # our trajectories, associated
    out = tmp_path / "metrics.json"
    assert (
        evaluate.main(["--groundtruth", str(root), "--predictions", str(pred), "--split", "all", "--out", str(out)])
        == 0
    )
    m = json.loads(out.read_text())["metrics"]
    assert set(m) >= {"mAP", "R@50", "R@100"} and all(0.0 <= v <= 1.0 for v in m.values())
