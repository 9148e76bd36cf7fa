"""python -m uasan.evaluate: the table, the atomic JSON output and one-line messages for bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.evaluation.test_relations import hand_case, hand_case_edited
from uasan import evaluate as cli
from uasan.evaluation import evaluate_relations


@pytest.fixture
def files(tmp_path):
    gt, pred = hand_case()
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps({**gt, "empty": []}))
    pred_path.write_text(json.dumps({"version": "VERSION 1.0", "results": pred}))
    return gt_path, pred_path, gt, pred


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_table_and_writes_json(files, tmp_path, capsys):
    gt_path, pred_path, gt, pred = files
    out_path = tmp_path / "metrics.json"
    code, out, err = run(["--groundtruth", gt_path, "--predictions", pred_path, "--out", out_path], capsys)
    assert code == 0, err
    assert "mAP" in out and "R@100" in out and "P@10" in out and "75.00" in out
    written = json.loads(out_path.read_text())
    assert written["metrics"] == evaluate_relations(gt, pred)
    assert written["split"] == "all"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".metrics-")] == []  # no temp file left


def test_cli_split_from_file(files, tmp_path, capsys):
    gt_path, pred_path, _, _ = files
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"objects": {"base": ["dog", "cat"], "novel": ["fox"]},
                                 "predicates": {"base": ["chase"], "novel": ["watch"]}}))  # fmt: skip
    code, out, _ = run(["--groundtruth", gt_path, "--predictions", pred_path, "--split", "novel", "--split-file",
                        split], capsys)  # fmt: skip
    assert code == 0 and "novel" in out and "0 videos" in out
    code, out, _ = run(["--groundtruth", gt_path, "--predictions", pred_path, "--split", "base", "--split-file",
                        split], capsys)  # fmt: skip
    assert code == 0 and "1 videos" in out


def _bad_files():
    with_rel = hand_case_edited  # prediction 1 of the hand case edited
    return [
        ("{not json", r"pred.json: not valid JSON \(line 1"),
        (json.dumps({"version": "1"}), r"pred.json: expected an object with a 'results' field"),
        (json.dumps([1, 2]), r"pred.json: expected an object with a 'results' field"),
        (json.dumps({"results": []}), r"pred.json: field 'results': expected an object"),
        (json.dumps({"results": {"ghost": []}}), r"pred.json: field 'results' names video 'ghost'"),
        (with_rel(score=None), r"pred.json: results\['v'\]\[1\]: missing field 'score'"),
        (with_rel(duration=[0, 5]), r"pred.json: results\['v'\]\[1\] field 'sub_traj': expected one box per frame"),
        (with_rel(duration="0-2"), r"pred.json: results\['v'\]\[1\] field 'duration'"),
        (with_rel(obj_traj=[[0, 0, 9, 9]]), r"pred.json: results\['v'\]\[1\] field 'obj_traj'"),
        (with_rel(sub_traj=[[0, 0, 9, 9], [9, 0, 0, 9]]), r"pred.json: results\['v'\]\[1\] field 'sub_traj'.*x2 >= x1"),
        (
            json.dumps({"results": {"empty": [{"triplet": ["a", "b", "c"]}]}}),
            r"pred.json: results\['empty'\]\[0\]: missing field",
        ),  # fmt: skip
    ]


@pytest.mark.parametrize("case", range(len(_bad_files())))
def test_cli_bad_prediction_file(files, capsys, case):
    gt_path, pred_path, _, _ = files
    text, pattern = _bad_files()[case]
    pred_path.write_text(text)
    code, out, err = run(["--groundtruth", gt_path, "--predictions", pred_path], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert pytest.importorskip("re").search(pattern, err), err


def test_cli_bad_groundtruth_and_split(files, tmp_path, capsys):
    gt_path, pred_path, _, _ = files
    code, _, err = run(["--groundtruth", tmp_path / "missing.json", "--predictions", pred_path], capsys)
    assert code == 2 and "missing.json: cannot read the ground-truth file" in err
    bad_gt = tmp_path / "bad_gt.json"
    bad_gt.write_text(json.dumps({"v": [{"triplet": ["a", "b", "c"], "duration": [0, 1]}]}))
    code, _, err = run(["--groundtruth", bad_gt, "--predictions", pred_path], capsys)
    assert code == 2 and "bad_gt.json: ['v'][0]: missing field 'sub_traj'" in err
    bad_split = tmp_path / "split.json"
    bad_split.write_text(json.dumps({"objects": []}))
    code, _, err = run(["--groundtruth", gt_path, "--predictions", pred_path, "--split", "novel", "--split-file",
                        bad_split], capsys)  # fmt: skip
    assert code == 2 and "split" in err and "Traceback" not in err


def test_cli_subprocess(files):
    # cwd away from the checkout: `python -m` puts the cwd first on sys.path, which would shadow the installed package
    gt_path, pred_path, _, _ = files
    ok = subprocess.run([sys.executable, "-m", "uasan.evaluate", "--groundtruth", str(gt_path), "--predictions",
                         str(pred_path)], capture_output=True, text=True, cwd=gt_path.parent)  # fmt: skip
    assert ok.returncode == 0 and "mAP" in ok.stdout
    pred_path.write_text("[")
    bad = subprocess.run([sys.executable, "-m", "uasan.evaluate", "--groundtruth", str(gt_path), "--predictions",
                          str(pred_path)], capture_output=True, text=True, cwd=gt_path.parent)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not valid JSON" in bad.stderr


def test_cli_mode_and_check_boxes(files, tmp_path, capsys):
    gt_path, pred_path, gt, pred = files
    out_path = tmp_path / "m.json"
    code, out, _ = run(["--groundtruth", gt_path, "--predictions", pred_path, "--mode", "SGDet", "--out", out_path],
                       capsys)  # fmt: skip
    assert code == 0 and "SGDet, split all" in out and json.loads(out_path.read_text())["mode"] == "SGDet"
    pred["v"][3]["sub_traj"] = [[0, 0, -1, 9]] * 2  # never compared: only --check-boxes all reads it
    pred_path.write_text(json.dumps({"results": pred}))
    assert run(["--groundtruth", gt_path, "--predictions", pred_path], capsys)[0] == 0
    code, _, err = run(["--groundtruth", gt_path, "--predictions", pred_path, "--check-boxes", "all"], capsys)
    assert code == 2 and "pred.json: results['v'][3] field 'sub_traj'" in err and "x2 >= x1" in err


def test_cli_data_root(tmp_path, capsys):
    from tests.evaluation.test_columns import _annotation, _write_vidor
    from uasan.data import load_groundtruth
    from uasan.evaluation import RelationColumns

    rng = pytest.importorskip("numpy").random.default_rng(3)
    _write_vidor(tmp_path / "root", [_annotation(rng, f"{100 + v}") for v in range(4)])
    gt = load_groundtruth(tmp_path / "root")
    pred = {vid: [{**r, "score": 0.5} for r in rels] for vid, rels in gt.items()}
    RelationColumns.from_dicts(pred, scores=True).write_json(tmp_path / "pred.json")
    code, out, err = run(["--groundtruth", tmp_path / "root", "--predictions", tmp_path / "pred.json", "--out",
                          tmp_path / "m.json"], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == evaluate_relations(gt, pred)
    code, _, err = run(["--groundtruth", tmp_path / "nothing", "--predictions", tmp_path / "pred.json"], capsys)
    assert code == 2 and "nothing" in err
