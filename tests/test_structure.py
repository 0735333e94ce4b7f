"""The code's structure holds: layers in one order, no import cycle, small modules, excepts where they belong."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tbkit.project.datafiles import Project, load_project

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
    assert placed - units == set(), "a layer of LAYERS names nothing of the package"


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


# Words of our project that are also the vocabulary of what tbkit speaks or runs on, so tbkit may use them.
ALLOWED_WORDS = {
    "name": "every resource's name in Tinybird's datafiles and API (`?name=` of the Events API)",
    "events": "Tinybird's Events API (/v0/events), and watchdog's file-system events",
    "event_type": "watchdog's FileSystemEvent.event_type",
    "event_types": "the Content-Types the Events API reads as NDJSON (server/bodies.py: EVENT_TYPES)",
    "first_event_at": "when the first file-system event of a save came (the dev loop's watchdog events)",
    "location": "the browser's window.location (the web UI's script)",
    "timestamp": "a Unix timestamp (a JWT's expiration); the web UI orders latest rows by a `timestamp` column",
    "updated_at": "the Pipes API's `updated_at` field, as Tinybird answers it",
}
# Fragments no word of tbkit may contain (case-insensitive): our domain, whatever the identifier around it.
PROJECT_FRAGMENTS = ("customer", "cltv")
SCANNED = ("*.py", "*.js", "*.html", "*.css")


def project_names(project: Project) -> set[str]:
    """Every datasource, pipe, node, token and column name of a project, lowercased."""
    names = set(project.datasources) | set(project.pipes) | {token.name for token in project.tokens}
    names |= {node.name for pipe in project.pipes.values() for node in pipe.nodes}
    names |= {column.name for ds in project.datasources.values() for column in ds.columns}
    return {name.lower() for name in names}


def project_words_in(text: str, names: set[str]) -> set[str]:
    """The words of `text` that name something of the project: one of its names as a whole word, or any word
    holding a fragment of PROJECT_FRAGMENTS (`PER_CUSTOMER`, `customerId`), but the allowed words.

    A word is an identifier (`customer_events`, `cltv2`); camelCase humps are split first, so that a fragment is
    found where a word starts (`perCustomer`), not across words (`SQLTemplateCustomError` is Custom + Error).
    """
    found = set()
    for word in re.findall(r"[A-Za-z0-9_]+", text):
        humps = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", word).lower()
        lowered = word.lower()
        if lowered in ALLOWED_WORDS:
            continue
        if lowered in names or any(fragment in humps for fragment in PROJECT_FRAGMENTS):
            found.add(word)
    return found


@pytest.fixture(scope="module")
def our_names() -> set[str]:
    return project_names(load_project(ROOT / "tinybird"))


def test_the_package_names_nothing_of_the_project(our_names):
    """tbkit is any Tinybird team's: no datasource, pipe, node, token or column of ours in its code, docstrings,
    help texts, web UI or examples (use neutral ones: `top_pages`, `page_views`)."""
    assert {"customers", "customer_events", "cltv_summary", "customer_id", "customer_api_read"} <= our_names
    found = []
    for pattern in SCANNED:
        for path in sorted(PACKAGE.rglob(pattern)):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if words := project_words_in(line, our_names):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {', '.join(sorted(words))}: {line.strip()}")
    import click

    from tbkit.cli import main

    for name, command in [("", main), *sorted(main.commands.items())]:  # help as rendered, defaults included
        with click.Context(command, info_name=f"tbkit {name}".strip()) as ctx:
            if words := project_words_in(command.get_help(ctx), our_names):
                found.append(f"{ctx.info_name} --help: {', '.join(sorted(words))}")
    assert not found, "tbkit names our project (reword, or allow a word of tbkit's own vocabulary):\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ('"""Example: tbkit check --endpoint customer_cltv --case seed_outlier"""', {"customer_cltv"}),
        ("PER_CUSTOMER = ('a', 'b')  # per-customer endpoints", {"PER_CUSTOMER", "customer"}),
        ("def draw(customerId: str, avgCltv: float) -> str: ...", {"customerId", "avgCltv"}),
        ('help="A custom number of customers instead of a named --scale."', {"customers"}),
        ("url = f'/v0/pipes/{name}.json'  # window.location, /v0/events", set()),
        ("except sql_template.SQLTemplateCustomError as e:", set()),
    ],
)
def test_a_planted_name_of_the_project_is_caught(our_names, line, found):
    assert project_words_in(line, our_names) == found


def readme_layout(package: str) -> dict[str, bool]:
    """The entries the README's Layout picture shows under `package` (`tools/tbkit/`): path -> whether it lists
    the folder's own entries (a folder described in a sentence does not)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, bool] = {}
    stack: list[str] = []
    inside = False
    for line in block.splitlines():
        if not line.strip() or not line.lstrip()[0].isalnum():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        if depth == 0:
            inside = name == package
            continue
        if not inside or depth >= 10:  # a description's next line, in the descriptions' column
            continue
        stack = stack[: depth - 1] + [name.rstrip("/")]
        path = "/".join(stack)
        if len(stack) > 1:
            entries["/".join(stack[:-1])] = True
        entries.setdefault(path, False)
    return entries


def test_the_readme_layout_picture_matches_the_tree():
    shown = readme_layout("tools/tbkit/")
    actual = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*")
        if "__pycache__" not in path.parts
        and path.name not in ("__init__.py", "__main__.py")
        and (path.suffix == ".py" or path.is_dir())
    }
    missing = {
        path for path in actual if not any(path == s or path.startswith(s + "/") and not shown[s] for s in shown)
    }
    assert missing == set(), "modules the README's Layout does not show"
    assert {path for path in shown if path not in actual} == set(), "entries of the README's Layout not in the tree"
