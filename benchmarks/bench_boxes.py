"""Pair ops and vIoU: C++ vs the vectorised PyTorch path vs the NumPy-loop reference, on the same inputs.

Run: ``pytest benchmarks/bench_boxes.py --benchmark-columns=median,iqr,rounds``. Each group reads side by side.
"""

from __future__ import annotations

import numpy as np
import pytest

from uasan import ops

T = 30


def segment(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N smoothly moving trajectories over a 30-frame window, some entering late or leaving early."""
    start = rng.uniform(0, 600, (n, 1, 2)) + np.cumsum(rng.normal(0, 3, (n, T, 2)), axis=1)
    size = rng.uniform(20, 200, (n, 1, 2)) * np.exp(np.cumsum(rng.normal(0, 0.01, (n, T, 2)), axis=1))
    boxes = np.concatenate([start, start + size], axis=-1).astype(np.float32)  # (N, T, 4)
    frames = np.arange(T)
    first, last = rng.integers(0, 10, n), rng.integers(20, T, n)
    valid = (frames >= first[:, None]) & (frames <= last[:, None])  # (N, T)
    pairs = np.array([(s, o) for s in range(n) for o in range(n) if s != o], dtype=np.int64)  # (P, 2)
    return boxes, valid, pairs


PAIR_OPS = ["pair_union_boxes", "pair_motion_features", "pair_giou_start_end"]


@pytest.mark.parametrize("impl", ["ref", "torch", "cpp"])
@pytest.mark.parametrize("n", [10, 50, 100])
@pytest.mark.parametrize("op", PAIR_OPS)
def test_pair_ops(benchmark, bench, rng, op, n, impl):
    boxes, valid, pairs = segment(rng, n)
    fn = getattr(ops, op)
    expected, got = fn(boxes, valid, pairs, impl="ref"), fn(boxes, valid, pairs, impl=impl)
    for e, g in zip(*(x if isinstance(x, tuple) else (x,) for x in (expected, got)), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    benchmark.group = f"{op}-N{n}"
    bench(benchmark, fn, boxes, valid, pairs, impl=impl, slow=impl == "ref")


def trajectories(rng: np.random.Generator, count: int) -> list[tuple[int, np.ndarray]]:
    """Trajectories of 30–300 frames starting anywhere in a 900-frame video."""
    out = []
    for _ in range(count):
        length = int(rng.integers(30, 301))
        xy = rng.uniform(0, 600, 2) + np.cumsum(rng.normal(0, 2, (length, 2)), axis=0)
        wh = rng.uniform(20, 200, 2)
        out.append((int(rng.integers(0, 900 - length)), np.concatenate([xy, xy + wh], axis=1)))
    return out


@pytest.mark.parametrize("impl", ["ref", "torch", "cpp"])
@pytest.mark.parametrize("op", ["viou_matrix", "vpoi_matrix"])
def test_traj_matrix(benchmark, bench, rng, op, impl):
    a, b = trajectories(rng, 200), trajectories(rng, 200)
    fn = getattr(ops, op)
    np.testing.assert_allclose(fn(a, b, impl=impl), fn(a, b, impl="ref"), atol=1e-12)
    benchmark.group = f"{op}-200x200"
    bench(benchmark, fn, a, b, impl=impl, slow=impl == "ref")
