"""SegmentDataset + collate_segments on the fixture data sets: items, labels, batching, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.data import fixtures as fx
from uasan import ops
from uasan.data import BACKGROUND, IGNORE, SegmentDataset, all_pairs, collate_segments, pair_rows


@pytest.fixture(scope="module")
def vrd(tmp_path_factory):
    return fx.make_vidvrd(tmp_path_factory.mktemp("vrd"))


def ids(ds):
    o, p = ds.vocab.object_ids, ds.vocab.predicate_ids
    return o[fx.PERSON], o[fx.DOG], o[fx.HORSE], p[fx.BEHIND], p[fx.CHASE], p[fx.ABOVE]


def positives(item):
    """{(s, o): predicate ids} of the pairs with a positive label."""
    return {tuple(item.pairs[k].tolist()): np.flatnonzero(item.pred_labels[k]).tolist()
            for k in np.flatnonzero(item.pred_labels.sum(1))}  # fmt: skip


def test_items_and_labels(vrd):
    ds = SegmentDataset(vrd, "train", outside_split="ignore")
    person, dog, horse, behind, chase, above = ids(ds)
    assert [ds.tag(i) for i in range(len(ds))] == ["vidA-0000-0030", "vidA-0015-0045", "vidA-0030-0060"]

    a = ds[0]  # person, dog, far box kept; the 10-frame trajectory filtered out
    assert a.index.tolist() == [0, 1, 2] and a.boxes.shape == (3, 30, 4) and a.pairs.tolist() == all_pairs(3).tolist()
    assert a.traj_labels.tolist() == [person, dog, BACKGROUND]
    assert positives(a) == {(0, 1): sorted([behind, chase])}  # r0 and r1: multi-label
    assert a.pair_valid.all() and a.pred_labels.shape == (6, len(ds.vocab.predicates))
    assert a.features.shape == (3, fx.D) and a.features[:, 0].tolist() == [0, 1, 2]
    assert a.union_features[:, 0].tolist() == pair_rows(np.arange(3), 4).tolist()
    np.testing.assert_allclose(a.scores, [0.9, 0.8, 0.3], rtol=1e-6)

    b = ds[1]  # frames 15-45: the horse enters at 30 (15 boxes, kept); r2 has a novel predicate
    assert b.start.tolist() == [0, 0, 15, 0] and b.end.tolist() == [30, 30, 30, 30]
    assert b.traj_labels.tolist() == [person, dog, IGNORE, BACKGROUND]
    assert positives(b) == {(0, 1): [chase]}
    invalid = [tuple(p) for p in b.pairs[~b.pair_valid].tolist()]
    assert invalid == [(1, 0)]  # dog-above-person is outside the base predicates: ignored, not background

    c = ds[2]  # r3 person-behind-horse has a novel object: ignored
    assert positives(c) == {(0, 1): [chase]}
    assert [tuple(p) for p in c.pairs[~c.pair_valid].tolist()] == [(0, 2)]


def test_outside_split_background(vrd):
    ds = SegmentDataset(vrd, "train")  # default: annotations outside the base split are never seen
    person, dog, horse, behind, chase, above = ids(ds)
    b, c = ds[1], ds[2]
    assert b.traj_labels.tolist() == [person, dog, BACKGROUND, BACKGROUND]
    assert positives(b) == {(0, 1): [chase]} and b.pair_valid.all()
    assert positives(c) == {(0, 1): [chase]} and c.pair_valid.all()
    with pytest.raises(ValueError, match="outside_split"):
        SegmentDataset(vrd, "train", outside_split="drop")


def test_label_split_all(vrd):
    ds = SegmentDataset(vrd, "train", label_split="all")
    person, dog, horse, behind, chase, above = ids(ds)
    b = ds[1]
    assert b.traj_labels.tolist() == [person, dog, horse, BACKGROUND]
    assert positives(b) == {(0, 1): [chase], (1, 0): [above]} and b.pair_valid.all()
    assert positives(ds[2]) == {(0, 1): [chase], (0, 2): [behind]}


@pytest.mark.parametrize("mode", ["SGCls", "PredCls"])
def test_gt_modes(vrd, mode):
    ds = SegmentDataset(vrd, "train", mode=mode)
    person, dog, horse, behind, chase, above = ids(ds)
    a, c = ds[0], ds[2]
    assert a.tids.tolist() == [0, 1] and a.classes.tolist() == [person, dog] and a.traj_labels.tolist() == [person, dog]
    assert positives(a) == {(0, 1): sorted([behind, chase])}
    assert c.classes.tolist() == [person, dog, horse] and c.traj_labels.tolist() == [person, dog, BACKGROUND]
    c = SegmentDataset(vrd, "train", mode=mode, outside_split="ignore")[2]
    assert c.traj_labels.tolist() == [person, dog, IGNORE] and (~c.pair_valid).sum() == 1
    assert c.union_features.shape == (6, fx.D)


def test_collate(vrd):
    ds = SegmentDataset(vrd, "train")
    items = [ds[i] for i in range(len(ds))]
    batch = collate_segments(items)
    n = [len(it.start) for it in items]
    assert n == [3, 4, 4] and batch.num_trajectories == 11 and batch.num_pairs == 6 + 12 + 12
    assert batch.traj_offsets.tolist() == [0, 3, 7, 11] and batch.pair_offsets.tolist() == [0, 6, 18, 30]
    assert batch.traj_boxes.shape == (11, 30, 4) and batch.traj_valid.shape == (11, 30)
    assert batch.traj_features.shape == (11, fx.D) and batch.union_features.shape == (30, fx.D)
    assert batch.motion.shape == (30, 14) and batch.motion.dtype == torch.float32
    assert batch.pred_labels.shape == (30, len(ds.vocab.predicates)) and batch.traj_labels.shape == (11,)
    assert batch.segment_frames.tolist() == [[0, 30], [15, 45], [30, 60]] and batch.video_ids == ["vidA"] * 3
    # global pair indices: both members in the pair's own segment, and equal to local + offset
    assert (batch.traj_segment[batch.pairs] == batch.pair_segment[:, None]).all()
    for b, it in enumerate(items):
        sl = slice(batch.pair_offsets[b], batch.pair_offsets[b + 1])
        assert (batch.pairs[sl] - batch.traj_offsets[b]).tolist() == it.pairs.tolist()
        args = (it.boxes, it.valid, it.pairs)
        want = np.concatenate([ops.pair_motion_features(*args), ops.pair_giou_start_end(*args)], axis=1)
        np.testing.assert_allclose(batch.motion[sl].numpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(batch.pred_labels[sl].numpy(), it.pred_labels)
    assert torch.isfinite(batch.motion).all()
    moved = batch.to("cpu")
    assert moved.tags == batch.tags and torch.equal(moved.pairs, batch.pairs)


def test_collate_tokens_and_empty(tmp_path):
    root = fx.make_vidvrd(tmp_path, ext=".pkl", tokens=3)
    ds = SegmentDataset(root, "train", labels=False)
    batch = collate_segments([ds[0], ds[1]])
    assert batch.traj_features.shape == (7, 3, fx.D) and batch.union_features.shape == (18, 3, fx.D)
    assert batch.traj_labels is None and batch.pred_labels is None and batch.pair_valid is None
    empty = ds[0]
    empty.start, empty.end, empty.scores, empty.index = (
        (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),) + (np.zeros(0, np.int64),)
    )
    empty.tids = empty.classes = np.zeros(0, np.int64)
    empty.boxes, empty.valid, empty.pairs = np.zeros((0, 30, 4), np.float32), np.zeros((0, 30), bool), all_pairs(0)
    empty.features, empty.union_features = np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    batch = collate_segments([empty, ds[1]])
    assert batch.traj_features.shape == (4, 3, fx.D) and batch.pairs.min() == 0 and batch.num_pairs == 12
    assert collate_segments([empty]).motion.shape == (0, 14)


def test_vidor_dataset(tmp_path):
    root = fx.make_vidor(tmp_path)
    ds = SegmentDataset(root, "train", label_split="all")  # alias of "training"
    assert ds.dataset == "vidor" and ds.subset == "training" and len(ds) == 3
    o, p = ds.vocab.object_ids, ds.vocab.predicate_ids
    a = ds[0]
    assert a.traj_labels.tolist() == [o["adult"], o["dog"], BACKGROUND]
    assert positives(a) == {(0, 1): sorted([p[fx.BEHIND], p[fx.CHASE]])}
    base = SegmentDataset(root, "train")  # "chase" is a novel VidOR predicate
    assert positives(base[0]) == {(0, 1): [p[fx.BEHIND]]}


def test_custom_split_file(tmp_path):
    root = fx.make_vidvrd(tmp_path)
    split = {"objects": {"base": ["dog", "person"], "novel": ["horse"]},
             "predicates": {"base": ["chase", "behind"], "novel": ["above"]}}  # fmt: skip
    fx.write_json(root / "splits.json", split)
    ds = SegmentDataset(root, "train")
    assert ds.vocab.objects == ("dog", "person", "horse")
    assert ds[0].traj_labels.tolist() == [1, 0, BACKGROUND]


def test_dataloader_workers(vrd):
    ds = SegmentDataset(vrd, "train")
    ds.annotation("vidA")  # a warm cache must not travel to the workers
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_segments)
    batches = list(loader)
    assert [b.tags for b in batches] == [["vidA-0000-0030", "vidA-0015-0045"], ["vidA-0030-0060"]]
    assert batches[0].num_pairs == 18 and batches[1].pairs.max() < batches[1].num_trajectories
