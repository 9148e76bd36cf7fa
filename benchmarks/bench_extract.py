"""Feature extraction: the fast engine (deduplicated, batched crops, decoding overlapped with the model) against the
direct computation (each crop alone through processor and tower, then the mean), on the same video and trajectories.

Workload: a 90-frame 160×120 H.264 video (written here with PyAV) with 6 moving rectangles, i.e. 5 segments of
6 trajectories and 30 ordered pairs, K = 8 sampled frames: 1,440 crop requests (288 per segment); a tiny random
BLIP-2 vision tower (2 layers, D = 32, 32-px input). Both sides decode the video themselves. Throughput is
requests / median time (crops/s) and segments / median time. The GPU row (same workload, bf16) skips without CUDA.

Run: ``pytest benchmarks/bench_extract.py --benchmark-enable --benchmark-columns=median,iqr,rounds``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("transformers")
import torch  # noqa: E402

from tests.common import needs_cuda  # noqa: E402
from uasan.extract.features import FeatureEngine, SegmentJob, VideoTask, segment_features_ref  # noqa: E402
from uasan.extract.towers import load_vision_tower  # noqa: E402
from uasan.extract.video import iter_frames  # noqa: E402

W, H, FRAMES, OBJECTS, K = 160, 120, 90, 6, 8
SEGMENTS = [(s, s + 30) for s in range(0, FRAMES - 30 + 1, 15)]


def _boxes(rng: np.random.Generator) -> np.ndarray:
    """(OBJECTS, FRAMES, 4) boxes moving smoothly inside the frame."""
    size = rng.uniform(15, 45, (OBJECTS, 1, 2))
    start = rng.uniform(0, [W - 45, H - 45], (OBJECTS, 1, 2))
    step = rng.uniform(-0.4, 0.4, (OBJECTS, 1, 2))
    xy = np.clip(start + step * np.arange(FRAMES)[None, :, None], 0, [W - 45, H - 45])
    return np.concatenate([xy, xy + size], axis=-1)


def _write_video(path, boxes: np.ndarray, rng: np.random.Generator) -> None:
    import av

    colours = rng.integers(30, 255, (OBJECTS, 3))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "20", "preset": "ultrafast"}
        for f in range(FRAMES):
            img = np.full((H, W, 3), 100, np.uint8)
            for k in range(OBJECTS):
                x1, y1, x2, y2 = np.rint(boxes[k, f]).astype(int)
                img[y1:y2, x1:x2] = colours[k]
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    from transformers import Blip2VisionConfig, Blip2VisionModel, BlipImageProcessor

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("bench_extract")
    boxes = _boxes(rng)
    video = folder / "bench.mp4"
    _write_video(video, boxes, rng)
    torch.manual_seed(0)
    cfg = Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            image_size=32, patch_size=8, initializer_range=0.2)  # fmt: skip
    Blip2VisionModel(cfg).save_pretrained(folder / "tower")
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder / "tower")
    return video, boxes, folder / "tower"


def _jobs(boxes: np.ndarray, sink: dict) -> list[SegmentJob]:
    valid = np.ones((OBJECTS, 30), bool)
    return [
        SegmentJob(f"s{fs}", fs, boxes[:, fs:fe], valid, lambda t, u, fs=fs: sink.__setitem__(fs, (t, u)))
        for fs, fe in SEGMENTS
    ]


def fast(video, boxes, tower, batch_size: int = 64) -> dict:
    out: dict = {}
    FeatureEngine(tower, frames=K, batch_size=batch_size, workers=1).run(
        [VideoTask("bench", video, lambda: _jobs(boxes, out))]
    )
    return out


def naive(video, boxes, tower) -> dict:
    frames = dict(iter_frames(video))
    valid = np.ones((OBJECTS, 30), bool)
    return {fs: segment_features_ref(frames.__getitem__, boxes[:, fs:fe], valid, fs, tower, k=K) for fs, fe in SEGMENTS}


REQUESTS = len(SEGMENTS) * (OBJECTS + OBJECTS * (OBJECTS - 1)) * K  # 1,440


def _agree_then_bench(benchmark, bench, workload, path: str, device: str, rtol: float, atol: float) -> None:
    """Both paths give the same features (within ``rtol`` / ``atol``), then ``path`` is timed."""
    video, boxes, tower_dir = workload
    tower = load_vision_tower(tower_dir, device)
    got, want = fast(video, boxes, tower), naive(video, boxes, tower)
    assert got.keys() == want.keys() == {fs for fs, _ in SEGMENTS}
    for fs in want:
        for a, b in zip(got[fs], want[fs], strict=True):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    fn = fast if path == "fast" else naive
    benchmark.extra_info.update(crop_requests=REQUESTS, segments=len(SEGMENTS))
    bench(benchmark, fn, video, boxes, tower, slow=path == "naive")


@pytest.mark.benchmark(group="extract-cpu")
@pytest.mark.parametrize("path", ["naive", "fast"])
def test_extract_cpu(benchmark, bench, workload, path):
    _agree_then_bench(benchmark, bench, workload, path, "cpu", 1e-4, 1e-5)


@needs_cuda
@pytest.mark.benchmark(group="extract-gpu")
@pytest.mark.parametrize("path", ["naive", "fast"])
def test_extract_gpu(benchmark, bench, workload, path):
    # bf16 autocast: batched and single-crop kernels round differently
    _agree_then_bench(benchmark, bench, workload, path, "cuda", 5e-2, 5e-2)
