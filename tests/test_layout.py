"""The package layout is the pipeline: each module imports only from its own stage or
earlier ones, and no import cycle exists (imports inside functions included).

Stages, in order (docs/CONTRACTS.md, README "Package layout")::

    core < world < population < generate < release < infer < attacks < metrics
         < report < pipeline < api < cli
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sim

STAGES = ("core", "world", "population", "generate", "release", "infer", "attacks", "metrics",
          "report", "pipeline", "api", "cli")
PKG = Path(sim.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def stage_of(module: str) -> int:
    """Index of a module's stage; the root package ``sim`` (only ``__version__``) is core."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    return STAGES.index(parts[1])


def sim_imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every ``sim`` module imported by ``path`` (anywhere in the file), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "sim"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "sim":
                continue
            for a in node.names:  # ``from sim.report import plots`` imports a module
                sub = f"{target}.{a.name}"
                out.append((sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists() else target,
                            node.lineno))
    return out


def import_graph() -> dict[str, list[tuple[str, int]]]:
    return {module_name(p): sim_imports(p, module_name(p)) for p in sorted(PKG.rglob("*.py"))}


def test_every_module_belongs_to_a_stage():
    for mod in import_graph():
        parts = mod.split(".")
        assert len(parts) == 1 or parts[1] in STAGES, f"{mod} is in no stage of {STAGES}"


def test_no_import_from_a_later_stage():
    bad = []
    for mod, imports in import_graph().items():
        for target, line in imports:
            if stage_of(target) > stage_of(mod):
                bad.append(f"{mod}:{line} imports {target} ({STAGES[stage_of(target)]} comes after "
                           f"{STAGES[stage_of(mod)]})")
    assert not bad, "\n".join(bad)


def find_cycle(graph: dict[str, list[str]]):
    """A list of modules forming a cycle, or None (iterative DFS, white/grey/black)."""
    colour = {m: 0 for m in graph}
    for root in graph:
        if colour[root]:
            continue
        stack = [(root, iter(graph[root]))]
        path = [root]
        colour[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt, 2) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
                path.append(nxt)
    return None


def test_no_import_cycle():
    graph = {m: sorted({t for t, _ in imps if t != m}) for m, imps in import_graph().items()}
    # a package's __init__ re-exporting its own submodules is not a cycle
    for m in graph:
        graph[m] = [t for t in graph[m] if not (PKG.parent / m.replace(".", "/") / "__init__.py").exists()
                    or not t.startswith(m + ".")]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a"]}) is None


def test_no_private_name_imported_across_modules():
    """``from sim.x import _private`` from another module hides a coupling."""
    bad = []
    for p in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sim"):
                for a in node.names:
                    # private kernel modules are imported as modules by their own stage
                    if a.name.startswith("_") and not a.name.startswith("__") and a.name != "_kernels":
                        bad.append(f"{module_name(p)}:{node.lineno} imports {node.module}.{a.name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", ["io"])
def test_no_module_shadows_the_standard_library(name):
    assert not any(p.stem == name for p in PKG.rglob("*.py"))
