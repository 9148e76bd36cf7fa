"""No import circles: the graph of ``import`` statements between the package's own modules has no cycle.

Read from the source (AST), every import counted wherever it stands (module level, inside a function, under
``TYPE_CHECKING``): a circle that only works because one side is lazy or annotation-only is still a circle to
whoever changes either module. ``kernels/`` ships as ``uasan.kernels`` and is read under that name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"uasan": ROOT / "uasan", "uasan.kernels": ROOT / "kernels"}


def _modules() -> dict[str, Path]:
    mods = {}
    for name, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [*name.split("."), *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports: ``from a.b import c`` counts as ``a.b.c`` when that is a module,
    else as ``a.b`` (importing a submodule is not counted as importing its parent package's ``__init__``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in mods)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                if f"{base}.{a.name}" in mods:
                    out.add(f"{base}.{a.name}")
                elif base in mods:
                    out.add(base)
    out.discard(name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_cycle_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    mods = _modules()
    assert "uasan.engine.trainer" in mods and "uasan.kernels.pair_self_attention" in mods
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert _cycles(graph) == []


def test_engine_hooks_import_the_trainer_one_way():
    mods = _modules()
    assert "uasan.engine.trainer" in _imports("uasan.engine.hooks", mods["uasan.engine.hooks"], mods)
    assert "uasan.engine.hooks" not in _imports("uasan.engine.trainer", mods["uasan.engine.trainer"], mods)


# The generic engine sits above the parts and below the entry points: a part that needs a file helper takes it from
# uasan.files, never from the trainer's package.
PARTS = ("uasan.models", "uasan.evaluation", "uasan.extract", "uasan.visualize", "uasan.data", "uasan.ops")
ENTRY_POINTS = {"uasan.train", "uasan.pretrain", "uasan.predict", "uasan.evaluate", "uasan.runs", "uasan.config"}


def _in(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_only_entry_points_import_the_engine():
    mods = _modules()
    offenders = {
        name: sorted(i for i in _imports(name, path, mods) if _in(i, ["uasan.engine"]))
        for name, path in mods.items()
        if not _in(name, ["uasan.engine"]) and name not in ENTRY_POINTS
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"only entry points may import uasan.engine: {offenders}"
    assert any(_in(i, ["uasan.engine"]) for i in _imports("uasan.train", mods["uasan.train"], mods))


def test_the_engine_knows_no_model_or_data():
    mods = _modules()
    offenders = {
        name: sorted(i for i in _imports(name, path, mods) if _in(i, PARTS))
        for name, path in mods.items()
        if _in(name, ["uasan.engine"])
    }
    assert not {k: v for k, v in offenders.items() if v}
