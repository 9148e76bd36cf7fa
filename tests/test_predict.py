"""The inference protocol (uasan.inference / uasan.predict): RePro's order of operations on a hand-built batch, the
columnar path against the dict path on the tiny world, relation tagging from SGDet, trajectory classification with
each split's own classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uasan import ops
from uasan import predict as P
from uasan.config import InferConfig, TrainConfig, load_config
from uasan.data import Segment, SegmentDataset, Vocabulary, all_pairs, collate_segments, load_groundtruth
from uasan.evaluation import evaluate_files, evaluate_relations, filter_groundtruth, split_categories
from uasan.inference import VideoColumns, segment_candidates, segment_groundtruth, split_classification

SPLIT = {
    "objects": {"base": ["dog", "cat"], "novel": ["fox"]},
    "predicates": {"base": ["chase", "near"], "novel": ["bite", "ride", "watch"]},
}
VOCAB = Vocabulary.from_split(SPLIT)


def segment(vid: str, fs: int, fe: int, spans: list[tuple[int, int]], classes: list[int]) -> Segment:
    """A segment whose trajectory k spans the relative frames spans[k] with the box [10k, 10k, 10k + 20, 10k + 20]."""
    n, L = len(spans), fe - fs
    boxes = np.zeros((n, L, 4), np.float32)
    valid = np.zeros((n, L), bool)
    for k, (s, e) in enumerate(spans):
        boxes[k, s:e] = [10 * k, 10 * k, 10 * k + 20, 10 * k + 20]
        valid[k, s:e] = True
    z = np.zeros(n, np.int64)
    return Segment(
        tag=f"{vid}-{fs:04d}-{fe:04d}", video_id=vid, fstart=fs, fend=fe, boxes=boxes, valid=valid,
        start=np.array([s for s, _ in spans], np.int64), end=np.array([e for _, e in spans], np.int64),
        scores=np.ones(n, np.float32), index=np.arange(n), tids=z - 1, classes=np.array(classes, np.int64),
        features=np.zeros((n, 2), np.float32), pairs=all_pairs(n),
        union_features=np.zeros((n * (n - 1), 2), np.float32),
        traj_labels=None, pred_labels=None, pair_valid=None,
    )  # fmt: skip


def hand_batch():
    """Segment v-0000-0010: t0 over [0, 10), t1 over [0, 5), t2 over [6, 10) (t1 and t2 share no frame); segment
    v-0005-0015: t3 (background in SGDet) and t4. Object probabilities: t0 dog 0.7, t1 cat 0.6, t2 fox 0.5."""
    batch = collate_segments(
        [segment("v", 0, 10, [(0, 10), (0, 5), (6, 10)], [0, 1, 2]), segment("v", 5, 15, [(0, 10), (0, 10)], [0, 1])]
    )
    obj = torch.tensor(
        [
            [0.63, 0.18, 0.09, 0.1],  # dog: 0.63 / (1 - 0.1) = 0.7 among the object classes
            [0.1, 0.6, 0.3, 0.0],
            [0.2, 0.3, 0.5, 0.0],
            [0.1, 0.1, 0.1, 0.7],  # t3: background
            [0.2, 0.5, 0.2, 0.1],
        ],
        dtype=torch.float64,
    )
    # pairs (0,1) (0,2) (1,0) (1,2) (2,0) (2,1) | (3,4) (4,3); predicates chase near bite ride watch
    pred = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.2, 0.0],  # top-2: chase, then bite (the tie with ride goes to the lower id)
            [0.1, 0.8, 0.1, 0.1, 0.1],  # near, chase
            [0.05] * 5,
            [0.0, 0.0, 0.0, 0.0, 0.99],  # (1, 2): the best predicate of the segment, but no common frame
            [0.0] * 5,
            [0.0] * 5,
            [0.3] * 5,
            [0.3] * 5,
        ]
    )
    return batch, obj, pred


def rows(batch, cand):
    return [
        (int(cand.subject[r]), int(cand.object[r]), VOCAB.predicates[cand.predicate[r]], round(float(cand.score[r]), 6),
         int(cand.begin[r]), int(cand.end[r]))
        for r in range(len(cand))
    ]  # fmt: skip


def test_segment_candidates_follow_repro_order_by_hand():
    batch, obj, pred = hand_batch()
    all_ids = np.arange(5)
    infer = InferConfig(pred_topk=2, topk_per_segment=3, triplet_score="mean")
    cand = segment_candidates(batch, obj, pred, "SGDet", all_ids, infer)
    # mean: (0,1) chase (0.9 + 0.7 + 0.6) / 3, (1,2) watch (0.99 + 0.6 + 0.5) / 3, (0,2) near (0.8 + 0.7 + 0.5) / 3
    # are the top 3; then (1,2) is dropped (no common frame), not replaced by the 4th, (0,1) bite. Segment 2: t3 is
    # background, so neither of its pairs is a candidate.
    assert rows(batch, cand) == [(0, 1, "chase", round(2.2 / 3, 6), 0, 5), (0, 2, "near", round(2.0 / 3, 6), 6, 10)]
    assert cand.segment_offsets.tolist() == [0, 2, 2]
    assert [VOCAB.objects[c] for c in (*cand.subject_label, *cand.object_label)] == ["dog", "dog", "cat", "fox"]

    product = segment_candidates(batch, obj, pred, "SGDet", all_ids, InferConfig(2, 3, "product"))
    assert [r[3] for r in rows(batch, product)] == [round(0.9 * 0.7 * 0.6, 6), round(0.8 * 0.7 * 0.5, 6)]

    # PredCls: ground-truth classes, scores 1; segment 2's pairs count now (its classes are given): 2 pairs x top-2
    # predicates, 3 kept, ties in candidate order (pair-major, then rank)
    pc = segment_candidates(batch, obj, pred, "PredCls", all_ids, infer)
    assert rows(batch, pc)[2:] == [(3, 4, "chase", 0.766667, 0, 10), (3, 4, "near", 0.766667, 0, 10),
                                   (4, 3, "chase", 0.766667, 0, 10)]  # fmt: skip
    assert pc.segment_offsets.tolist() == [0, 2, 5]

    # a wider top-k keeps every candidate with a common frame: 4 pairs x 2 predicates
    wide = segment_candidates(batch, obj, pred, "SGDet", all_ids, InferConfig(2, 200, "mean"))
    assert len(wide) == 8 and (wide.begin < wide.end).all()
    assert [r[2] for r in rows(batch, wide)[:3]] == ["chase", "near", "bite"]
    # novel predicates only: (0, 1) keeps bite and ride (a tie, lower id first)
    novel = segment_candidates(batch, obj, pred, "SGDet", np.array([2, 3, 4]), InferConfig(2, 200, "mean"))
    assert [r[2] for r in rows(batch, novel) if r[:2] == (0, 1)] == ["bite", "ride"]


def test_segment_relations_cut_trajectories_to_the_common_span():
    batch, obj, pred = hand_batch()
    out = P.segment_relations(batch, obj, pred, "SGDet", VOCAB, np.arange(5), topk=3, pred_topk=2)
    assert list(out) == ["v"] and list(out["v"]) == [(0, 10), (5, 15)] and out["v"][(5, 15)] == []
    first, second = out["v"][(0, 10)]
    assert first["triplet"] == ["dog", "chase", "cat"] and first["duration"] == [0, 5]
    assert first["sub_traj"] == [[0.0, 0.0, 20.0, 20.0]] * 5 and first["obj_traj"] == [[10.0, 10.0, 30.0, 30.0]] * 5
    assert second["triplet"] == ["dog", "near", "fox"] and second["duration"] == [6, 10]
    assert len(second["sub_traj"]) == len(second["obj_traj"]) == 4
    assert set(first) == {"triplet", "score", "duration", "sub_traj", "obj_traj"}  # the official format


def test_video_columns_in_order_and_empty(tmp_path):
    batch, obj, pred = hand_batch()
    cand = segment_candidates(batch, obj, pred, "SGDet", np.arange(5), InferConfig(2, 3, "mean"))
    cols = VideoColumns(VOCAB, InferConfig())
    cols.add(batch, cand)
    want = {"v": ops.greedy_relation_association(P.segment_relations(batch, obj, pred, "SGDet", VOCAB, np.arange(5),
                                                                     3, pred_topk=2)["v"])}  # fmt: skip
    assert cols.result().to_dicts() == want and len(want["v"]) == 2
    again = VideoColumns(VOCAB, InferConfig())
    again.add(batch, cand)
    other = collate_segments([segment("w", 0, 10, [(0, 10)], [0])])
    again.add(other, segment_candidates(other, obj[:1], pred[:0], "SGDet", np.arange(5), InferConfig()))
    with pytest.raises(ValueError, match="segments of video 'v' do not come one after the other"):
        again.add(batch, cand)
    empty = VideoColumns(VOCAB, InferConfig()).result()  # no segment at all
    assert len(empty) == 0 and empty.videos == ()
    empty.write_json(tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text()) == {"version": "VERSION 1.0", "results": {}}


def test_split_classification_and_segment_groundtruth():
    probs = torch.tensor([[0.5, 0.2, 0.1, 0.2], [0.0, 0.0, 0.0, 1.0]])  # dog cat fox background
    score, label = split_classification(probs, VOCAB.object_mask("novel"))
    assert label.tolist() == [2, 2] and score.tolist() == [1.0, 0.0]  # the only novel class; an all-zero row scores 0
    score, label = split_classification(probs, VOCAB.object_mask("base"))
    assert label.tolist() == [0, 0] and score[0] == pytest.approx(0.5 / 0.7)
    score, label = split_classification(probs, VOCAB.object_mask("all"))
    assert label.tolist()[0] == 0 and score[0] == pytest.approx(0.5 / 0.8)  # no background column

    class Ann:  # the fields of uasan.data.Annotation that segment_groundtruth reads
        categories = ("dog", "fox", "cat")
        boxes = np.arange(3 * 8 * 4, dtype=np.float64).reshape(3, 8, 4)
        valid = np.array([[0, 1, 1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1]], bool)

    gt = segment_groundtruth(Ann, 1, 6, {"dog", "fox"})  # the fox has no box in [1, 6); the cat is not a class
    assert len(gt) == 1 and gt[0]["class"] == "dog" and gt[0]["fstart"] == 0
    np.testing.assert_array_equal(gt[0]["bboxes"], Ann.boxes[0, [1, 2, 4, 5]])  # the gap at frame 3 is skipped
    assert [g["fstart"] for g in segment_groundtruth(Ann, 2, 8, {"dog", "fox", "cat"})] == [0, 5, 0]


# ---------------------------------------------------------------------------------------------------------------
# on the tiny world, with random scores (no training needed)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tiny_world):
    cfg = load_config(TrainConfig, "synth", [f"data.root={tiny_world}", "data.batch_segments=4"])
    ds = SegmentDataset(tiny_world, "test", labels=False, features=False, union_features=False)
    return tiny_world, cfg, ds.split, ds.vocab


def test_columns_equal_dicts_metrics_and_json(world, tmp_path):
    """The columnar path (array association, RelationColumns, orjson) gives the dict path's relations, files and
    metrics exactly."""
    root, cfg, split, vocab = world
    groundtruth = load_groundtruth(root, "test")
    preds = {}
    for output in ("dicts", "columns"):
        preds[output] = {
            mode: P.predict(P.random_scorer(vocab, 1), root, mode, vocab, cfg, split, progress=False, output=output)
            for mode in ("SGDet", "PredCls")
        }
    for mode in ("SGDet", "PredCls"):
        for s in ("novel", "all"):
            dicts, cols = preds["dicts"][mode][s], preds["columns"][mode][s]
            assert sum(map(len, dicts.values())) > 0
            assert cols.to_dicts() == dicts  # same videos, order, triplets, scores, durations and boxes
            P.write_json(tmp_path / "d.json", {"version": "VERSION 1.0", "results": dicts})
            cols.write_json(tmp_path / "c.json")
            assert json.loads((tmp_path / "c.json").read_text()) == json.loads((tmp_path / "d.json").read_text())
    metrics = {k: P.evaluate_predictions(groundtruth, v, split) for k, v in preds.items()}
    assert metrics["columns"] == metrics["dicts"]
    assert metrics["columns"]["PredCls"]["all"]["R@100"] > 0  # the ground truth is reached at all
    with pytest.raises(ValueError, match="output"):
        P.predict(P.random_scorer(vocab), root, "PredCls", vocab, cfg, split, progress=False, output="json")


def test_run_evaluation_files_tagging_from_sgdet(world, tmp_path, capsys):
    root, cfg, split, vocab = world
    metrics = P.run_evaluation(
        P.random_scorer(vocab, 2), root, vocab, cfg, split, pred_dir=tmp_path, progress=True, label="baseline random"
    )
    # without a terminal: plain lines that name the scorer (not four identical "predict SGDet" bars)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "baseline random: predictions and metrics on the test subset ..."
    for mode in P.MODES:
        assert any(ln.startswith(f"baseline random: predict {mode}: done, ") for ln in err), err
    assert err[-1].startswith("baseline random: predictions and metrics on the test subset: done in "), err
    groundtruth = load_groundtruth(root, "test")
    for mode in P.MODES:
        for s in P.SPLITS:
            objects, predicates = split_categories(split, s)
            got = evaluate_files(root, tmp_path / f"{mode}_{s}.json", objects=objects, predicates=predicates)
            header = json.loads((tmp_path / f"{mode}_{s}.json").read_text())  # uasan.predict's fields too
            assert (header["mode"], header["split"]) == (mode, s)
            want = {k: metrics[mode][s][k] for k in ("mAP", "R@50", "R@100")}
            assert {k: got[k] for k in ("mAP", "R@50", "R@100")} == pytest.approx(want, abs=1e-12)
            for k, (lo, hi) in metrics[mode][s]["ci95"].items():  # the bootstrap interval brackets the estimate
                assert lo <= want[k] + 1e-12 and want[k] <= hi + 1e-12
            if mode == "SGDet":  # relation tagging is the SGDet predictions' P@K
                assert metrics["RelTag"][s] == {k: got[k] for k in ("P@1", "P@5", "P@10")}
    pred = json.loads((tmp_path / "SGDet_all.json").read_text())["results"]
    filtered = filter_groundtruth(groundtruth, *split_categories(split, "all"))
    assert evaluate_relations(filtered, pred)["P@5"] == metrics["RelTag"]["all"]["P@5"]
    assert set(metrics["trajectory"]) == {"novel", "base", "all"}


def test_trajectory_rows_use_their_own_classifier(world):
    """A scorer that gives every proposal of a novel class a wrong *base* class first and its true class second:
    the novel row (novel-only classifier) recalls as an oracle does, the all row (all classes) misses the novel
    trajectories, and the base row never sees the novel proposals' true class."""
    root, cfg, split, vocab = world
    labelled = SegmentDataset(root, "test", split=split, mode="SGDet", label_split="all", **cfg.data.dataset_options())
    truth = {}
    for i in range(len(labelled)):
        item = labelled[i]
        for k, row in enumerate(item.index.tolist()):
            truth[(item.tag, row)] = int(item.traj_labels[k])
    n_obj, n_base = len(vocab.objects), vocab.num_base_objects

    def scorer(decoy: bool):
        def score(batch):
            probs = torch.full((batch.num_trajectories, n_obj + 1), 0.01)
            for n, seg in enumerate(batch.traj_segment.tolist()):
                c = truth[(batch.tags[seg], int(batch.traj_index[n]))]
                if c < 0:
                    continue  # background: uniform
                probs[n, c] = 0.3 if (decoy and c >= n_base) else 0.6
                if decoy and c >= n_base:
                    probs[n, 0] = 0.6  # a base class ranks first among all classes
            return probs / probs.sum(-1, keepdim=True), torch.zeros(batch.num_pairs, len(vocab.predicates))

        return score

    oracle = P.trajectory_metrics(scorer(False), root, vocab, cfg, split)
    decoyed = P.trajectory_metrics(scorer(True), root, vocab, cfg, split)
    assert oracle["novel"]["R@10"] > 0.5 and oracle["all"]["R@10"] > 0.5
    assert decoyed["novel"] == oracle["novel"]  # the novel-only classifier never sees the base decoy
    assert decoyed["all"]["R@10"] < oracle["all"]["R@10"]  # the all-class classifier takes the decoy
