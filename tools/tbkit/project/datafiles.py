"""Load a Tinybird Forward project: datasources, materializations and endpoints, with their parameters.

The parsing itself is Tinybird's (see `tinybird_adapter`); this module turns the parsed datafiles into a
small typed model and checks what the parser does not: that every node reads something that exists,
that materializations write to a datasource of the project, and that endpoint parameters agree.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, ProjectError, SqlParseError, TemplateError
from . import tinybird_adapter

# `tb` reads datafiles at most two levels deep (`tinybird/x.pipe`, `tinybird/endpoints/x.pipe`).
_MAX_DEPTH = 2
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _text(description: str | None) -> str:
    """A datafile DESCRIPTION as one clean paragraph per blank-line-separated block."""
    if not description:
        return ""
    lines = textwrap.dedent("    " + description.strip()).splitlines()
    return "\n".join(line.strip() for line in lines).strip()


def _line_of(path: Path, pattern: str) -> int | None:
    """The 1-based line of the first line of `path` matching `pattern`, to point errors at it."""
    regex = re.compile(pattern)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if regex.search(line):
            return number
    return None


@dataclass(frozen=True)
class Column:
    """A datasource column: its ClickHouse type, JSON path and DEFAULT expression."""

    name: str
    type: str
    jsonpath: str | None = None
    default: str | None = None
    nullable: bool = False
    codec: str | None = None

    @property
    def full_type(self) -> str:
        """The ClickHouse type including Nullable()."""
        return f"Nullable({self.type})" if self.nullable else self.type

    @property
    def required(self) -> bool:
        """True when an appended row must carry a value: no DEFAULT and not Nullable."""
        return self.default is None and not self.nullable


@dataclass(frozen=True)
class Token:
    """A scoped token declared in a datafile: `TOKEN name READ` or `TOKEN name APPEND`."""

    name: str
    scope: str
    resource: str


@dataclass
class Datasource:
    """A `.datasource` file."""

    name: str
    path: Path
    description: str
    columns: list[Column]
    engine: str
    engine_args: dict[str, str]
    indexes: list[Any] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)

    def column(self, name: str) -> Column:
        """The column called `name`."""
        for column in self.columns:
            if column.name == name:
                return column
        raise NotFoundError(f"datasource '{self.name}' has no column '{name}'")


@dataclass
class Parameter:
    """An endpoint parameter, merged over every node that uses it."""

    name: str
    type: str = "String"
    default: Any = None
    description: str = ""
    required: bool = False
    example: Any = None
    enum: list[Any] | None = None


@dataclass
class Node:
    """One NODE of a pipe."""

    name: str
    sql: str
    description: str = ""
    type: str = "standard"
    datasource: str | None = None
    line: int | None = None
    reads: list[str] = field(default_factory=list)

    @property
    def is_template(self) -> bool:
        """True when the SQL starts with `%` and goes through the template engine."""
        return self.sql.lstrip().startswith("%")

    @property
    def template(self) -> str:
        """The SQL without the leading `%`."""
        return self.sql.lstrip()[1:] if self.is_template else self.sql


@dataclass
class Pipe:
    """A `.pipe` file: an endpoint, a materialization or a plain pipe."""

    name: str
    path: Path
    description: str
    nodes: list[Node]
    tokens: list[Token] = field(default_factory=list)
    parameters: dict[str, Parameter] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """`endpoint`, `materialized`, `copy` or `pipe`, from the node types."""
        for node in self.nodes:
            if node.type in ("endpoint", "materialized", "copy", "sink"):
                return node.type
        return "pipe"

    @property
    def output_node(self) -> Node:
        """The node that the endpoint serves or the materialization writes from."""
        for node in self.nodes:
            if node.type in ("endpoint", "materialized", "copy", "sink"):
                return node
        return self.nodes[-1]

    def node(self, name: str) -> Node:
        """The node called `name`."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise NotFoundError(f"pipe '{self.name}' has no node '{name}'")


