"""The shape of the code, checked: no import cycles between Berth's packages, and the
container engine reached only through the runtime (app.runtime)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

APP = Path(__file__).resolve().parent.parent / "app"


def _package_graph() -> dict[str, set[str]]:
    """Top-level package (or module) of app -> those it imports, imports inside functions
    and under TYPE_CHECKING included (grimp reads every import statement)."""
    graph = grimp.build_graph("app")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if module == "app":
            continue
        source = module.split(".")[1]
        for imported in graph.find_modules_directly_imported_by(module):
            target = imported.split(".")[1] if imported != "app" else "app"
            if target not in (source, "app"):
                edges.setdefault(source, set()).add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_that():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_packages():
    cycles = _cycles(_package_graph())
    assert cycles == [], f"packages that import each other: {cycles}"


def _imports_docker(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(
            a.name == "docker" or a.name.startswith("docker.") for a in node.names
        ):
            return True
        module = node.module if isinstance(node, ast.ImportFrom) and not node.level else None
        if module and (module == "docker" or module.startswith("docker.")):
            return True
    return False


def test_only_the_docker_runtime_imports_docker_py():
    outside = [
        str(path.relative_to(APP.parent))
        for path in APP.rglob("*.py")
        if _imports_docker(path) and APP / "runtime" / "docker" not in path.parents
    ]
    assert outside == []


def test_the_devcontainer_engine_and_the_runtime_import_no_web_code():
    graph = grimp.build_graph("app")
    for package in ("app.devcontainer", "app.runtime"):
        for module in graph.find_descendants(package) | {package}:
            for imported in graph.find_modules_directly_imported_by(module):
                assert not imported.startswith(("app.web", "app.api", "app.http")), (
                    f"{module} imports {imported}"
                )
    external = grimp.build_graph("app", include_external_packages=True)
    for package in ("app.devcontainer", "app.runtime"):
        for module in external.find_descendants(package) | {package}:
            assert "flask" not in external.find_modules_directly_imported_by(module), module


def test_other_packages_reach_the_docker_runtime_only_through_app_runtime():
    graph = grimp.build_graph("app")
    docker_runtime = graph.find_descendants("app.runtime.docker") | {"app.runtime.docker"}
    outside = sorted(
        (importer, imported)
        for imported in docker_runtime
        for importer in graph.find_modules_that_directly_import(imported)
        if not importer.startswith("app.runtime")
    )
    assert outside == []
