"""uasan.data.checks: every problem a run would meet late is found up front, named, and all reported at once."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from uasan.data.checks import check_inputs, npy_shape

READS = {"train": ["SGDet"], "test": ["SGDet", "SGCls", "PredCls"]}


@pytest.fixture
def world(tiny_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(tiny_world, root)
    return root


def test_clean_world(world):
    report = check_inputs(world, READS)
    assert report.feature_shape == (4, 1408)  # S tokens of the simulated vision encoder's width
    assert report.segments == {"train/SGDet": 55, "test/SGDet": 29, "test/SGCls": 29, "test/PredCls": 29}
    assert report.empty_segments["train/SGDet"] == 9 and report.warnings == []
    assert any("9 of 55" in n for n in report.notes)
    # a plain list of subsets reads every mode; "val" is the world's own validation subset
    again = check_inputs(world, ["train", "val"])
    assert again.segments == {f"{s}/{m}": n for s, n in (("train", 55), ("val", 15)) for m in READS["test"]}


def test_every_problem_is_named(world):
    feats = sorted((world / "features" / "test" / "SYNTH_test_00002").glob("*.npy"))
    torn, rows, width = feats[0], feats[1], feats[2]
    torn.write_bytes(torn.read_bytes()[:-7])
    np.save(rows, np.zeros((1, 4, 1408), np.float32))
    np.save(width, np.zeros((np.load(width).shape[0], 4, 256), np.float32))
    union = sorted((world / "union_features" / "train" / "SYNTH_train_00001").glob("*.npy"))[0]
    union.unlink()
    garbage = sorted((world / "gt_features" / "test" / "SYNTH_test_00003").glob("*.npy"))[0]
    garbage.write_bytes(b"not numpy")
    with pytest.raises(ValueError) as info:
        check_inputs(world, READS)
    msg = str(info.value)
    assert "5 problem(s)" in msg
    assert f"{torn}: truncated" in msg
    assert f"{rows}: field 'shape[0]': 1 rows" in msg
    assert f"{width}: field 'shape': trailing shape (4, 256) differs from (4, 1408)" in msg
    assert f"{union.with_suffix('')}.npy: union_features file does not exist" in msg
    assert f"{garbage}: not a readable .npy array" in msg
    check_inputs(world, {"train": ["SGDet"]}, features=False)  # proposals only: still fine


def test_missing_folders_and_skipped_videos(world):
    shutil.rmtree(world / "proposals" / "train" / "SYNTH_train_00005")
    report = check_inputs(world, {"train": ["SGDet"]})
    assert len(report.warnings) == 1
    assert "1 of 8 annotated videos have no proposals under" in report.warnings[0]
    assert (
        "SYNTH_train_00005" in report.warnings[0]
        and f"{report.segments['train/SGDet']} segments remain" in (report.warnings[0])
    )
    shutil.rmtree(world / "gt_proposals" / "test")
    with pytest.raises(ValueError, match="gt_proposals/test: proposal directory does not exist"):
        check_inputs(world, READS)


def test_proposal_file_errors_are_reported(world):
    bad = sorted((world / "proposals" / "test" / "SYNTH_test_00000").glob("*.json"))[0]
    bad.write_text('[{"fstart": 0}]')
    with pytest.raises(ValueError, match=rf"{bad}: field '\[0\].score': missing"):
        check_inputs(world, READS)


def test_npy_shape(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.zeros((3, 2, 5), np.float16))
    assert npy_shape(p) == ((3, 2, 5), np.dtype(np.float16))
    np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object array"):
        npy_shape(p)
    with pytest.raises(ValueError, match="does not exist"):
        npy_shape(tmp_path / "none.npy")
