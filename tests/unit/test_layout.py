"""The packages' imports point one way, and no package imports one that imports it back.

Every ``import`` and ``from ... import`` of every module is read with ``ast``
(including imports inside functions and ``TYPE_CHECKING`` blocks), so a lazy
import cannot hide a cycle. ``catstream/cli.py`` wires commands by module-name
strings; those are not imports and are checked by the CLI tests instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each package may import (besides itself). The lower layers come first:
# schemas (the events) <- catstream (settings, logs, taxonomy) <- normaliser <- triton_models
# <- feeds, workers <- streams <- training <- deploy, bench, tests (the top layer).
ALLOWED: dict[str, frozenset[str]] = {
    "schemas": frozenset(),
    "catstream": frozenset({"schemas"}),
    "normaliser": frozenset({"schemas", "catstream"}),
    "triton_models": frozenset({"normaliser", "schemas", "catstream"}),
    "workers": frozenset({"schemas", "catstream"}),
    "feeds": frozenset({"triton_models", "normaliser", "schemas", "catstream"}),
    "streams": frozenset({"workers", "triton_models", "normaliser", "schemas", "catstream"}),
    "training": frozenset(
        {"feeds", "streams", "triton_models", "normaliser", "schemas", "catstream"}
    ),
}
TOP_LAYER = ("deploy", "bench", "tests")
PACKAGES = (*ALLOWED, *TOP_LAYER)


def modules(package: str) -> Iterator[Path]:
    for path in sorted((ROOT / package).rglob("*.py")):
        # Triton's numbered model versions are generated copies of triton_model.py.
        if "repository" in path.relative_to(ROOT).parts:
            continue
        yield path


def imported_packages(path: Path) -> set[str]:
    """The first-party top-level packages ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names)
    return found & set(PACKAGES)


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the modules that import it."""
    graph: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for path in modules(package):
            for target in imported_packages(path) - {package}:
                graph[package].setdefault(target, []).append(str(path.relative_to(ROOT)))
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the package graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_package_is_found() -> None:
    for package in PACKAGES:
        assert (ROOT / package).is_dir(), package
        assert any(modules(package)), package


def test_the_package_import_graph_has_no_cycle() -> None:
    graph = package_graph()
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        target: importers
        for target, importers in package_graph()[package].items()
        if target not in ALLOWED[package]
    }
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}; found {wrong}"


def test_the_allowed_directions_are_themselves_acyclic() -> None:
    allowed = {p: {t: ["allowed"] for t in targets} for p, targets in ALLOWED.items()}
    assert find_cycle(allowed) is None


def test_find_cycle_sees_a_cycle_through_three_packages() -> None:
    graph = {"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["x"]}, "b": {}}) is None


def test_a_lazy_import_counts(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.train import train\n    import streams.app\n")
    assert imported_packages(module) == {"training", "streams"}


def test_every_cli_command_module_exists() -> None:
    from catstream.cli import COMMANDS

    for module_name, _ in COMMANDS.values():
        path = ROOT.joinpath(*module_name.split(".")).with_suffix(".py")
        assert path.is_file(), f"catstream/cli.py names {module_name}, which is not at {path}"
