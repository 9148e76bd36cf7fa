"""metrics.md and the ablation table: the paper's layout, a row for UASAN and for every baseline."""

from __future__ import annotations

import json

from uasan.reports import baseline_rows, data_record, metrics_markdown, write_ablation


def run_metrics(base: float) -> dict:
    """Metrics of the structure run_evaluation returns; every value is ``base`` + a small offset per entry."""
    rel = {s: {k: base + i / 100 for i, k in enumerate(("mAP", "R@50", "R@100"))} for s in ("novel", "all")}
    return {
        "SGDet": rel,
        "SGCls": rel,
        "PredCls": {s: {k: v + 0.05 for k, v in r.items()} for s, r in rel.items()},
        "RelTag": {s: {k: base + 0.2 for k in ("P@1", "P@5", "P@10")} for s in ("novel", "all")},
        "trajectory": {s: {"R@5": base + 0.3, "R@10": base + 0.4} for s in ("novel", "base", "all")},
    }


def section(md: str, title: str) -> list[str]:
    """The table rows (without header) of the section whose heading starts with ``title``."""
    text = md.split(f"## {title}")[1].split("\n## ")[0]
    return [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| model")]


def test_tables_with_the_baselines_schema():
    m = run_metrics(0.1)
    m["baselines"] = {"stage0_zero_shot": run_metrics(0.05), "random": run_metrics(0.01), "base_probe": {}}
    m["random_baseline"] = run_metrics(0.5)  # older key: "baselines" has a random row, so this one is not shown
    md = metrics_markdown(m, "run")
    assert md.startswith("# run\n")
    assert [r for r, _ in baseline_rows(m)] == ["random", "base-label probe", "stage-0 zero-shot"]
    traj = section(md, "Trajectory classification (Table 1 layout)")
    assert traj == [
        "| UASAN | 40.00 | 50.00 | 40.00 | 50.00 | 40.00 | 50.00 |",
        "| random | 31.00 | 41.00 | 31.00 | 41.00 | 31.00 | 41.00 |",
        "| base-label probe | – | – | – | – | – | – |",
        "| stage-0 zero-shot | 35.00 | 45.00 | 35.00 | 45.00 | 35.00 | 45.00 |",
    ]
    det = section(md, "Relation detection (Table 2 layout)")
    assert det[0] == "| UASAN | SGDet | 10.00 | 11.00 | 12.00 | 10.00 | 11.00 | 12.00 |"
    assert det[1] == "| random | SGDet | 1.00 | 2.00 | 3.00 | 1.00 | 2.00 | 3.00 |"
    assert [r.split(" | ")[:2] for r in det] == [
        [f"| {who}", mode] for mode in ("SGDet", "SGCls", "PredCls") for who in ("UASAN", "random", "stage-0 zero-shot")
    ]  # the empty base_probe metrics have no mode rows
    assert "| UASAN | PredCls | 15.00 | 16.00 | 17.00 |" in md
    tag = section(md, "Relation tagging (from the SGDet predictions")
    assert tag[0] == "| UASAN | 30.00 | 30.00 | 30.00 | 30.00 | 30.00 | 30.00 |" and len(tag) == 4


def test_tables_with_the_random_baseline_key_and_partial_metrics():
    m = run_metrics(0.1)
    m["random_baseline"] = run_metrics(0.01)
    m["baselines"] = {"stage0_zero_shot": {"trajectory": {"novel": {"R@5": 0.25}}}}
    md = metrics_markdown(m, "run")
    assert [r.split(" |")[0] for r in section(md, "Trajectory")] == ["| UASAN", "| random", "| stage-0 zero-shot"]
    assert "| stage-0 zero-shot | 25.00 | – | – | – | – | – |" in md
    del m["RelTag"], m["baselines"]
    md = metrics_markdown(m, "run")
    assert section(md, "Relation tagging")[0] == "| UASAN | – | – | – | – | – | – |"
    assert "| random | PredCls | 6.00 | 7.00 | 8.00 |" in md
    assert baseline_rows(run_metrics(0.1)) == []


def test_ablation_table(tmp_path):
    results = {v: run_metrics(x) for v, x in (("A", 0.1), ("B", 0.2), ("full", 0.3))}
    for m in results.values():
        m["baselines"] = {"random": run_metrics(0.01), "base_probe": run_metrics(0.02)}
    write_ablation(tmp_path, results)
    md = (tmp_path / "ablation.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| variant")]
    assert [r.split(" |")[0] for r in rows] == ["| A", "| B", "| full", "| random", "| base-label probe"]
    assert rows[0] == "| A | 15.00 | 16.00 | 15.00 | 16.00 | 10.00 | 11.00 | 10.00 | 11.00 |"
    assert "PredCls novel mAP" in md.splitlines()[4]
    data = json.loads((tmp_path / "ablation.json").read_text())
    assert list(data) == ["A", "B", "full", "baselines"] and list(data["baselines"]) == ["random", "base-label probe"]
    assert data["full"]["RelTag"] == results["full"]["RelTag"] and "trajectory" not in data["full"]
    results = {"full": {**run_metrics(0.3), "random_baseline": run_metrics(0.01)}}
    write_ablation(tmp_path, results)  # the older key
    assert "| random | 6.00 | 7.00 |" in (tmp_path / "ablation.md").read_text()


