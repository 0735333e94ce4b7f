"""The code's structure holds: layers in one order, no import cycle, small modules, excepts where they belong."""

from __future__ import annotations

import ast
from pathlib import Path

from . import ROOT

PACKAGE = ROOT / "tools" / "tbkit"
# The package's layers, lowest first: a module may import from its own layer and those below, never from above.
# Within a layer, packages are independent of each other (the engine does not know `tb`; the server does not know
# the checks). `tbkit` itself (its version) is below every layer.
LAYERS = (
    ("errors",),  # the one error hierarchy
    ("sizes", "project"),  # sizes of memory and disk | datafiles loaded and validated, layout, fixtures, config
    ("engine", "remote"),  # chDB in-process and a project's tables in it | a real Tinybird: `tb`, HTTP, test files
    ("query",),  # endpoint calls and the Query API, rendered above the engine
    ("datagen",),  # generated data: the project's generator, cached, loaded; request parameters for it
    ("checks", "server"),  # cases, contracts, assertions, audits, coverage, budgets... | `tbkit serve`
    ("bench", "dev"),  # the benchmark harness (it starts a server) | the dev loop (checks over a served build)
    ("console",),  # reports rendered for a terminal
    ("cli",),  # the click commands
)
MAX_TOP_MODULES = 12
MAX_LINES = 700


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """Import nodes under `if TYPE_CHECKING:` (they run for type checkers only)."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            found |= {n for child in node.body for n in ast.walk(child)}
    return found


def imports_of(path: Path, modules: set[str], with_type_checking: bool = True) -> set[str]:
    """The tbkit modules (and packages) a module imports, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skipped = set() if with_type_checking else _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
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


def _graph(with_type_checking: bool) -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths), with_type_checking) for name, path in paths.items()}


def unit(module: str) -> str:
    """The top-level module or package of tbkit a module belongs to (`tbkit` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tbkit"


def layer(name: str) -> int:
    if name == "tbkit":
        return -1
    return next(i for i, names in enumerate(LAYERS) if name in names)


def test_every_top_level_module_and_package_has_a_layer():
    units = {unit(module_name(p)) for p in PACKAGE.rglob("*.py")} - {"tbkit"}
    placed = {name for names in LAYERS for name in names}
    assert units - placed == set(), "give each a layer in LAYERS"
    assert placed - units <= {"console"}  # (a layer the package may grow into)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a higher layer, or from a sibling package of the same layer, one line each."""
    found = []
    for module, imported in graph.items():
        for other in imported:
            mine, theirs = unit(module), unit(other)
            if mine != theirs and theirs != "tbkit" and layer(theirs) >= layer(mine):
                found.append(
                    f"{module} ({mine}, layer {layer(mine)}) imports {other} ({theirs}, layer {layer(theirs)})"
                )
    return sorted(found)


def test_imports_flow_down_the_layers():
    assert upward_imports(_graph(with_type_checking=True)) == []


def test_an_import_from_a_higher_layer_or_a_sibling_is_caught():
    """The layer check can fail: an engine module importing the server, or `tb`'s runner, is reported."""
    graph = {"tbkit.engine.probe": {"tbkit.server.service", "tbkit.remote.tb", "tbkit.project.datafiles"}}
    assert upward_imports(graph) == [
        "tbkit.engine.probe (engine, layer 2) imports tbkit.remote.tb (remote, layer 2)",
        "tbkit.engine.probe (engine, layer 2) imports tbkit.server.service (server, layer 5)",
    ]


def test_no_import_cycle_in_tbkit():
    """No cycle among the imports that run (those under `if TYPE_CHECKING:` name types only)."""
    graph = _graph(with_type_checking=False)
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


def test_the_top_level_is_small_and_no_module_is_long():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    long = {
        str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


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
