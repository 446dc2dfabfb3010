"""No import cycles among the ``dml_pipelines.core`` modules (issue #28; the
layering of docs/architecture.md): the imports of every module are read with
``ast``, at module level and inside functions alike (an import hidden in a
function is still a dependency), ``if TYPE_CHECKING:`` blocks excepted (never
executed); the graph must be acyclic."""

from __future__ import annotations

import ast
from pathlib import Path

import dml_pipelines.core

ROOT = Path(dml_pipelines.core.__file__).parent
PACKAGE = "dml_pipelines.core"

#: edges allowed for now, as (importer, imported); each must name its issue
#: (none: issue #28 cut the last ones)
KNOWN: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Absolute names ``tree`` imports (``from a import b``: ``a.b`` and ``a``)."""
    out: set[str] = set()
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and is_type_checking(node)
        for child in node.body
        for n in ast.walk(child)
    }
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name if is_package else name.rsplit(".", 1)[0]
                up = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{up}.{base}" if base else up
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def import_graph() -> dict[str, set[str]]:
    """``module -> the core modules it imports`` (an imported name that is no
    module resolves to its module)."""
    files = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for target in imported(tree, name, path.name == "__init__.py"):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph`` or ``None`` (depth-first)."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_core_has_no_import_cycles():
    graph = import_graph()
    for importer, target in KNOWN:
        graph[importer].discard(target)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_function_level_imports():
    src = "def f():\n    from dml_pipelines.core import ops\n"
    tree = ast.parse(src)
    assert "dml_pipelines.core.ops" in imported(tree, "dml_pipelines.core.x", False)
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert (
        "dml_pipelines.core.models.backbones"
        in import_graph()["dml_pipelines.core.models.embedder"]
    )


def test_components_do_not_import_methods():
    """A component (model part, loss) declares and checks its own options; the
    method configs import them, never the other way round."""
    graph = import_graph()
    wrong = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if a.startswith(("dml_pipelines.core.models", "dml_pipelines.core.losses"))
        for b in targets
        if b.startswith("dml_pipelines.core.methods")
    )
    assert not wrong, "components import methods: " + "; ".join(wrong)
