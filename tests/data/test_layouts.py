"""Data layouts: the same world written as uasan, RePro and UASAN publish it reads into identical batches; detection,
missing union features, odd segments and bad files."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

from tests.data import layout_fixtures as lf
from uasan.data import SegmentDataset, collate_segments
from uasan.data.layouts import detect_layout

EXTRACT = r"python -m uasan\.extract features"


def _batch_equal(a, b) -> None:
    assert a.tags == b.tags and a.video_ids == b.video_ids
    for name, x in vars(a).items():
        y = getattr(b, name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), name
        else:
            assert x == y, name


@pytest.fixture(scope="module")
def vidvrd_roots(tmp_path_factory):
    world = lf.make_world("vidvrd")
    out = {}
    for name, write in lf.WRITERS.items():
        root = tmp_path_factory.mktemp(name.replace("-", "_"))
        out[name] = (root, write(root, world))
    return world, out


@pytest.fixture(scope="module")
def vidor_roots(tmp_path_factory):
    world = lf.make_world("vidor")
    out = {}
    for name in ("uasan", "repro"):
        root = tmp_path_factory.mktemp(f"vidor_{name}")
        out[name] = (root, lf.WRITERS[name](root, world))
    return world, out


@pytest.mark.parametrize("mode", ["SGDet", "PredCls"])
@pytest.mark.parametrize("subset", ["train", "val", "test"])
def test_vidvrd_layouts_give_identical_batches(vidvrd_roots, mode, subset):
    _, roots = vidvrd_roots
    batches = {}
    for name, (root, overrides) in roots.items():
        ds = SegmentDataset(root, subset, mode=mode, **lf.options(overrides, val_fraction=0.34))
        assert ds.layout.name == name
        batches[name] = collate_segments([ds[i] for i in range(len(ds))])
    ref = batches.pop("uasan")
    assert ref.num_segments > 0 and ref.union_features is not None and ref.traj_features is not None
    for other in batches.values():
        _batch_equal(ref, other)


@pytest.mark.parametrize("mode", ["SGDet", "SGCls"])
@pytest.mark.parametrize("subset", ["train", "val", "validation"])
def test_vidor_layouts_give_identical_batches(vidor_roots, mode, subset):
    _, roots = vidor_roots
    (r1, o1), (r2, o2) = roots["uasan"], roots["repro"]
    a = SegmentDataset(r1, subset, mode=mode, label_split="all", **lf.options(o1, val_fraction=0.34))
    b = SegmentDataset(r2, subset, mode=mode, label_split="all", **lf.options(o2, val_fraction=0.34))
    assert b.layout.name == "repro" and a.index == b.index and len(a) > 0
    _batch_equal(collate_segments([a[i] for i in range(len(a))]), collate_segments([b[i] for i in range(len(b))]))


def test_vidor_video2seg_lists_segments(tmp_path):
    world = lf.make_world("vidor")
    over = lf.write_repro(tmp_path, world, video2seg=True)
    with_lists = SegmentDataset(tmp_path, "train", **lf.options(over, val_fraction=0))
    plain = [o for o in over if not o.startswith("data.video2seg")]
    without = SegmentDataset(tmp_path, "train", **lf.options(plain, val_fraction=0))
    assert with_lists.index == without.index and len(with_lists) == 9
    (tmp_path / "VidORtrain_video2seg.json").write_text('{"0000_2401075277": ["0000_2401075278-0000-0030"]}')
    with pytest.raises(ValueError, match=r"VidORtrain_video2seg\.json.*not a segment of video '0000_2401075277'"):
        SegmentDataset(tmp_path, "train", **lf.options(over))
    (tmp_path / "VidORtrain_video2seg.json").write_text('{"0000_2401075277": ["0000_2401075277-0090-0120"]}')
    ds = SegmentDataset(tmp_path, "train", **lf.options(over, val_fraction=0))
    with pytest.raises(ValueError, match=r"0000_2401075277\.json: field '0000_2401075277-0090-0120': missing"):
        ds[ds.index.index(("2401075277", 90, 120))]


def test_the_odd_segments(vidvrd_roots):
    _, roots = vidvrd_roots
    for root, overrides in roots.values():
        ds = SegmentDataset(root, "train", **lf.options(overrides, val_fraction=0))
        empty = ds[ds.index.index((lf.VIDVRD_TRAIN[1], 45, 75))]
        assert empty.boxes.shape == (0, 30, 4) and empty.features.shape == (0, 8) and empty.pairs.shape == (0, 2)
        assert empty.union_features.shape == (0, 8) and empty.traj_labels.shape == (0,)
        single = ds[ds.index.index((lf.VIDVRD_TRAIN[1], 30, 60))]
        assert single.features.shape == (1, 8) and single.union_features.shape == (0, 8)
        b = collate_segments([empty, single])
        assert b.num_trajectories == 1 and b.num_pairs == 0 and b.motion.shape == (0, 14)
        gt = SegmentDataset(root, "train", mode="PredCls", **lf.options(overrides, val_fraction=0))
        one = gt[gt.index.index((lf.VIDVRD_TRAIN[1], 45, 75))]
        assert one.classes.tolist() == [gt.vocab.object_ids["person"]] and one.end - one.start == 10


def test_filter_selects_feature_rows(vidvrd_roots):
    world, roots = vidvrd_roots
    seg = next(s for s in world.segments if s.tag == f"{lf.VIDVRD_TRAIN[0]}-0000-0030")
    keep = [0, 1, 2]  # the 10-frame entry (row 3) is filtered
    n = len(seg.det)
    pair_of = {(s, o): s * (n - 1) + o - (o > s) for s in range(n) for o in range(n) if s != o}
    for root, overrides in roots.values():
        ds = SegmentDataset(root, "train", **lf.options(overrides, val_fraction=0))
        it = ds[ds.index.index((lf.VIDVRD_TRAIN[0], 0, 30))]
        assert it.index.tolist() == keep
        np.testing.assert_array_equal(it.features, seg.det_features[keep])
        rows = [pair_of[(keep[s], keep[o])] for s, o in it.pairs]
        np.testing.assert_array_equal(it.union_features, seg.det_union[rows])


def test_detection(vidvrd_roots, vidor_roots, tmp_path):
    for roots in (vidvrd_roots[1], vidor_roots[1]):
        for name, (root, _) in roots.items():
            ds = "vidor" if (root / "annotation").is_dir() else "vidvrd"
            assert detect_layout(root, ds) == name
    lf.write_annotations(tmp_path, lf.make_world("vidvrd"))
    (tmp_path / "some_features").mkdir()
    with pytest.raises(
        ValueError, match=r"no known layout under .*found: ILSVRC|no known layout.*some_features.*train"
    ):
        SegmentDataset(tmp_path, "train")
    with pytest.raises(ValueError, match=r"data\.layout: no known layout.*uasan.*repro.*uasan-public"):
        detect_layout(tmp_path, "vidvrd")
    both = vidvrd_roots[1]["repro"][0]
    shutil.copytree(vidvrd_roots[1]["uasan"][0] / "proposals", tmp_path / "proposals")
    shutil.copytree(both / "VidVRD_segment30_tracking_results", tmp_path / "VidVRD_segment30_tracking_results")
    shutil.copytree(both / "VidVRD_traj_features_seg30", tmp_path / "VidVRD_traj_features_seg30")
    with pytest.raises(ValueError, match=r"matches several layouts \(uasan: .*; repro: .*\); set data\.layout"):
        detect_layout(tmp_path, "vidvrd")
    assert SegmentDataset(tmp_path, "train", layout="repro", union_features=False).layout.name == "repro"


def test_detection_follows_explicit_folders(vidvrd_roots, tmp_path):
    src = vidvrd_roots[1]["repro"][0]
    lf.write_annotations(tmp_path / "ann", lf.make_world("vidvrd"))
    paths = {"proposals": src / "VidVRD_segment30_tracking_results", "features": src / "VidVRD_traj_features_seg30"}
    ds = SegmentDataset(tmp_path / "ann", "test", paths=paths, union_features=False)
    assert ds.layout.name == "repro" and len(ds) == 2
    with pytest.raises(ValueError, match=r"data\.features: .*nowhere is not a directory"):
        SegmentDataset(tmp_path / "ann", "test", paths={**paths, "features": tmp_path / "nowhere"})


def test_repro_has_no_union_features(vidvrd_roots):
    root, overrides = vidvrd_roots[1]["repro"]
    plain = lf.options([o for o in overrides if "union" not in o.partition("=")[0]])
    with pytest.raises(ValueError, match=rf"data\.union_features: the repro layout has no union features.*{EXTRACT}"):
        SegmentDataset(root, "test", **plain)
    with pytest.raises(ValueError, match=rf"data\.gt_union_features: .*no union features.*{EXTRACT}"):
        SegmentDataset(root, "test", mode="PredCls", **plain)
    assert SegmentDataset(root, "test", union_features=False, **plain)[0].union_features is None


def test_uasan_public_segment_level_union(vidvrd_roots, tmp_path):
    world = vidvrd_roots[0]
    over = lf.write_uasan_public(tmp_path, world, per_pair_union=False)
    with pytest.raises(
        ValueError, match=rf"data\.union_features: UASAN's released union.*union_segment_mean=true.*{EXTRACT}"
    ):
        SegmentDataset(tmp_path, "test", **lf.options(over))
    with pytest.warns(UserWarning, match="mean of the segment's union-frame features"):
        ds = SegmentDataset(tmp_path, "test", **lf.options([*over, "data.union_segment_mean=true"]))
    seg = next(s for s in world.segments if s.tag == ds.tag(0))
    it = ds[0]
    mean = seg.det_frames.mean(0)
    assert it.union_features.shape == (len(it.pairs), 8)
    np.testing.assert_allclose(it.union_features, np.broadcast_to(mean, it.union_features.shape), rtol=1e-6)


def test_uasan_public_rows_of_kept_trajectories(vidvrd_roots, tmp_path):
    world = vidvrd_roots[0]
    over = lf.write_uasan_public(tmp_path, world)
    tag = f"{lf.VIDVRD_TRAIN[0]}-0000-0030"
    seg = next(s for s in world.segments if s.tag == tag)
    with open(tmp_path / "vit" / "VidVRD_traj_features_seg30" / f"{tag}.pkl", "wb") as f:
        pickle.dump(seg.det_features[[0, 1, 2]].astype(np.float16), f)  # UASAN's other convention: kept rows only
    ds = SegmentDataset(tmp_path, "train", **lf.options(over, val_fraction=0))
    np.testing.assert_array_equal(ds[ds.index.index((lf.VIDVRD_TRAIN[0], 0, 30))].features, seg.det_features[:3])
    with open(tmp_path / "vit" / "VidVRD_traj_features_seg30" / f"{tag}.pkl", "wb") as f:
        pickle.dump(seg.det_features[:2], f)
    with pytest.raises(ValueError, match=rf"{tag}\.pkl: field 'shape\[0\]': 2 rows but .*{tag}\.json has 4"):
        ds[ds.index.index((lf.VIDVRD_TRAIN[0], 0, 30))]


@pytest.mark.parametrize("name", ["uasan", "repro", "uasan-public"])
def test_wrong_feature_rows_name_the_file(tmp_path, name):
    world = lf.make_world("vidvrd")
    over = lf.WRITERS[name](tmp_path, world)
    ds = SegmentDataset(tmp_path, "test", **lf.options(over))
    path = ds.files(0)["features"]
    arr = np.zeros((7, 8), dtype=np.float32)
    if path.suffix == ".npy":
        np.save(path, arr)
    else:
        with open(path, "wb") as f:
            pickle.dump(arr, f)
    with pytest.raises(ValueError, match=rf"{path.name}: field 'shape\[0\]': 7 rows but .* has 4 trajectories"):
        ds[0]
    union = ds.files(1)["union_features"]
    np.save(union, np.zeros((3, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=rf"{union.name}: field 'shape\[0\]': 3 rows .* n\(n-1\) = 2"):
        ds[1]


def test_vidor_bad_files_name_the_file(tmp_path):
    world = lf.make_world("vidor")
    over = lf.write_repro(tmp_path, world)
    ds = SegmentDataset(tmp_path, "validation", **lf.options(over))
    files = ds.files(0)
    assert files["proposals"].name == "0001_2793806282.json"
    assert files["features"].name == "0001_2793806282_traj_features.npy"
    np.save(files["features"], np.zeros((5, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"0001_2793806282_traj_features\.npy: field 'shape\[0\]': 5 rows .* = 8"):
        ds[0]
    doc = files["proposals"]
    text = doc.read_text().replace('"n_trajs": [4, 2, 2]', '"n_trajs": [4, 3, 1]')
    doc.write_text(text)  # the segment list is parsed at start-up here (no data.video2seg)
    with pytest.raises(ValueError, match=r"0001_2793806282\.json: field 'n_trajs\[1\]': 3 but segment .*0015-0045"):
        SegmentDataset(tmp_path, "validation", **lf.options(over))
    doc.write_text(
        text.replace('"n_trajs": [4, 3, 1]', '"n_trajs": [4, 2, 2]').replace('"fstart": 0', '"fstart": -1', 1)
    )
    with pytest.raises(ValueError, match=r"0001_2793806282\.json: field '0001_2793806282-0000-0030\[0\]\.fstart'"):
        SegmentDataset(tmp_path, "validation", **lf.options(over))[0]


def test_vidor_layout_in_dataloader_workers(vidor_roots):
    root, over = vidor_roots[1]["repro"]
    ds = SegmentDataset(root, "train", **lf.options(over, val_fraction=0))
    ds[0]  # fill the per-process caches before pickling
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_segments)
    got = [b.tags for b in loader]
    assert sum(got, []) == [ds.tag(i) for i in range(len(ds))]


def test_flat_folder_errors(vidvrd_roots, tmp_path):
    root, over = vidvrd_roots[1]["repro"]
    dst = tmp_path / "r"
    shutil.copytree(root, dst)
    over = [o.replace(str(root), str(dst)) for o in over]
    (dst / "VidVRD_segment30_tracking_results" / "notes.json").write_text("{}")
    with pytest.raises(ValueError, match=r"notes\.json: expected a segment tag .*data\.proposals"):
        SegmentDataset(dst, "train", **lf.options(over))
    (dst / "VidVRD_segment30_tracking_results" / "notes.json").unlink()
    tag = f"{lf.VIDVRD_TEST[0]}-0000-0030"
    (dst / "VidVRD_traj_features_seg30" / f"{tag}.npy").unlink()
    ds = SegmentDataset(dst, "test", **lf.options(over))
    with pytest.raises(ValueError, match=rf"data\.features: no file for segment {tag}: tried .*VidVRD_traj_features"):
        ds[0]
    extra = dst / "more"
    shutil.copytree(dst / "VidVRD_segment30_tracking_results", extra)
    with pytest.raises(ValueError, match=r"also in .*; data\.proposals lists two folders"):
        SegmentDataset(
            dst, "test", **lf.options([*over, f"data.proposals=[{extra}, {dst / 'VidVRD_segment30_tracking_results'}]"])
        )


@pytest.mark.parametrize(
    "dataset, name", [("vidvrd", n) for n in lf.WRITERS] + [("vidor", "uasan"), ("vidor", "repro")]
)
def test_input_checks_through_every_layout(tmp_path, dataset, name):
    """uasan.data.checks walks the same files the dataset reads, whatever the layout: clean trees pass with the
    features' width; a wrong row count in a feature file (per segment, or RePro VidOR's per-video stack) is named."""
    from uasan.data.checks import check_inputs

    over = lf.WRITERS[name](tmp_path, lf.make_world(dataset))
    opts = lf.options(over)
    subset = "test" if dataset == "vidvrd" else "validation"
    report = check_inputs(tmp_path, {"train": ["SGDet"], subset: ["SGDet", "PredCls"]}, dataset_options=opts)
    assert report.feature_shape == (8,) and report.segments[f"{subset}/SGDet"] > 0
    path = SegmentDataset(tmp_path, subset, **opts).files(0)["features"]
    if path.suffix != ".npy":
        return  # pickles are only checked for existence up front (reading them means unpickling)
    np.save(path, np.zeros((np.load(path).shape[0] + 1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=rf"{path.name}: field 'shape\[0\]'"):
        check_inputs(tmp_path, {subset: ["SGDet"]}, dataset_options=opts)
