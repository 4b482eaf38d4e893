"""Layers point down only (DESIGN.md): every import inside `deffiller` -- at module level or inside a function --
goes to a package of the same or a lower rank, and no chain of imports comes back to where it started."""
from __future__ import annotations

import ast
from pathlib import Path

import deffiller

PACKAGE = Path(deffiller.__file__).resolve().parent

# DESIGN.md: data -> models + pipelines + training -> baselines -> evaluation + detection -> reporting, with the
# notebooks' code (experiments), the demo page and the command line on top. Within the middle row, sampling
# (pipelines) builds on the networks (models), and training saves the pipelines it trains.
RANKS = {
    "": 0, "errors": 0, "config": 0, "utils": 0,  # `deffiller` itself (its __init__), shared helpers
    "data": 1,
    "models": 2,
    "pipelines": 3,
    "training": 4,
    "baselines": 5,
    "evaluation": 6, "detection": 6,
    "reporting": 7,
    "experiments": 8,
    "demo": 9,
    "cli": 10, "__main__": 10,
}


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package at `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_edges(root: Path) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of a module of the package at `root`, function-level and
    TYPE_CHECKING ones included; `from pkg import name` counts as importing `pkg.name` where that is a module."""
    modules = module_names(root)
    edges = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules and "." in target:  # `import a.b.c` names module a.b.c
                    target = target.rpartition(".")[0]
                if target in modules and target != name:
                    edges.append((name, target, node.lineno))
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(edges, ranks=RANKS) -> list[str]:
    return [f"{a} (line {line}, layer {layer(a)!r}) imports {b} (layer {layer(b)!r}, higher)"
            for a, b, line in edges if ranks[layer(b)] > ranks[layer(a)]]


def import_cycles(edges) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), i.e. each set of modules importing each other
    through some chain."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_package_of_deffiller_has_a_rank():
    assert {layer(name) for name in module_names(PACKAGE)} == set(RANKS)


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(import_edges(PACKAGE)) == []


def test_no_import_cycle():
    assert import_cycles(import_edges(PACKAGE)) == []


def test_the_checks_find_an_upward_import_and_a_cycle_hidden_in_a_function(tmp_path):
    root = tmp_path / "deffiller"
    files = {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/net.py": "def train():\n    from deffiller.training import loop\n",
        "training/__init__.py": "",
        "training/loop.py": "from ..models.net import train\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    edges = import_edges(root)
    assert sorted(edges) == [("deffiller.models.net", "deffiller.training.loop", 2),
                             ("deffiller.training.loop", "deffiller.models.net", 1)]
    assert upward_imports(edges) == ["deffiller.models.net (line 2, layer 'models') imports deffiller.training.loop "
                                     "(layer 'training', higher)"]
    assert import_cycles(edges) == [["deffiller.models.net", "deffiller.training.loop"]]
