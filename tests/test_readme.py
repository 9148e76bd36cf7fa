"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_blocks_run(code):
    exec(compile(code, str(README), "exec"), {})


def test_readme_has_examples():
    assert BLOCKS


def _layout_entries() -> list[str]:
    """First-column paths of the README's Layout block (continuation lines are indented)."""
    text = README.read_text()
    block = re.search(r"^## Layout\n.*?```\n(.*?)```", text, flags=re.S | re.M)
    assert block, "README has no Layout code block"
    return [line.split()[0] for line in block.group(1).splitlines() if line and not line[0].isspace()]


def test_readme_layout_matches_the_tree():
    """Every path the Layout names exists, and every top-level folder and every public module or package of
    ``uasan/`` has its line: the map a newcomer reads is the tree they get."""
    root = README.parent
    entries = _layout_entries()
    missing = [e for e in entries if not (root / e).exists()]
    assert not missing, f"README Layout names paths that do not exist: {missing}"
    named = {e.rstrip("/") for e in entries}
    expected = {p.name for p in root.iterdir() if p.is_dir() and p.name in ("csrc", "kernels", "tests", "benchmarks")}
    expected |= {
        f"uasan/{p.name}"
        for p in (root / "uasan").iterdir()
        if not p.name.startswith(("_", ".")) and (p.suffix == ".py" or (p.is_dir() and p.name != "__pycache__"))
    }
    assert not expected - named, f"README Layout lacks lines for {sorted(expected - named)}"


def test_design_references_point_at_the_shipped_design():
    """Every ``DESIGN §N`` in the code, tests and README names a section of docs/DESIGN.md (shipped in the repo)."""
    root = README.parent
    design = (root / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\.", design, flags=re.M))
    files = [README, *(p for d in ("uasan", "kernels", "tests", "benchmarks") for p in (root / d).rglob("*.py"))]
    cited = {(f.name, n) for f in files for n in re.findall(r"DESIGN\]?(?:\([^)]*\))? §(\d+)", f.read_text("utf-8"))}
    assert cited and {n for _, n in cited} <= sections, sorted(c for c in cited if c[1] not in sections)