@dataclass
class Project:
    """Every resource of a Tinybird Forward project folder."""

    root: Path
    datasources: dict[str, Datasource]
    pipes: dict[str, Pipe]

    @cached_property
    def reads_secrets(self) -> bool:
        """True when a template calls tb_secret() or tb_var(): only then does rendering need the secrets."""
        templates = (node.template for pipe in self.pipes.values() for node in pipe.nodes if node.is_template)
        return any("tb_secret" in text or "tb_var" in text for text in templates)

    @cached_property
    def endpoints(self) -> dict[str, Pipe]:
        """Pipes published as API endpoints, by name (a project is not changed once loaded)."""
        return {name: pipe for name, pipe in self.pipes.items() if pipe.kind == "endpoint"}

    @property
    def materializations(self) -> dict[str, Pipe]:
        """Pipes that materialize into a datasource, by name."""
        return {name: pipe for name, pipe in self.pipes.items() if pipe.kind == "materialized"}

    @property
    def landing_datasources(self) -> dict[str, Datasource]:
        """Datasources that receive appended data (not the target of a materialization)."""
        targets = {pipe.output_node.datasource for pipe in self.materializations.values()}
        return {name: ds for name, ds in self.datasources.items() if name not in targets}

    def datasource(self, name: str) -> Datasource:
        """The datasource called `name`, or NotFoundError listing the known ones."""
        if name not in self.datasources:
            known = ", ".join(sorted(self.datasources)) or "none"
            raise NotFoundError(f"Data Source '{name}' not found (datasources: {known})")
        return self.datasources[name]

    def endpoint(self, name: str) -> Pipe:
        """The endpoint pipe called `name`, or NotFoundError listing the known ones."""
        endpoints = self.endpoints
        if name not in endpoints:
            known = ", ".join(sorted(endpoints)) or "none"
            raise NotFoundError(f"The pipe '{name}' does not exist (endpoints: {known})")
        return endpoints[name]

    @property
    def tokens(self) -> list[Token]:
        """Every scoped token declared in the project's datafiles."""
        found: list[Token] = []
        for resource in [*self.datasources.values(), *self.pipes.values()]:
            found.extend(resource.tokens)
        return found


# Datafile settings that make a datasource read from a connector (Kafka, S3, GCS, DynamoDB).
CONNECTOR_SETTINGS = ("kafka_connection_name", "import_connection_name")


def _refuse_connector(node: dict, path: Path) -> None:
    """ProjectError for a datasource fed by a connector: the embedded engine has none to run."""
    for setting in CONNECTOR_SETTINGS:
        if node.get(setting):
            raise ProjectError(
                f"{setting.upper()} {node[setting]}: this datasource reads from a connector, and the embedded "
                "server (tbkit serve) has no Kafka, S3, GCS or DynamoDB connectors. Use Tinybird Cloud "
                "(tb --cloud) or the Tinybird Local container (tb local start) for connectors.",
                path=str(path),
                line=_line_of(path, rf"^{setting.upper()}\b"),
            )


def _load_datasource(path: Path) -> Datasource:
    datafile = tinybird_adapter.parse_datafile(str(path), "datasource")
    node = datafile.nodes[0]
    name = path.stem
    columns = [
        Column(
            name=c["name"],
            type=c["type"],
            jsonpath=c.get("jsonpath"),
            default=(c["default_value"].split(" ", 1)[1] if c.get("default_value") else None),
            nullable=bool(c.get("nullable")),
            codec=c.get("codec"),
        )
        for c in node.get("columns", [])
    ]
    if not columns:
        raise ProjectError("the datasource has no SCHEMA", path=str(path))
    _refuse_connector(node, path)
    engine = node.get("engine", {}) or {}
    tokens = [Token(t["token_name"], t["permission"].upper(), name) for t in datafile.tokens]
    return Datasource(
        name=name,
        path=path,
        description=_text(datafile.description or node.get("description")),
        columns=columns,
        engine=engine.get("type", "MergeTree"),
        engine_args=dict(engine.get("args", [])),
        indexes=list(node.get("indexes", []) or []),
        tokens=tokens,
    )


def _merge_parameters(pipe_name: str, nodes: list[Node], path: Path) -> dict[str, Parameter]:
    merged: dict[str, Parameter] = {}
    for node in nodes:
        if not node.is_template:
            continue
        try:
            declared = tinybird_adapter.template_parameters(node.template, node.name)
        except TemplateError as e:  # the parser accepted the file, so this is a template it cannot type
            raise ProjectError(f"node '{node.name}': {e}", path=str(path), line=node.line) from None
        for var in declared:
            name = var["name"]
            if var.get("used_in") == "function_call" and name in merged:
                continue
            param = merged.setdefault(name, Parameter(name=name))
            if var.get("used_in") != "function_call" and var.get("type"):
                param.type = var["type"]
            for attribute in ("default", "description", "example", "enum"):
                if var.get(attribute) is not None and getattr(param, attribute) in (None, ""):
                    setattr(param, attribute, var[attribute])
            param.required = param.required or bool(var.get("required"))
    return merged


