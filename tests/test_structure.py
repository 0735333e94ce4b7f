"""The code's structure holds: no import cycle in tbkit, library failures caught only where they belong."""

from __future__ import annotations

import ast
from pathlib import Path

from . import ROOT

PACKAGE = ROOT / "tools" / "tbkit"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The tbkit modules (and packages) a module imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            # `from package import module` imports the module; `from module import name`, the module
            candidates = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def test_no_import_cycle_in_tbkit():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imports_of(path, set(paths)) for name, path in paths.items()}
    cycles = []

    def visit(name: str, stack: list[str], done: set[str]) -> None:
        for imported in sorted(graph[name]):
            if imported in stack:
                cycles.append(stack[stack.index(imported) :] + [imported])
            elif imported not in done:
                done.add(imported)
                visit(imported, [*stack, imported], done)

    for name in graph:
        visit(name, [name], {name})
    assert len(graph) > 30  # every module was read
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_broad_excepts_only_in_the_adapter_or_at_a_boundary_with_a_reason():
    """`except Exception` outside the adapter must re-raise (cleanup) or say why on its line."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "tinybird_adapter.py":
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            broad = isinstance(node, ast.ExceptHandler) and (
                node.type is None
                or (isinstance(node.type, ast.Name) and node.type.id in ("Exception", "BaseException"))
            )
            if not broad:
                continue
            reraises = any(isinstance(n, ast.Raise) and n.exc is None for n in ast.walk(node))
            if not (reraises or "#" in lines[node.lineno - 1]):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not offenders, "broad except without a reason or a re-raise:\n" + "\n".join(offenders)
