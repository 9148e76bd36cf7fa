"""The dependency bounds CI checks: .ci/constraints-lowest.txt pins exactly the lower bounds pyproject.toml allows,
so the lowest-versions job of .ci/run tests what the bounds promise (issue 19)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
# torch's lower bound is not installed by CI: PyPI's Linux wheels of old torch are CUDA builds of several GB; CI
# tests the README's CPU wheel in both jobs (README, "Dependencies").
NOT_PINNED = {"torch"}


def _lower_bounds() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    bounds = {}
    for req in reqs:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", req)
        assert m, f"pyproject.toml: {req!r} has no lower bound"
        bounds[m.group(1).lower()] = m.group(2)
    return bounds


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints-lowest.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _same(a: str, b: str) -> bool:
    pad = lambda v: (v.split(".") + ["0", "0"])[:3]  # noqa: E731 (6.0 == 6.0.0)
    return pad(a) == pad(b)


def test_lowest_constraints_pin_the_lower_bounds():
    bounds, pins = _lower_bounds(), _pins()
    assert set(pins) == set(bounds) - NOT_PINNED
    assert all(_same(pins[name], bounds[name]) for name in pins), {n: (bounds[n], pins[n]) for n in pins}


def test_ci_runs_the_readme_command_and_the_lowest_job():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = 'pip install torch==2.13.0 -e ".[test]" && pytest'
    assert command in ci and command in readme
    assert "-c .ci/constraints-lowest.txt" in ci
