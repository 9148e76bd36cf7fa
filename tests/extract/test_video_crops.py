"""Frame decoding (PyAV) and the crop definitions: sampling, rectangles, square padding, deduplication."""

from __future__ import annotations

import numpy as np
import pytest
import world

from uasan import ops
from uasan.data import all_pairs
from uasan.extract.crops import crop_rects, pad_to_square, plan_segment, sample_positions, take_crop
from uasan.extract.video import VideoError, find_videos, iter_frames, video_size


def test_iter_frames_wanted_only_in_order(base_root):
    path = base_root / "videos/vidA.mp4"
    every = world.decode_all(path)
    got = list(iter_frames(path, [17, 3, 3, 59, 0]))
    assert [f for f, _ in got] == [0, 3, 17, 59]
    for f, img in got:
        assert img.shape == (world.H, world.W, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(img, every[f])
    assert len(list(iter_frames(path))) == 60 and list(iter_frames(path, [])) == []
    assert video_size(path) == (world.W, world.H)
    # the decoded pixels are the rendered rectangles (lossy H.264, so approximately)
    x1, y1, x2, y2 = (int(round(v)) for v in world.box_at(0, 0, 17))
    assert np.abs(every[17][y1 + 3 : y2 - 3, x1 + 3 : x2 - 3].astype(int) - world.COLOURS[0]).max() < 40


def test_bad_videos_raise_video_error_naming_the_file(base_root, tmp_path):
    with pytest.raises(VideoError, match="vidA.mp4: the video has 60 frames, frame 60 was needed"):
        list(iter_frames(base_root / "videos/vidA.mp4", [10, 60]))
    with pytest.raises(VideoError, match="nope.mp4: video file does not exist"):
        list(iter_frames(tmp_path / "nope.mp4", [0]))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="junk.mp4: cannot open"):
        list(iter_frames(junk, [0]))
    with pytest.raises(ValueError, match="expected frame indices >= 0"):
        list(iter_frames(base_root / "videos/vidA.mp4", [-1]))


def test_find_videos(tmp_path):
    (tmp_path / "0001").mkdir()
    (tmp_path / "0001/a.mp4").write_bytes(b"")
    (tmp_path / "b.MKV").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    assert {k: v.name for k, v in find_videos(tmp_path).items()} == {"a": "a.mp4", "b": "b.MKV"}
    (tmp_path / "a.avi").write_bytes(b"")
    with pytest.raises(ValueError, match="video id 'a' also names"):
        find_videos(tmp_path)


def test_sample_positions():
    valid = np.zeros((4, 30), bool)
    valid[0] = True  # 30 frames → 8 evenly spread, first and last included
    valid[1, 5:9] = True  # 4 frames < K → all of them
    valid[3, [2, 10, 11, 25]] = True  # non-contiguous (a pair's co-occurrence)
    t, ok = sample_positions(valid, 8)
    assert t[0].tolist() == [int(np.rint(j * 29 / 7)) for j in range(8)] and ok[0].all()
    assert t[1][ok[1]].tolist() == [5, 6, 7, 8] and ok[1].sum() == 4
    assert not ok[2].any()
    assert t[3][ok[3]].tolist() == [2, 10, 11, 25]
    t1, ok1 = sample_positions(valid, 1)
    assert t1[0].tolist() == [14] and t1[1].tolist() == [6] and ok1[:, 0].tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="k >= 1"):
        sample_positions(valid, 0)


def test_crop_rects_and_square_padding():
    r = crop_rects(np.array([[2.3, 4.0, 10.2, 9.9], [-5, -5, 3, 2], [70, 50, 80, 60], [5, 5, 5, 5]]), 64, 48)
    assert r.tolist() == [[2, 4, 11, 10], [0, 0, 3, 2], [63, 47, 64, 48], [5, 5, 6, 6]]
    fill = np.array([1, 2, 3], np.uint8)
    crop = np.full((2, 6, 3), 200, np.uint8)
    sq = pad_to_square(crop, fill)
    assert sq.shape == (6, 6, 3)
    np.testing.assert_array_equal(sq[2:4], crop)
    assert (sq[:2] == fill).all() and (sq[4:] == fill).all()
    frame = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    full = take_crop(frame, np.array([0, 0, 64, 48]), fill)
    assert full.shape == (64, 64, 3) and not np.shares_memory(full, frame)
    sq_crop = take_crop(frame, np.array([0, 10, 64, 74]), fill)  # clipped rows
    assert not np.shares_memory(sq_crop, frame)


def test_plan_segment_dedup_and_mapping(rng):
    n, L = 5, 30
    xy = rng.uniform(0, 40, (n, 1, 2)) + np.cumsum(rng.normal(0, 1, (n, L, 2)), axis=1)
    boxes = np.concatenate([xy, xy + rng.uniform(4, 20, (n, 1, 2))], axis=-1)
    valid = np.ones((n, L), bool)
    valid[3, :12] = False
    valid[4, 20:] = False  # 3 and 4 co-occur on frames 12..19 only
    boxes[1] = boxes[0]  # a duplicate trajectory: its crops and unions coincide with 0's
    plan = plan_segment(boxes, valid, 100, 64, 48, 8)
    pairs = all_pairs(n)
    union, both = ops.pair_union_boxes(boxes, valid, pairs)
    assert plan.n == n and plan.num_pairs == len(pairs) and (np.diff(plan.frames) >= 0).all()
    # every (target, sampled frame) request maps to a crop with exactly its frame and rectangle
    t, ok = sample_positions(np.concatenate([valid, both]), 8)
    all_boxes = np.concatenate([boxes, union])
    want = sorted(
        (g, 100 + int(f), *crop_rects(all_boxes[g, f], 64, 48).tolist()) for g in range(len(t)) for f in t[g][ok[g]]
    )
    got = sorted(
        (int(g), int(plan.frames[c]), *plan.rects[c].tolist())
        for g, c in zip(plan.entry_target, plan.entry_crop, strict=True)
    )
    assert got == want
    assert plan.counts.tolist() == ok.sum(1).tolist()
    assert len({tuple(k) for k in np.column_stack([plan.frames, plan.rects]).tolist()}) == plan.num_crops
    assert plan.num_crops < plan.num_requests
    # pair (3, 4) never overlaps 8 frames: 8 co-occurring frames give 8 samples
    r34 = int(np.flatnonzero((pairs == [3, 4]).all(1))[0])
    assert plan.counts[n + r34] == 8


def test_plan_segment_empty_and_single():
    plan = plan_segment(np.zeros((0, 30, 4)), np.zeros((0, 30), bool), 0, 64, 48)
    assert plan.num_crops == 0 and plan.num_pairs == 0 and len(plan.counts) == 0
    plan = plan_segment(np.array([[[1, 1, 9, 9]] * 30], float), np.ones((1, 30), bool), 0, 64, 48, 4)
    assert plan.num_crops == 4 and plan.counts.tolist() == [4] and plan.frames.tolist() == [0, 10, 19, 29]


def test_missing_pyav_is_a_clear_import_error(monkeypatch, base_root):
    import sys

    from uasan.extract.video import require_av

    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(ImportError, match=r"pip install 'uasan\[extract\]'"):
        require_av()
    with pytest.raises(ImportError, match="PyAV"):
        list(iter_frames(base_root / "videos/vidA.mp4", [0]))
