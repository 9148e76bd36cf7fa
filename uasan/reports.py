"""The run's reports: ``metrics.md`` (tables laid out like the paper's) and the ablation table.

A run's metrics (``metrics.json``, :func:`uasan.predict.run_evaluation`) are
``{"SGDet" | "SGCls" | "PredCls": {"novel" | "all": {mAP, R@50, R@100}}, "RelTag": {"novel" | "all": {P@1, P@5,
P@10}}, "trajectory": {"novel" | "base" | "all": {R@5, R@10}}}`` plus the baselines, each with the same structure:
``metrics["baselines"] = {"random": m, "base_probe": m, "stage0_zero_shot": m, ...}``, and the older
``metrics["random_baseline"] = m`` (shown as the random row when ``baselines`` has none). Every table has a row for
UASAN and one per baseline; a value a row lacks is shown as "–".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uasan.evaluation.bootstrap import compare_runs
from uasan.files import atomic_write_text

__all__ = ["baseline_rows", "data_record", "metrics_markdown", "pct", "write_ablation"]

# Row names of the baselines the runs report (DESIGN §7), in this order; other keys follow under their own name.
BASELINES = {"random": "random", "base_probe": "base-label probe", "stage0_zero_shot": "stage-0 zero-shot"}
MODES = ("SGDet", "SGCls", "PredCls")


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _cell(m: Mapping, *keys: str) -> str:
    """``pct(m[k0][k1]...)``, or "–" where the entry is missing."""
    for k in keys:
        if not isinstance(m, Mapping) or k not in m:
            return "–"
        m = m[k]
    return pct(m) if isinstance(m, (int, float)) else "–"


def _cell_ci(m: Mapping, mode: str, split: str, key: str) -> str:
    """``_cell`` with its 95 % interval when the metrics carry one: ``12.60 [9.10, 16.00]``."""
    value = _cell(m, mode, split, key)
    ci = m.get(mode, {}).get(split, {}).get("ci95", {}).get(key) if isinstance(m.get(mode), Mapping) else None
    return f"{value} [{pct(ci[0])}, {pct(ci[1])}]" if ci and value != "–" else value


def _diff_cell(d: Mapping[str, Any] | None) -> str:
    """A paired difference in points with its 95 % interval; ``*`` when the interval excludes 0."""
    if not d:
        return "–"
    star = " *" if d["significant"] else ""
    return f"{100 * d['diff']:+.2f} [{100 * d['ci'][0]:+.2f}, {100 * d['ci'][1]:+.2f}]{star}"


def comparison_lines(
    title: str, rows: list[tuple[str, Mapping[str, Any]]], columns: list[tuple[str, str, str]]
) -> list[str]:
    """A table of paired differences: ``rows`` = [(name, {mode: {split: {metric: paired_difference}}})]."""
    if not rows:
        return []
    header = ["difference"] + [f"{mode} {s} {k}" for mode, s, k in columns]
    body = [[name] + [_diff_cell(d.get(mode, {}).get(s, {}).get(k)) for mode, s, k in columns] for name, d in rows]
    return [
        "",
        f"## {title}",
        "",
        "Points, with the 95 % interval of a paired bootstrap over the test videos (the same videos resampled for "
        "both rows, 1000 replicates, seeded); * where the interval excludes 0.",
        "",
        *_table(header, body),
    ]


COMPARISON_COLUMNS = [(mode, s, k) for mode in MODES for s in ("novel", "all") for k in ("R@50", "mAP")]


def baseline_rows(metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``[(row name, metrics)]`` of every baseline in ``metrics``: ``metrics["baselines"]`` (known names first, in
    :data:`BASELINES` order), and ``metrics["random_baseline"]`` as "random" unless ``baselines`` has a random row."""
    found = dict(metrics.get("baselines") or {})
    if "random" not in found and isinstance(metrics.get("random_baseline"), Mapping):
        found["random"] = metrics["random_baseline"]
    order = [k for k in BASELINES if k in found] + [k for k in found if k not in BASELINES]
    return [(BASELINES.get(k, k), found[k]) for k in order if isinstance(found[k], Mapping)]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def data_record(root: str | Path) -> dict[str, Any]:
    """What a report says about its data: the root and, for a generated world, its seed, size, subset sizes and
    text encoder (with the reason when it fell back to hashed words), from ``ROOT/meta.json``."""
    record: dict[str, Any] = {"root": str(root)}
    try:
        meta = json.loads((Path(root) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return record
    if not isinstance(meta, dict) or meta.get("generator") != "uasan.data.synth":
        return record
    enc = meta.get("text_encoder") or {}
    record.update(
        world={k: meta.get(k) for k in ("seed", "size", "videos", "dim")},
        text_encoder={"name": enc.get("name"), "fallback": enc.get("fallback")},
    )
    return record


def _data_lines(data: Mapping[str, Any] | None) -> list[str]:
    if not data:
        return []
    line = f"Data: `{data['root']}`"
    world, enc = data.get("world"), data.get("text_encoder")
    if world:
        videos = ", ".join(f"{n} {s}" for s, n in (world.get("videos") or {}).items())
        line += f"; synthetic world, seed {world.get('seed')}, {videos} videos, features {world.get('dim')}-d"
    if enc:
        line += f"; text encoder **{enc.get('name')}**"
        if enc.get("fallback"):
            line += f" (fallback: {enc['fallback']}; not the MiniLM world)"
    return [line + ".", ""]


def metrics_markdown(metrics: dict[str, Any], title: str) -> str:
    """The paper's tables: trajectory classification (Table 1), relation detection SGDet / SGCls / PredCls × novel /
    all (Table 2), relation tagging from the SGDet predictions; a row for UASAN and one per baseline. A
    ``metrics["data"]`` (:func:`data_record`) is stated under the title."""
    models = [("UASAN", metrics), *baseline_rows(metrics)]
    lines = [f"# {title}", "", *_data_lines(metrics.get("data"))]

    lines += [
        "## Trajectory classification (Table 1 layout)",
        "",
        "Each class split is ranked by its own classifier (softmax over that split's classes, no background); recall "
        "is micro-averaged over the ground-truth trajectories of the segments with proposals (RePro's evaluation).",
        "",
    ]
    splits = ("novel", "base", "all")
    header = ["model"] + [f"{s} R@{k}" for s in splits for k in (5, 10)]
    rows = [[who] + [_cell(m, "trajectory", s, f"R@{k}") for s in splits for k in (5, 10)] for who, m in models]
    lines += _table(header, rows)

    lines += ["", "## Relation detection (Table 2 layout)", ""]
    header = ["model", "mode"] + [f"{s} {k}" for s in ("novel", "all") for k in ("mAP", "R@50", "R@100")]
    rows = [
        [who, mode] + [_cell_ci(m, mode, s, k) for s in ("novel", "all") for k in ("mAP", "R@50", "R@100")]
        for mode in MODES
        for who, m in models
        if mode in m
    ]
    lines += _table(header, rows)
    if any("ci95" in m.get(mode, {}).get(s, {}) for _, m in models for mode in MODES for s in ("novel", "all")):
        lines += ["", "Brackets: 95 % bootstrap interval over the test videos (1000 replicates, seeded)."]
    comparisons = metrics.get("comparisons") or {}
    rows_cmp = [(f"UASAN − {BASELINES.get(b, b)}", d) for b, d in comparisons.items()]
    lines += comparison_lines("UASAN against the baselines", rows_cmp, COMPARISON_COLUMNS)

    lines += ["", "## Relation tagging (from the SGDet predictions, as the paper's Table 2)", ""]
    cols = [("RelTag", s, f"P@{k}") for s in ("novel", "all") for k in (1, 5, 10)]
    header = ["model"] + [f"{s} {k}" for _, s, k in cols]
    rows = [[who] + [_cell(m, *c) for c in cols] for who, m in models]
    lines += _table(header, rows)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# ablation
# ---------------------------------------------------------------------------------------------------------------

ABLATION_COLUMNS = [(mode, s, k) for mode in ("PredCls", "SGDet") for s in ("novel", "all") for k in ("mAP", "R@50")]


def write_ablation(out: Path, results: dict[str, dict[str, Any]]) -> None:
    """``OUT/ablation.md`` (a row per variant, then the baselines of the first variant's metrics: they do not depend
    on the variant) and ``OUT/ablation.json`` (each variant's relation metrics, and the baselines)."""
    header = ["variant"] + [f"{mode} {s} {k}" for mode, s, k in ABLATION_COLUMNS]
    rows = [[v] + [_cell(m, *c) for c in ABLATION_COLUMNS] for v, m in results.items()]
    baselines = baseline_rows(next(iter(results.values()))) if results else []
    rows += [[who] + [_cell(m, *c) for c in ABLATION_COLUMNS] for who, m in baselines]
    text = (
        "# Ablation (DESIGN §6 variants)\n\n"
        "A: pair only; B: + union and motion; C: + SACEncoder; full: + URADecoder. "
        "Below the variants: the baselines (the same for every variant).\n\n"
    )
    lines = _table(header, rows)
    order = list(results)
    pairs = [(order[i + 1], order[i]) for i in range(len(order) - 1)]  # each variant against the one before it
    if "full" in results and "A" in results and len(results) > 2:
        pairs.append(("full", "A"))
    diffs = [
        (f"{b} − {a}", compare_runs(results[b]["per_video"], results[a]["per_video"]))
        for b, a in pairs
        if "per_video" in results[b] and "per_video" in results[a]
    ]
    lines += comparison_lines("Differences between variants", diffs, ABLATION_COLUMNS)
    atomic_write_text(out / "ablation.md", text + "\n".join(lines) + "\n")
    keys = (*MODES, "RelTag")
    data: dict[str, Any] = {v: {k: m[k] for k in keys if k in m} for v, m in results.items()}
    if baselines:
        data["baselines"] = {who: {k: m[k] for k in keys if k in m} for who, m in baselines}
    atomic_write_text(out / "ablation.json", json.dumps(data, indent=1))
