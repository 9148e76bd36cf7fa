"""A tiny VidVRD-layout data root with real video files: coloured rectangles moving over a grey background.

Videos are 64×48 (H.264, written with PyAV). Object k of a video is a rectangle of a fixed colour whose box is
known exactly (:func:`box_at`); the annotation holds those boxes, and the detections file holds, per frame, a
jittered copy of each box (high score), a shifted duplicate (lower score) and one small clutter box (low score),
with labels. Tiny random vision towers (BLIP-2 and CLIP configs) and a tiny random YOLOS detector are saved with
``save_pretrained`` so that the extractor loads them as it would a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

W, H = 64, 48
COLOURS = [(230, 40, 40), (40, 200, 60), (50, 80, 230)]
CATEGORIES = ["person", "dog", "horse"]  # horse is a novel object of the bundled VidVRD split
# (subset, vid, frames, objects present, first frame of the third object)
VIDEOS = [("train", "vidA", 60, 3, 20), ("train", "vidB", 45, 2, 0), ("test", "vidC", 60, 3, 10)]


def box_at(seed: int, k: int, f: int) -> list[float]:
    """Exact box of object k at frame f in video ``seed``: moves about half a pixel a frame."""
    x0 = [4 + 3 * seed, 40 - 2 * seed, 20][k]
    y0 = [6, 20 + seed, 2][k]
    w, h = [(14, 20), (18, 10), (10, 26)][k]
    vx = [0.5, -0.4, 0.3][k]
    x = x0 + vx * f
    return [float(x), float(y0), float(x + w), float(y0 + h)]


def present(frames: int, objects: int, late: int, k: int, f: int) -> bool:
    return k < objects and (k < 2 or f >= late)


def render(seed: int, frames: int, objects: int, late: int) -> np.ndarray:
    """(F, H, W, 3) uint8 frames."""
    out = np.full((frames, H, W, 3), 90, dtype=np.uint8)
    out[:, :, :, 2] = 110
    for f in range(frames):
        for k in range(objects):
            if present(frames, objects, late, k, f):
                x1, y1, x2, y2 = (int(round(v)) for v in box_at(seed, k, f))
                out[f, max(y1, 0) : y2, max(x1, 0) : x2] = COLOURS[k]
    return out


def write_video(path: Path, frames: np.ndarray, fps: int = 30) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "18", "preset": "ultrafast"}
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def annotation(vid: str, seed: int, frames: int, objects: int, late: int) -> dict:
    trajs = []
    for f in range(frames):
        items = []
        for k in range(objects):
            if present(frames, objects, late, k, f):
                b = box_at(seed, k, f)
                items.append({"tid": k, "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), b, strict=True))})
        trajs.append(items)
    rels = [{"subject_tid": 0, "object_tid": 1, "predicate": "chase", "begin_fid": 0, "end_fid": frames},
            {"subject_tid": 1, "object_tid": 0, "predicate": "behind", "begin_fid": 0, "end_fid": 30}]  # fmt: skip
    if objects == 3:
        rels.append({"subject_tid": 2, "object_tid": 0, "predicate": "above", "begin_fid": late, "end_fid": frames})
    return {
        "video_id": vid, "frame_count": frames, "fps": 30, "width": W, "height": H,
        "subject/objects": [{"tid": k, "category": CATEGORIES[k]} for k in range(objects)],
        "trajectories": trajs, "relation_instances": rels,
    }  # fmt: skip


def detections(seed: int, frames: int, objects: int, late: int) -> dict:
    rng = np.random.default_rng(seed)
    out = []
    for f in range(frames):
        boxes, scores, labels = [], [], []
        for k in range(objects):
            if not present(frames, objects, late, k, f):
                continue
            b = np.array(box_at(seed, k, f)) + rng.normal(0, 0.3, 4)
            boxes += [b.tolist(), (b + [3, 2, 3, 2]).tolist()]
            scores += [round(float(rng.uniform(0.7, 0.95)), 4), round(float(rng.uniform(0.2, 0.4)), 4)]
            labels += [CATEGORIES[k], CATEGORIES[k]]
        cx, cy = rng.uniform(0, W - 8), rng.uniform(0, H - 8)
        boxes.append([cx, cy, cx + rng.uniform(2, 8), cy + rng.uniform(2, 8)])
        scores.append(round(float(rng.uniform(0.05, 0.15)), 4))
        labels.append("car")
        order = rng.permutation(len(boxes))
        out.append({"boxes": [[round(v, 2) for v in boxes[i]] for i in order],
                    "scores": [scores[i] for i in order], "labels": [labels[i] for i in order]})  # fmt: skip
    return {"video_id": "", "frames": out}


def make_root(root: Path, videos=VIDEOS, with_detections: bool = True) -> Path:
    """Writes annotations, videos (ROOT/videos/<vid>.mp4) and detections (ROOT/detections/<vid>.json)."""
    for seed, (subset, vid, frames, objects, late) in enumerate(videos):
        (root / subset).mkdir(parents=True, exist_ok=True)
        (root / subset / f"{vid}.json").write_text(json.dumps(annotation(vid, seed, frames, objects, late)))
        write_video(root / "videos" / f"{vid}.mp4", render(seed, frames, objects, late))
        if with_detections:
            d = detections(seed, frames, objects, late)
            d["video_id"] = vid
            (root / "detections").mkdir(parents=True, exist_ok=True)
            (root / "detections" / f"{vid}.json").write_text(json.dumps(d))
    return root


def decode_all(path: Path) -> np.ndarray:
    """Every frame of a video, decoded directly with PyAV (independent of uasan.extract.video)."""
    import av

    with av.open(str(path)) as c:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)])


def tiny_blip2_tower(folder: Path, seed: int = 0) -> Path:
    """A random Blip2VisionModel (D = 16, 5 tokens at 16 px) and a BlipImageProcessor, saved as a checkpoint."""
    import torch
    from transformers import Blip2VisionConfig, Blip2VisionModel, BlipImageProcessor

    torch.manual_seed(seed)
    cfg = Blip2VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            image_size=16, patch_size=8, initializer_range=0.2)  # fmt: skip
    Blip2VisionModel(cfg).save_pretrained(folder)
    BlipImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def tiny_clip_tower(folder: Path, seed: int = 0) -> Path:
    """A random CLIPVisionModel (D = 12, 10 tokens: 24 px, patch 8) with a CLIPImageProcessor (resize + crop)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=12, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                           image_size=24, patch_size=8, projection_dim=8)  # fmt: skip
    CLIPVisionModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24}).save_pretrained(folder)
    return folder


def tiny_yolos(folder: Path, seed: int = 0) -> Path:
    """A random YOLOS detector (5 detection tokens, 3 classes) with its image processor."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(seed)
    labels = dict(enumerate(CATEGORIES))
    cfg = YolosConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      image_size=[32, 32], patch_size=8, num_detection_tokens=5, num_labels=3,
                      id2label=labels, label2id={c: i for i, c in labels.items()})  # fmt: skip
    YolosForObjectDetection(cfg).save_pretrained(folder)
    YolosImageProcessor(size={"shortest_edge": 32, "longest_edge": 64}).save_pretrained(folder)
    return folder
