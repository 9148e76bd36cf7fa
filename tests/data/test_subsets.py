"""The held-out validation subset: deterministic, machine-independent, disjoint from train, the fraction respected;
a root's own ``val`` folder wins; ``val`` is never the test set."""

from __future__ import annotations

import random

import pytest

from tests.data import fixtures as fx
from uasan.data import SegmentDataset, canonical_subset, load_groundtruth
from uasan.data.annotations import subset_videos
from uasan.data.subsets import held_out_videos, num_held_out, video_rank


def test_rank_is_a_fixed_function_of_seed_and_id():
    # BLAKE2b is specified bit for bit: these values are the same on every machine and Python version (``hash()``,
    # salted per process, would not be).
    assert video_rank("ILSVRC2015_train_00005003", 0) == 15703333510567819594
    assert video_rank("2401075277", 7) == 15546645123212578295


@pytest.mark.parametrize("n", [1, 2, 3, 10, 37, 800])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.5, 0.9])
def test_held_out_fraction_and_determinism(n, fraction):
    vids = [f"ILSVRC2015_train_{i:08d}" for i in range(n)]
    held = held_out_videos(vids, fraction, seed=3)
    expected = 0 if fraction == 0 or n < 2 else min(n - 1, max(1, round(fraction * n)))
    assert len(held) == num_held_out(n, fraction) == expected
    assert held <= set(vids)
    shuffled = vids[::-1] + vids[: n // 2]  # order and duplicates do not matter
    random.Random(0).shuffle(shuffled)
    assert held_out_videos(shuffled, fraction, seed=3) == held


def test_seeds_and_growth():
    vids = [f"v{i:04d}" for i in range(200)]
    a, b = held_out_videos(vids, 0.1, 0), held_out_videos(vids, 0.1, 1)
    assert len(a) == len(b) == 20 and a != b
    grown = held_out_videos([*vids, "v9999"], 0.1, 0)  # one more video moves at most one out of the held-out set
    assert len(a - grown) <= 1


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, "0.1", True])
def test_bad_fraction(bad):
    with pytest.raises(ValueError, match="val_fraction"):
        held_out_videos(["a", "b"], bad)


def _root(tmp_path, n=12, own_val=False):
    root = tmp_path / "vrd"
    for i in range(n):
        vid = f"ILSVRC2015_train_{i:08d}"
        fx.write_json(root / "train" / f"{vid}.json", fx.video_annotation(vid, 45))
        fx.write_segment_files(root, "train", vid, 45)
    fx.write_json(root / "test" / "vidT.json", fx.video_annotation("vidT", 45))
    fx.write_segment_files(root, "test", "vidT", 45)
    if own_val:
        for vid in ("vidV1", "vidV2"):
            fx.write_json(root / "val" / f"{vid}.json", fx.video_annotation(vid, 45))
            fx.write_segment_files(root, "val", vid, 45)
    return root


def test_dataset_train_and_val_are_disjoint(tmp_path):
    root = _root(tmp_path)
    train = SegmentDataset(root, "train", val_fraction=0.25, val_seed=5)
    val = SegmentDataset(root, "val", val_fraction=0.25, val_seed=5)
    tv, vv = {v for v, _, _ in train.index}, {v for v, _, _ in val.index}
    everything = {f"ILSVRC2015_train_{i:08d}" for i in range(12)}
    assert tv.isdisjoint(vv) and tv | vv == everything and len(vv) == 3
    assert vv == held_out_videos(everything, 0.25, 5)
    assert set(val.annotation_paths) == vv and val.subset == "val" and val.videos.folder == "train"
    assert set(load_groundtruth(root, "val", val_fraction=0.25, val_seed=5)) == vv
    assert set(load_groundtruth(root, "train", val_fraction=0.25, val_seed=5)) == tv
    assert set(load_groundtruth(root, "test")) == {"vidT"}  # val is never the test set
    assert len(SegmentDataset(root, "train", val_fraction=0)) == 24


def test_own_val_folder_wins(tmp_path):
    root = _root(tmp_path, n=4, own_val=True)
    val = SegmentDataset(root, "val")
    assert sorted({v for v, _, _ in val.index}) == ["vidV1", "vidV2"] and val.videos.folder == "val"
    assert len({v for v, _, _ in SegmentDataset(root, "train").index}) == 4  # nothing held out
    assert set(load_groundtruth(root, "validation")) == {"vidV1", "vidV2"}  # VidVRD: validation = val


def test_empty_subset_is_an_error(tmp_path):
    root = _root(tmp_path, n=1)
    with pytest.raises(ValueError, match=r"subset 'val' is empty: val_fraction=0.1 holds out 0 of the 1 training"):
        SegmentDataset(root, "val")


def test_vidor_subsets(tmp_path):
    root = fx.make_vidor(tmp_path / "vor")
    fx.write_json(root / "annotation" / "training" / "0001" / "77.json", fx.video_annotation("77", 60, fx.VIDOR))
    held = held_out_videos(["2401075277", "77"], 0.1, 0)
    assert set(subset_videos(root, "val").videos) == held
    assert set(subset_videos(root, "train").videos) == {"2401075277", "77"} - held
    assert set(subset_videos(root, "validation").videos) == {"3001"} == set(subset_videos(root, "test").videos)
    assert subset_videos(root, "val").folder == "training"


def test_subset_names():
    assert [canonical_subset("vidvrd", s) for s in ("train", "training", "val", "validation", "test", None)] == [
        "train", "train", "val", "val", "test", "test"
    ]  # fmt: skip
    assert [canonical_subset("vidor", s) for s in ("train", "training", "val", "validation", "test", None)] == [
        "training", "training", "val", "validation", "validation", "validation"
    ]  # fmt: skip