def _load_pipe(path: Path) -> Pipe:
    datafile = tinybird_adapter.parse_datafile(str(path), "pipe")
    name = path.stem
    nodes = []
    for raw in datafile.nodes:
        nodes.append(
            Node(
                name=raw["name"],
                sql=raw.get("sql", "").strip(),
                description=_text(raw.get("description")),
                type=(raw.get("type") or "standard").lower(),
                datasource=raw.get("datasource"),
                line=_line_of(path, rf"^NODE\s+{re.escape(raw['name'])}\s*$"),
            )
        )
    tokens = [Token(t["token_name"], t["permission"].upper(), name) for t in datafile.tokens]
    pipe = Pipe(
        name=name,
        path=path,
        description=_text(datafile.description),
        nodes=nodes,
        tokens=tokens,
        parameters=_merge_parameters(name, nodes, path),
    )
    return pipe


def _tables_read_by(node: Node, path: Path) -> list[str]:
    sql = node.template
    if node.is_template:
        try:
            sql = tinybird_adapter.render_template_for_check(sql, node.name)
        except TemplateError as e:
            raise ProjectError(f"node '{node.name}': {e}", path=str(path), line=node.line) from None
    try:
        return tinybird_adapter.used_tables(sql)
    except SqlParseError as e:
        raise ProjectError(f"node '{node.name}': invalid SQL: {e}", path=str(path), line=node.line) from None


def _validate(project: Project) -> None:
    for resource in [*project.datasources.values(), *project.pipes.values()]:
        if not _NAME.match(resource.name):
            raise ProjectError(
                f"'{resource.name}' is not a valid resource name (letters, digits and _)",
                path=str(resource.path),
            )
    for pipe in project.pipes.values():
        _validate_pipe(project, pipe)


def _validate_pipe(project: Project, pipe: Pipe) -> None:
    outputs = [n for n in pipe.nodes if n.type in ("endpoint", "materialized", "copy", "sink")]
    if len(outputs) > 1:
        raise ProjectError(
            f"pipe has {len(outputs)} output nodes ({', '.join(n.name for n in outputs)}); only one is allowed",
            path=str(pipe.path),
            line=outputs[1].line,
        )
    seen: list[str] = []
    for node in pipe.nodes:
        node.reads = _tables_read_by(node, pipe.path)
        for table in node.reads:
            if table in seen or table in project.datasources:
                continue
            if table in project.endpoints and table != pipe.name:
                continue
            hint = ""
            if table in (n.name for n in pipe.nodes):
                hint = " (a node can only read nodes defined above it)"
            raise ProjectError(
                f"node '{node.name}' reads '{table}', which is neither a datasource nor an earlier node{hint}",
                path=str(pipe.path),
                line=node.line,
            )
        seen.append(node.name)
    output = pipe.output_node
    if output.type == "materialized":
        if not output.datasource:
            raise ProjectError(
                f"materialized node '{output.name}' has no DATASOURCE", path=str(pipe.path), line=output.line
            )
        if output.datasource not in project.datasources:
            raise ProjectError(
                f"materialized node '{output.name}' writes to unknown datasource '{output.datasource}'",
                path=str(pipe.path),
                line=_line_of(pipe.path, r"^DATASOURCE\s"),
            )
        if output.is_template:
            raise ProjectError(
                f"materialized node '{output.name}' cannot be a template (no parameters at insert time)",
                path=str(pipe.path),
                line=output.line,
            )


def load_project(root: str | Path) -> Project:
    """Parse every datafile under `root` and validate references; raise ProjectError naming the file."""
    root = Path(root)
    if not root.is_dir():
        raise ProjectError("project folder not found", path=str(root))
    datasources: dict[str, Datasource] = {}
    pipes: dict[str, Pipe] = {}
    candidates = [path for level in range(_MAX_DEPTH) for path in root.glob("*/" * level + "*")]
    for path in sorted(candidates):
        if path.suffix not in (".datasource", ".pipe") or "vendor" in path.relative_to(root).parts:
            continue
        if path.stem in datasources or path.stem in pipes:
            other = (datasources.get(path.stem) or pipes[path.stem]).path
            raise ProjectError(f"'{path.stem}' is defined twice: here and in {other}", path=str(path))
        if path.suffix == ".datasource":
            datasources[path.stem] = _load_datasource(path)
        else:
            pipes[path.stem] = _load_pipe(path)
    if not datasources and not pipes:
        raise ProjectError("no .datasource or .pipe files found", path=str(root))
    project = Project(root=root, datasources=datasources, pipes=pipes)
    _validate(project)
    return project
