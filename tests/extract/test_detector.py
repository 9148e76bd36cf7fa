"""``--detector``: a transformers object detector from a local folder produces the detections files."""

from __future__ import annotations

import json

import numpy as np
import torch
import world

from uasan.extract.__main__ import main
from uasan.extract.detections import read_detections


def test_detect_equals_the_model_run_by_hand(root, yolos):
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    for p in (root / "detections").iterdir():
        p.unlink()
    args = ["--root", str(root), "--detector", str(yolos), "--det-threshold", "0", "--det-batch", "4", "--quiet"]
    assert main(["detect", "--subsets", "train", *args]) == 0
    assert sorted(p.name for p in (root / "detections").iterdir()) == ["vidA.json", "vidB.json"]
    dets = read_detections(root / "detections/vidA.json")
    assert dets.num_frames == 60 and dets.labels is not None and set(dets.labels) <= set(world.CATEGORIES)
    # frame 33 by hand: processor → model → post-processing, on the frame decoded independently
    frame = world.decode_all(root / "videos/vidA.mp4")[33]
    model = AutoModelForObjectDetection.from_pretrained(yolos).eval()
    proc = AutoImageProcessor.from_pretrained(yolos)
    with torch.inference_mode():
        out = model(**proc(images=[frame], return_tensors="pt", input_data_format="channels_last"))
    r = proc.post_process_object_detection(out, threshold=0.0, target_sizes=[(world.H, world.W)])[0]
    order = np.argsort(-r["scores"].numpy(), kind="stable")
    want = np.clip(r["boxes"].numpy()[order], 0, [world.W, world.H, world.W, world.H])
    a, b = dets.offsets[33], dets.offsets[34]
    assert b - a == len(order) == 5
    np.testing.assert_allclose(dets.boxes[a:b], want, atol=0.006)
    np.testing.assert_allclose(dets.scores[a:b], r["scores"].numpy()[order], atol=6e-5)
    # resumable per video: a second run skips both
    assert main(["detect", "--subsets", "train", *args]) == 0


def test_all_with_a_detector_flows_to_features(root, yolos, blip2, capsys):
    for p in (root / "detections").iterdir():
        p.unlink()
    args = ["--root", str(root), "--detector", str(yolos), "--det-threshold", "0", "--vision", str(blip2), "--quiet"]
    assert main(["all", *args, "--min-length", "1", "--min-size", "0"]) == 0
    out = capsys.readouterr().out
    assert "detect: 3 videos: 3 written" in out and "features: 3 videos: 3 written" in out
    props = json.loads((root / "proposals/test/vidC/vidC-0015-0045.json").read_text())
    feats = np.load(root / "features/test/vidC/vidC-0015-0045.npy")
    union = np.load(root / "union_features/test/vidC/vidC-0015-0045.npy")
    assert len(props) >= 1 and feats.shape == (len(props), 16) and union.shape == (len(props) * (len(props) - 1), 16)
