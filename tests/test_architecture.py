"""The package structure: no two packages import each other, and the domain and shared code import no web or app code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _package(module: str) -> str:
    """The unit the rule speaks of: `shared.eventstore`, `services.orders`, `services.bootstrap`..."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _imports(path: Path) -> set[str]:
    """Every module this file imports at run time (TYPE_CHECKING-only imports are not edges)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in ("services", "shared")}


def package_graph() -> dict[str, set[str]]:
    """Package -> the packages it imports (its own excluded)."""
    graph: dict[str, set[str]] = {}
    for path in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]):
        source = _package(_module(path))
        edges = graph.setdefault(source, set())
        edges |= {_package(m) for m in _imports(path)} - {source}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in the graph, as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_import_graph_has_no_cycles() -> None:
    graph = package_graph()
    assert {"services.orders", "services.notifier", "services.registry", "shared.eventstore"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, TYPE_CHECKING-only imports included (a circle there is still a circle)."""
    paths = sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")])
    modules = {_module(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        graph[_module(path)] = {m for m in found if m in modules} - {_module(path)}
    return graph


def test_the_module_import_graph_has_no_cycles_even_for_type_checking() -> None:
    graph = module_graph()
    assert "services.orders.state" in graph["services.orders.sla_clock"]
    # A package's __init__ importing its own modules is not a cycle between them.
    pruned = {m: {d for d in deps if not m.startswith(f"{d}.")} for m, deps in graph.items()}
    assert _cycle(pruned) is None, " -> ".join(_cycle(pruned) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("package", ["shared.events", "shared.eventstore", "shared.db", "shared.bus"])
def test_shared_code_imports_no_service(package: str) -> None:
    assert not {p for p in package_graph().get(package, set()) if p.startswith("services")}


@pytest.mark.parametrize(
    "module",
    [
        "services/orders/domain.py",
        "services/orders/state.py",
        "services/orders/sla_clock.py",
        "services/webhooks/signing.py",
    ],
)
def test_domain_code_imports_no_framework(module: str) -> None:
    assert not _import_roots(ROOT / module) & {"fastapi", "sqlalchemy", "httpx", "starlette"}


def _import_roots(path: Path) -> set[str]:
    """The top-level package of every module the file imports, wherever the import stands (in functions too)."""
    tree = ast.parse(path.read_text())
    return {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


@pytest.mark.parametrize("bench", sorted(path.name for path in (ROOT / "bench").glob("*.py")))
def test_benches_import_no_tests(bench: str) -> None:
    """What a bench needs lives in bench/ (or shared/, if production code needs it too), never in the test suite."""
    assert "tests" not in _import_roots(ROOT / "bench" / bench)


def test_only_the_http_edge_imports_fastapi() -> None:
    offenders = []
    for path in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("services/http/"):
            continue
        if "import fastapi" in path.read_text() or "from fastapi" in path.read_text():
            offenders.append(rel)
    assert offenders == []