def test_metrics_md_names_the_text_encoder(tmp_path):
    meta = {"generator": "uasan.data.synth", "seed": 0, "size": "small", "videos": {"train": 4, "val": 1, "test": 2},
            "dim": 1408, "text_encoder": {"name": "hash", "fallback": "transformers is not installed"}}  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    record = data_record(tmp_path)
    assert record["text_encoder"] == {"name": "hash", "fallback": "transformers is not installed"}
    text = metrics_markdown({"data": record}, "run")
    assert "text encoder **hash** (fallback: transformers is not installed" in text and "2 test videos" in text
    assert data_record(tmp_path / "real") == {"root": str(tmp_path / "real")}  # a real data set root: no world
    assert "Data:" not in metrics_markdown({}, "run")


def _per_video(rng, p: float) -> dict:
    """``metrics["per_video"]`` of 30 test videos whose recall is about ``p`` (the same videos for every model)."""
    import numpy as np

    from uasan.evaluation import VideoScores

    n_gt = np.random.default_rng(0).integers(1, 6, 30)
    hits = np.stack([rng.binomial(n_gt, p), rng.binomial(n_gt, min(1.0, p + 0.1))], 1)
    vs = VideoScores(tuple(f"v{i}" for i in range(30)), rng.uniform(0, 2 * p, 30), hits, n_gt.astype(float), (50, 100))
    return {mode: {s: vs.to_dict() for s in ("novel", "all")} for mode in ("SGDet", "SGCls", "PredCls")}


def test_intervals_and_paired_comparisons_in_the_reports(tmp_path):
    import numpy as np

    from uasan.evaluation import compare_runs

    rng = np.random.default_rng(1)
    m = run_metrics(0.3)
    m["PredCls"]["novel"]["ci95"] = {"mAP": [0.3, 0.4], "R@50": [0.31, 0.42], "R@100": [0.32, 0.43]}
    m["per_video"], random = _per_video(rng, 0.5), {**run_metrics(0.01), "per_video": _per_video(rng, 0.05)}
    m["baselines"] = {"random": random}
    m["comparisons"] = {"random": compare_runs(m["per_video"], random["per_video"])}
    md = metrics_markdown(m, "run")
    assert "36.00 [31.00, 42.00]" in md and "95 % bootstrap interval" in md  # PredCls novel R@50 with its interval
    rows = [r for r in section(md, "UASAN against the baselines") if not r.startswith("| difference")]
    assert len(rows) == 1 and rows[0].startswith("| UASAN − random | +") and rows[0].count("*") == 12  # all clear
    results = {
        v: {**run_metrics(x), "per_video": _per_video(rng, x)} for v, x in (("A", 0.1), ("B", 0.11), ("full", 0.6))
    }
    write_ablation(tmp_path, results)
    diffs = section((tmp_path / "ablation.md").read_text(), "Differences between variants")
    diffs = [r for r in diffs if not r.startswith("| difference")]
    assert [r.split(" |")[0] for r in diffs] == ["| B − A", "| full − B", "| full − A"]
    assert diffs[1].count("*") == 8 and "B − A" in diffs[0]  # full is far above B on every column
