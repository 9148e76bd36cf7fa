"""The run's reports: ``metrics.md`` (tables laid out like the paper's) and the ablation table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from uasan.engine._atomic import atomic_write_text

__all__ = ["metrics_markdown", "pct", "write_ablation"]


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def metrics_markdown(metrics: dict[str, Any], title: str) -> str:
    """Tables laid out like the paper's Table 1 (relation detection / tagging) and Table 3 (trajectories)."""
    lines = [f"# {title}", "", "## Relation detection (Table 1 layout)", ""]
    lines += [
        "| model | mode | split | mAP | R@50 | R@100 | P@1 | P@5 | P@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for who, m in (("UASAN", metrics), ("random", metrics.get("random_baseline", {}))):
        for mode in ("SGDet", "SGCls", "PredCls"):
            for split in ("novel", "all"):
                r = m.get(mode, {}).get(split)
                if r is None:
                    continue
                tag = m.get("RelTag", {}).get(split, {}) if mode == "PredCls" else {}
                p = [pct(tag[k]) if k in tag else "–" for k in ("P@1", "P@5", "P@10")]
                lines.append(
                    f"| {who} | {mode} | {split} | {pct(r['mAP'])} | {pct(r['R@50'])} | {pct(r['R@100'])} | "
                    + " | ".join(p)
                    + " |"
                )
    lines += [
        "",
        "## Trajectory classification (Table 3 layout)",
        "",
        "| model | classes | R@5 | R@10 |",
        "|---|---|---|---|",
    ]
    for who, m in (("UASAN", metrics), ("random", metrics.get("random_baseline", {}))):
        for split, r in m.get("trajectory", {}).items():
            lines.append(f"| {who} | {split} | {pct(r['R@5'])} | {pct(r['R@10'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


def write_ablation(out: Path, results: dict[str, dict[str, Any]]) -> None:
    rows = [
        "| variant | PredCls novel mAP | PredCls novel R@50 | PredCls all mAP | PredCls all R@50 | SGDet novel R@50 |",
        "|---|---|---|---|---|---|",
    ]
    for v, m in results.items():
        pc, sg = m["PredCls"], m["SGDet"]
        rows.append(
            f"| {v} | {pct(pc['novel']['mAP'])} | {pct(pc['novel']['R@50'])} | {pct(pc['all']['mAP'])} | "
            f"{pct(pc['all']['R@50'])} | {pct(sg['novel']['R@50'])} |"
        )
    base = next(iter(results.values()))["random_baseline"]["PredCls"]
    rows.append(
        f"| random | {pct(base['novel']['mAP'])} | {pct(base['novel']['R@50'])} | {pct(base['all']['mAP'])} | "
        f"{pct(base['all']['R@50'])} | – |"
    )
    text = (
        "# Ablation (DESIGN §6 variants)\n\n"
        "A: pair only; B: + union and motion; C: + SACEncoder; full: + URADecoder.\n\n"
    )
    atomic_write_text(out / "ablation.md", text + "\n".join(rows) + "\n")
    atomic_write_text(
        out / "ablation.json",
        json.dumps({v: {k: m[k] for k in ("SGDet", "SGCls", "PredCls")} for v, m in results.items()}, indent=1),
    )
