"""The fast feature engine equals the direct computation (crop → processor → tower → mean), on real video files."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import world

from uasan.data import all_pairs, read_proposals
from uasan.extract import features as F
from uasan.extract.__main__ import main
from uasan.extract.crops import plan_segment
from uasan.extract.features import FeatureEngine, SegmentJob, VideoTask, segment_features_ref
from uasan.extract.towers import load_vision_tower

ARGS = ["--quiet", "--workers", "1", "--batch-size", "7"]  # 7: batches end inside segments and frames


def _extract(root, tower_dir, *extra):
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    assert main(["features", "--root", str(root), "--vision", str(tower_dir), *ARGS, *extra]) == 0


def _check_segment(root, tower, kind_dirs, subset, vid, tag, fstart, tokens, k=8):
    prop_dir, feat_dir, union_dir = kind_dirs
    prop = read_proposals(root / prop_dir / subset / vid / f"{tag}.json", filter=False)
    boxes, valid = prop.padded(30)
    frames = world.decode_all(root / "videos" / f"{vid}.mp4")
    ref_traj, ref_union = segment_features_ref(lambda f: frames[f], boxes, valid, fstart, tower, k=k, tokens=tokens)
    traj = np.load(root / feat_dir / subset / vid / f"{tag}.npy")
    union = np.load(root / union_dir / subset / vid / f"{tag}.npy")
    n = len(prop)
    shape = (tower.num_tokens, tower.dim) if tokens else (tower.dim,)
    assert traj.shape == (n, *shape) and union.shape == (n * (n - 1), *shape)
    assert traj.dtype == np.float32
    np.testing.assert_allclose(traj, ref_traj, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(union, ref_union, rtol=1e-4, atol=1e-5)
    assert np.abs(traj).sum(axis=tuple(range(1, traj.ndim))).min() > 0  # every trajectory has crops
    return traj, union


@pytest.mark.parametrize(
    ("tower_fixture", "tokens"),
    [("blip2", False), ("blip2", True), ("clip", False)],
    ids=["blip2", "blip2-tokens", "clip"],
)
def test_cli_features_equal_direct_computation(root, request, tower_fixture, tokens):
    tower_dir = request.getfixturevalue(tower_fixture)
    _extract(root, tower_dir, *(["--tokens"] if tokens else []))
    tower = load_vision_tower(tower_dir, "cpu")
    det = ("proposals", "features", "union_features")
    gt = ("gt_proposals", "gt_features", "gt_union_features")
    # detected tracklets with three trajectories (6 pairs) and ground truth with a late object (partial pairs)
    _check_segment(root, tower, det, "train", "vidA", "vidA-0015-0045", 15, tokens)
    _check_segment(root, tower, gt, "test", "vidC", "vidC-0000-0030", 0, tokens)
    if not tokens:
        _check_segment(root, tower, det, "test", "vidC", "vidC-0030-0060", 30, tokens)


def test_pair_rows_follow_the_data_layer_and_union_is_symmetric(root, blip2):
    _extract(root, blip2)
    prop = read_proposals(root / "gt_proposals/train/vidA/vidA-0030-0060.json", filter=False)
    union = np.load(root / "gt_union_features/train/vidA/vidA-0030-0060.npy")
    pairs = all_pairs(len(prop))
    row = {(int(s), int(o)): r for r, (s, o) in enumerate(pairs)}
    for (s, o), r in row.items():  # the union box of (s, o) is that of (o, s): same crops, same feature
        np.testing.assert_array_equal(union[r], union[row[(o, s)]])
    assert not np.allclose(union[row[(0, 1)]], union[row[(0, 2)]])


def test_sampled_frames_option_and_float16(root, blip2):
    _extract(root, blip2, "--frames", "3", "--dtype", "float16", "--no-gt")
    assert not (root / "gt_features").exists()
    tower = load_vision_tower(blip2, "cpu")
    prop = read_proposals(root / "proposals/train/vidB/vidB-0015-0045.json", filter=False)
    boxes, valid = prop.padded(30)
    frames = world.decode_all(root / "videos/vidB.mp4")
    ref, _ = segment_features_ref(lambda f: frames[f], boxes, valid, 15, tower, k=3)
    got = np.load(root / "features/train/vidB/vidB-0015-0045.npy")
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), ref, rtol=2e-3, atol=2e-3)


def _jobs(root, vid, fstarts, sink):
    jobs = []
    for fs in fstarts:
        tag = f"{vid}-{fs:04d}-{fs + 30:04d}"
        prop = read_proposals(root / "proposals" / "train" / vid / f"{tag}.json", filter=False)
        boxes, valid = prop.padded(30)
        jobs.append(SegmentJob(tag, fs, boxes, valid, lambda t, u, tag=tag: sink.__setitem__(tag, (t, u))))
    return jobs


@pytest.mark.parametrize(("workers", "batch"), [(0, 1), (2, 5), (1, 1000)])
def test_engine_is_independent_of_workers_and_batching(root, blip2, workers, batch):
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    tower = load_vision_tower(blip2, "cpu")
    ref, got = {}, {}
    video = root / "videos/vidA.mp4"
    FeatureEngine(tower, batch_size=64, workers=1).run(
        [VideoTask("vidA", video, lambda: _jobs(root, "vidA", [0, 15, 30], ref))]
    )
    FeatureEngine(tower, batch_size=batch, workers=workers).run(
        [VideoTask("vidA", video, lambda: _jobs(root, "vidA", [0, 15, 30], got))]
    )
    assert ref.keys() == got.keys() == {"vidA-0000-0030", "vidA-0015-0045", "vidA-0030-0060"}
    for tag in ref:
        for a, b in zip(ref[tag], got[tag], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_frames_are_not_kept_alive(root, blip2, monkeypatch):
    """Bounded memory: when a frame is decoded, at most the previous one (still named by the producer's loop) is
    alive; every earlier frame is freed, since crops are copies. The bound does not grow with the video."""
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    alive_max = []
    real = F.iter_frames

    def watched(path, frames):
        refs = []
        for f, img in real(path, frames):
            refs = [r for r in refs if r() is not None]
            alive_max.append(len(refs))
            refs.append(weakref.ref(img))
            yield f, img
            del img

    monkeypatch.setattr(F, "iter_frames", watched)
    tower = load_vision_tower(blip2, "cpu")
    sink = {}
    FeatureEngine(tower, batch_size=4, workers=1).run(
        [VideoTask("vidA", root / "videos/vidA.mp4", lambda: _jobs(root, "vidA", [0, 15, 30], sink))]
    )
    assert len(sink) == 3 and len(alive_max) > 20
    assert max(alive_max) <= 1


def test_plan_counts_dedup(root):
    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    prop = read_proposals(root / "proposals/train/vidA/vidA-0015-0045.json", filter=False)
    boxes, valid = prop.padded(30)
    plan = plan_segment(boxes, valid, 15, world.W, world.H, 8)
    n = len(prop)
    # every full-length trajectory has 8 crops; unordered pairs share theirs: at most n*8 + n(n-1)/2*8 crops
    assert plan.num_requests == int(plan.counts.sum())
    assert plan.num_crops <= n * 8 + n * (n - 1) // 2 * 8 < plan.num_requests


def test_slow_model_fast_producer(root, blip2):
    """The producer finishes (and shuts its processor pool) long before the model: queued work must still run."""
    import time

    assert main(["tracklets", "--root", str(root), "--quiet"]) == 0
    tower = load_vision_tower(blip2, "cpu")

    class Slow:
        dim, num_tokens, fill, preprocess = tower.dim, tower.num_tokens, tower.fill, tower.preprocess

        def encode(self, pixels, tokens):
            time.sleep(0.01)
            return tower.encode(pixels, tokens)

    ref, got = {}, {}
    FeatureEngine(tower, batch_size=3, workers=0).run(
        [VideoTask("vidA", root / "videos/vidA.mp4", lambda: _jobs(root, "vidA", [0, 15, 30], ref))]
    )
    FeatureEngine(Slow(), batch_size=3, workers=2, prefetch=64).run(
        [VideoTask("vidA", root / "videos/vidA.mp4", lambda: _jobs(root, "vidA", [0, 15, 30], got))]
    )
    assert got.keys() == ref.keys() and len(got) == 3
    for tag in ref:
        for a, b in zip(ref[tag], got[tag], strict=True):
            np.testing.assert_array_equal(a, b)


def test_empty_and_single_trajectory_segments(root, blip2):
    tower = load_vision_tower(blip2, "cpu")
    got = {}

    def job(tag, boxes, valid):
        return SegmentJob(tag, 0, boxes, valid, lambda t, u: got.__setitem__(tag, (t, u)))

    one = np.array([[world.box_at(0, 0, f) for f in range(30)]])
    apart = np.stack([one[0], one[0] + 20])  # two trajectories that never co-occur
    valid_apart = np.zeros((2, 30), bool)
    valid_apart[0, :10], valid_apart[1, 20:] = True, True
    jobs = [job("empty", np.zeros((0, 30, 4)), np.zeros((0, 30), bool)), job("one", one, np.ones((1, 30), bool)),
            job("apart", apart, valid_apart)]  # fmt: skip
    FeatureEngine(tower, workers=0).run([VideoTask("vidA", root / "videos/vidA.mp4", lambda: jobs)])
    assert got["empty"][0].shape == (0, 16) and got["empty"][1].shape == (0, 16)
    assert got["one"][0].shape == (1, 16) and got["one"][1].shape == (0, 16)
    t, u = got["apart"]
    assert t.shape == (2, 16) and (np.abs(t).sum(1) > 0).all() and u.shape == (2, 16) and (u == 0).all()
    frames = world.decode_all(root / "videos/vidA.mp4")
    ref_t, ref_u = segment_features_ref(lambda f: frames[f], apart, valid_apart, 0, tower)
    np.testing.assert_allclose(t, ref_t, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(u, ref_u)
