"""``benchmarks/gpu_report.py --dry-run``: every step of the GPU report on the CPU (Triton interpreter, float32, tiny
sizes), so that the one command meant for a GPU machine cannot rot unnoticed. About a minute on an idle 2-core box."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_report_dry_run(tmp_path):
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_report.py"), str(out), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    text = out.read_text()
    for heading in ("## Steps", "## Tiles", "## Attention ops", "## SACEncoder + URADecoder block",
                    "## Stage-2 training throughput", "## Goals"):  # fmt: skip
        assert heading in text, heading
    section = text.split("## Steps")[1].split("## ")[0]
    steps = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert [s[0] for s in steps[1:]] == ["| tiles", "| attention", "| block", "| train", "| tests"], steps
    assert all(s[1] == "ok" for s in steps[1:]), section
    for path in ("| triton |", "| sdpa-math |", "| naive |"):
        assert path in text, path
    assert "| torch |" in text and "pairs/s" in text
    assert "dry run" in text
