"""Seq-NMS: C++ vs the Python reference on the same detections (30 frames × 20, 50 and 200 boxes per frame).

Run: ``pytest benchmarks/bench_seq_nms.py --benchmark-columns=median,iqr,rounds``. Each group reads side by side.
"""

from __future__ import annotations

import numpy as np
import pytest

from uasan.ops.seq_nms import seq_nms

FRAMES = 30
# boxes per frame -> (objects, detections per object, clutter boxes)
LAYOUTS = {20: (3, 4, 8), 50: (5, 6, 20), 200: (10, 12, 80)}


def detections(rng: np.random.Generator, num_boxes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame detector output in a 640×480 video: moving objects, each detected several times with jittered
    boxes and high scores, plus low-scoring clutter anywhere. Boxes (F, B, 4) float32, scores (F, B) float32."""
    objects, dups, clutter = LAYOUTS[num_boxes]
    t = np.arange(FRAMES)[:, None, None]
    pos = rng.uniform(0, 480, (1, objects, 2)) + np.cumsum(rng.normal(0, 4, (FRAMES, objects, 2)), axis=0)
    size = rng.uniform(40, 160, (1, objects, 2)) * np.exp(0.005 * t * rng.normal(0, 1, (1, objects, 2)))
    xy = pos[:, :, None] + rng.normal(0, 0.06, (FRAMES, objects, dups, 2)) * size[:, :, None]
    wh = size[:, :, None] * rng.uniform(0.85, 1.15, (FRAMES, objects, dups, 2))
    obj = np.concatenate([xy, xy + wh], axis=-1).reshape(FRAMES, objects * dups, 4)
    cxy = rng.uniform(0, 560, (FRAMES, clutter, 2))
    clut = np.concatenate([cxy, cxy + rng.uniform(10, 200, (FRAMES, clutter, 2))], axis=-1)
    boxes = np.concatenate([obj, clut], axis=1).astype(np.float32)
    obj_scores = rng.uniform(0.3, 1.0, (FRAMES, objects * dups))
    scores = np.concatenate([obj_scores, rng.uniform(0.0, 0.3, (FRAMES, clutter))], axis=1).astype(np.float32)
    order = rng.permutation(num_boxes)  # detectors do not sort objects first
    return boxes[:, order], scores[:, order]


@pytest.mark.parametrize("impl", ["ref", "cpp"])
@pytest.mark.parametrize(
    "num_boxes",
    [
        pytest.param(20, marks=pytest.mark.benchmark(group="seq_nms-20")),
        pytest.param(50, marks=pytest.mark.benchmark(group="seq_nms-50")),
        pytest.param(200, marks=pytest.mark.benchmark(group="seq_nms-200")),
    ],
)
def test_seq_nms(benchmark, bench, rng, num_boxes, impl):
    boxes, scores = detections(rng, num_boxes)
    expected, got = seq_nms(boxes, scores, impl="ref"), seq_nms(boxes, scores, impl=impl)
    assert len(expected) > 0
    assert [(t.start_frame, t.box_indices.tolist()) for t in got] == [
        (t.start_frame, t.box_indices.tolist()) for t in expected
    ]
    np.testing.assert_allclose([t.score for t in got], [t.score for t in expected], rtol=0, atol=1e-12)
    bench(benchmark, seq_nms, boxes, scores, impl=impl, slow=impl == "ref")
