"""objlib's module graph, from the source: every import, function-local ones included.

    python scripts/import_graph.py [ROOT]

Prints, for each module (a subpackage counts as one), the objlib modules it imports — ``*``
when only or also inside a function — then the external libraries that matter for the
layering (huey, rich, stamina, google), then any cycle (a strongly connected group). The
graph in docs/architecture.md comes from here; ``lint-imports`` enforces the layers.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

WATCHED = ("huey", "rich", "stamina", "google")


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted((root / "objlib").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def unit(module: str) -> str:
    """objlib.gemini.client -> objlib.gemini: a subpackage is one node."""
    return ".".join(module.split(".")[:2])


def imported(node: ast.AST, package: str, known: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    submodules = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
    # ``from objlib import tasks`` imports objlib.tasks (the package itself only if a name in
    # the list is not a module)
    return submodules + ([module] if len(submodules) < len(node.names) else [])


def graph(root: Path):
    known = modules(root)
    edges: dict[str, set[str]] = {}
    local: set[tuple[str, str]] = set()
    external: dict[str, set[str]] = {}

    def visit(node: ast.AST, name: str, package: str, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            for target in imported(child, package, known):
                if target.startswith("objlib"):
                    a, b = unit(name), unit(target)
                    if a != b:
                        edges.setdefault(a, set()).add(b)
                        if inside:
                            local.add((a, b))
                elif target.split(".")[0] in WATCHED:
                    external.setdefault(unit(name), set()).add(target.split(".")[0])
            visit(child, name, package, inside)

    for name, (path, is_package) in known.items():
        package = name if is_package else name.rsplit(".", 1)[0]
        visit(ast.parse(path.read_text()), name, package, False)
    return edges, local, external


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in list(edges):
        if v not in index:
            connect(v)
    return found


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    edges, local, external = graph(root)
    short = lambda m: m.removeprefix("objlib.")  # noqa: E731
    for a in sorted(edges):
        outs = [short(b) + ("*" if (a, b) in local else "") for b in sorted(edges[a])]
        libs = f"  [{', '.join(sorted(external[a]))}]" if a in external else ""
        print(f"{short(a):11} -> {' '.join(outs)}{libs}")
    found = cycles(edges)
    print("cycles:", "; ".join(" -> ".join(map(short, c)) for c in found) if found else "none")


if __name__ == "__main__":
    main()
