"""The package's layers: model and data at the bottom, the engine on both, the applications on
top.  Each module may import only from its own layer or those below; no import cycles; no
package import hidden inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "transformer"
# what each layer may import from (besides itself)
ALLOWED = {"model": set(), "data": set(), "engine": {"model", "data"},
           "apps": {"model", "data", "engine"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported transformer module, at module level?)`` for every import in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from . import checkpoint" imports a module; "from .x import name" the module x
            targets = [f"{prefix}.{a.name}" if not node.module else prefix for a in node.names]
        else:
            continue
        for target in targets:
            if target == "transformer" or target.startswith("transformer."):
                found.append((target, id(node) in top))
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {m: sorted({t for t, _ in imports(p)}) for m, p in MODULES.items()}


def test_every_module_belongs_to_a_layer():
    loose = [m for m in MODULES if layer(m) is None
             and m not in ("transformer", "transformer.__main__")]
    assert not loose, f"modules outside model/, data/, engine/, apps/: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_and_sit_at_module_level(module):
    own = layer(module)
    for target, at_top in imports(MODULES[module]):
        assert at_top, f"{module} imports {target} inside a function"
        if module == "transformer.__main__":
            assert target.startswith("transformer.apps"), target
            continue
        assert target != "transformer", f"{module} imports the package facade"
        if module == "transformer":  # the facade re-exports the layers below the apps
            assert layer(target) != "apps", f"transformer/__init__.py imports {target}"
            continue
        other = layer(target)
        assert other == own or other in ALLOWED[own], (
            f"{module} ({own}) imports {target} ({other}): {own} may import only from "
            f"{sorted(ALLOWED[own] | {own})}")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph ``edges`` as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := visit(n, path + [n])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m, [m])):
            return cycle
    return None


def test_no_import_cycles():
    def resolve(target: str) -> str | None:  # "transformer.model.config.option" -> module
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {resolve(t) for t in targets} - {None, m} for m, targets in GRAPH.items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_checker_sees_a_planted_upward_import(tmp_path):
    """The rules above could pass vacuously; check they catch a violation."""
    bad = tmp_path / "transformer" / "model" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..engine import train\n\ndef f():\n    from .config import option\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "transformer"
    try:
        found = imports(bad)
    finally:
        PACKAGE = saved
    assert ("transformer.engine", True) in found
    assert ("transformer.model.config", False) in found
