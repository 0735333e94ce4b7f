"""`tbkit diff`: what changed in the project between a git revision and the working tree.

The base revision's project and fixtures are extracted with `git archive` into a temporary folder, both
projects are loaded and built into two workspaces of the embedded engine, and the report lists: endpoints
added or removed, each endpoint's contract changes (parameters and output columns, from `contracts.compare`),
datasource schema changes (a removed or retyped column, a changed engine or sorting key are destructive, as
`tb deploy` calls them: they need `--allow-destructive-operations`), materializations added, removed or
changed, and the golden files that differ. A breaking contract change or a destructive datasource change makes
the report `breaking`.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import Engine, Workspace
from ..errors import TbkitError
from ..project.datafiles import Datasource, Pipe, Project, load_project
from ..query import Reader
from . import contracts
from .contracts import Change

# Engine arguments whose change recreates the table (the data is dropped): `tb deploy` calls them destructive.
_DESTRUCTIVE_ARGS = ("sorting_key", "partition_key", "primary_key", "ver", "sign", "version", "is_deleted")


@dataclass(frozen=True)
class SchemaChange:
    """One difference in a datasource's definition; `destructive` when deploying it drops data."""

    datasource: str
    what: str
    destructive: bool

    def __str__(self) -> str:
        return f"datasource {self.datasource}: {self.what} ({'destructive' if self.destructive else 'compatible'})"


@dataclass(frozen=True)
class MaterializationChange:
    """A materialization added, removed, or whose SQL or target datasource changed."""

    name: str
    what: str

    def __str__(self) -> str:
        return f"materialization {self.name}: {self.what}"


@dataclass
class DiffReport:
    """Every difference between the project at `base` and the working tree."""

    base: str
    endpoints_added: list[str] = field(default_factory=list)
    endpoints_removed: list[str] = field(default_factory=list)
    contract_changes: list[Change] = field(default_factory=list)
    datasource_changes: list[SchemaChange] = field(default_factory=list)
    materialization_changes: list[MaterializationChange] = field(default_factory=list)
    golden_changed: list[str] = field(default_factory=list)

    @property
    def breaking(self) -> bool:
        """True on a removed endpoint, a breaking contract change or a destructive datasource change."""
        return (
            bool(self.endpoints_removed)
            or any(c.breaking for c in self.contract_changes)
            or any(c.destructive for c in self.datasource_changes)
        )

    @property
    def empty(self) -> bool:
        """True when nothing differs."""
        return not (
            self.endpoints_added
            or self.endpoints_removed
            or self.contract_changes
            or self.datasource_changes
            or self.materialization_changes
            or self.golden_changed
        )

    def _sections(self) -> list[tuple[str, list[tuple[str, str, str]]]]:
        """(title, [(resource, change, impact)]) per kind of change, for both renderings."""
        endpoints = [(name, "endpoint added", "compatible") for name in self.endpoints_added]
        endpoints += [(name, "endpoint removed", "breaking") for name in self.endpoints_removed]
        endpoints += [(c.endpoint, c.what, "breaking" if c.breaking else "compatible") for c in self.contract_changes]
        datasources = [
            (c.datasource, c.what, "destructive" if c.destructive else "compatible") for c in self.datasource_changes
        ]
        materializations = [(c.name, c.what, "") for c in self.materialization_changes]
        golden = [(path, "changed", "") for path in self.golden_changed]
        return [
            ("Endpoints", endpoints),
            ("Datasources", datasources),
            ("Materializations", materializations),
            ("Golden files", golden),
        ]

    def summary(self) -> str:
        """One line: how many changes, and whether any breaks consumers or drops data."""
        if self.empty:
            return f"No changes between {self.base} and the working tree"
        count = sum(len(rows) for _, rows in self._sections())
        verdict = "BREAKING" if self.breaking else "no breaking change"
        return f"{count} change(s) between {self.base} and the working tree: {verdict}"

    def text(self) -> str:
        """The report as text: a section per kind of change, one line per change."""
        if self.empty:
            return self.summary() + "\n"
        lines = []
        for title, rows in self._sections():
            if not rows:
                continue
            lines.append(f"{title}:")
            for resource, what, impact in rows:
                mark = "✗" if impact in ("breaking", "destructive") else "~"
                lines.append(f"  {mark} {resource}: {what}" + (f" ({impact})" if impact else ""))
        lines.append("")
        lines.append(self.summary())
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        """The report for a pull request: a summary table, then the changes of each kind."""
        lines = [f"## Project changes since `{self.base}`", ""]
        if self.empty:
            return "\n".join([*lines, f"No changes between `{self.base}` and the working tree.", ""])
        verdict = (
            "**Breaking**: consumers or data are affected" if self.breaking else "No breaking or destructive change"
        )
        lines += [verdict, "", "| Kind | Changes | Breaking or destructive |", "|---|---:|---:|"]
        for title, rows in self._sections():
            bad = sum(impact in ("breaking", "destructive") for _, _, impact in rows)
            lines.append(f"| {title} | {len(rows)} | {bad} |")
        for title, rows in self._sections():
            if not rows:
                continue
            lines += ["", f"### {title}", ""]
            for resource, what, impact in rows:
                flag = f" **{impact}**" if impact in ("breaking", "destructive") else (f" {impact}" if impact else "")
                lines.append(f"- `{resource}`: {_escape(what)}{flag and ' —' + flag}")
        return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# -- git ---------------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=not binary, check=False)
    except FileNotFoundError:
        raise TbkitError("git not found: tbkit diff needs git on the PATH") from None


def repo_root(folder: Path) -> Path:
    """The top folder of the git repository holding `folder`, or TbkitError."""
    result = _git(folder, "rev-parse", "--show-toplevel")
    if result.returncode != 0:
        raise TbkitError(f"{folder} is not inside a git repository: tbkit diff compares git revisions")
    return Path(result.stdout.strip()).resolve()


def _in_repo(repo: Path, folder: Path) -> str:
    try:
        return Path(folder).resolve().relative_to(repo).as_posix()
    except ValueError:
        raise TbkitError(f"{folder} is not inside the git repository {repo}") from None


def _extract(repo: Path, base: str, paths: list[str], into: Path) -> None:
    """`git archive <base> <paths> | tar -x -C into` (symlinks kept as links, relative between the folders)."""
    existing = [p for p in paths if _git(repo, "cat-file", "-e", f"{base}:{p}").returncode == 0]
    if paths[0] not in existing:
        raise TbkitError(f"revision {base} has no {paths[0]}/: nothing to compare the project with")
    archive = _git(repo, "archive", "--format=tar", base, *existing, binary=True)
    if archive.returncode != 0:
        raise TbkitError(f"git archive {base} failed: {archive.stderr.decode(errors='replace').strip()}")
    archive_path = into / "base.tar"
    archive_path.write_bytes(archive.stdout)
    with tarfile.open(archive_path) as tar:
        tar.extractall(into, filter="tar")
    archive_path.unlink()


def _golden_changed(repo: Path, base: str, golden: str) -> list[str]:
    """Files under the golden folder that differ between `base` and the working tree (new untracked ones too)."""
    changed = _git(repo, "diff", "--name-only", base, "--", golden)
    untracked = _git(repo, "ls-files", "--others", "--exclude-standard", "--", golden)
    names = changed.stdout.splitlines() + untracked.stdout.splitlines()
    return sorted({name for name in names if name})


# -- comparisons -------------------------------------------------------------------------------------------


def compare_datasources(old: dict[str, Datasource], new: dict[str, Datasource]) -> list[SchemaChange]:
    """Datasources added or removed, columns added, removed or retyped, engine and its arguments changed."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(SchemaChange(name, "datasource removed", True))
            continue
        if name not in old:
            changes.append(SchemaChange(name, "new datasource", False))
            continue
        before = {c.name: c for c in old[name].columns}
        after = {c.name: c for c in new[name].columns}
        for column in old[name].columns:
            if column.name not in after:
                changes.append(SchemaChange(name, f"column {column.name} removed (was {column.full_type})", True))
            elif after[column.name].full_type != column.full_type:
                changed = f"column {column.name} {column.full_type} -> {after[column.name].full_type}"
                changes.append(SchemaChange(name, changed, True))
            else:
                a, b = column, after[column.name]
                if a.default != b.default:
                    changes.append(SchemaChange(name, f"column {a.name} default {a.default} -> {b.default}", False))
                if a.jsonpath != b.jsonpath:
                    changes.append(SchemaChange(name, f"column {a.name} jsonpath {a.jsonpath} -> {b.jsonpath}", False))
        for column in new[name].columns:
            if column.name not in before:
                changes.append(SchemaChange(name, f"new column {column.name} {column.full_type}", False))
        if old[name].engine != new[name].engine:
            changes.append(SchemaChange(name, f"engine {old[name].engine} -> {new[name].engine}", True))
        args_before, args_after = old[name].engine_args, new[name].engine_args
        for arg in sorted(set(args_before) | set(args_after)):
            a, b = args_before.get(arg), args_after.get(arg)
            if a != b:
                label = f"ENGINE_{arg.upper()}"
                changes.append(
                    SchemaChange(name, f"{label} {a or '(none)'} -> {b or '(none)'}", arg in _DESTRUCTIVE_ARGS)
                )
    return changes


def _sql(pipe: Pipe) -> list[tuple[str, str]]:
    return [(node.name, " ".join(node.sql.split())) for node in pipe.nodes]


def compare_materializations(old: dict[str, Pipe], new: dict[str, Pipe]) -> list[MaterializationChange]:
    """Materializations added, removed, or whose nodes' SQL (whitespace aside) or target changed."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(MaterializationChange(name, f"removed (wrote {old[name].output_node.datasource})"))
        elif name not in old:
            changes.append(MaterializationChange(name, f"new, writes {new[name].output_node.datasource}"))
        else:
            a, b = old[name].output_node.datasource, new[name].output_node.datasource
            if a != b:
                changes.append(MaterializationChange(name, f"target {a} -> {b}"))
            if _sql(old[name]) != _sql(new[name]):
                changes.append(MaterializationChange(name, "SQL changed"))
    return changes


# -- the diff ----------------------------------------------------------------------------------------------


def _load(side: str, folder: Path, shown_as: str) -> Project:
    try:
        return load_project(folder)
    except TbkitError as e:
        message = str(e).replace(str(folder), shown_as)
        raise TbkitError(f"{side}: {message}") from None


def _derive(engine: Engine, side: str, name: str, project: Project, shown_as: str) -> dict[str, contracts.Contract]:
    workspace = Workspace(engine, name, project)
    try:
        workspace.build()
        return contracts.derive(project, Reader(workspace).endpoint_columns)
    except TbkitError as e:
        message = str(e).replace(str(project.root), shown_as)
        raise TbkitError(f"{side}: {message}") from None
    finally:
        workspace.drop()


def diff(
    repo: str | Path | None,
    project_dir: str | Path,
    fixtures_dir: str | Path,
    base: str,
    engine: Engine | None = None,
) -> DiffReport:
    """Compare the project (and golden files) at git revision `base` with the working tree.

    `repo` is the repository's top folder (None: found from `project_dir`). Raises TbkitError on an unknown
    revision and on a datafile that does not load or build, naming the side (base or working tree) and file. Both
    sides are built in `engine` (a temporary one when None).
    """
    project_dir, fixtures_dir = Path(project_dir), Path(fixtures_dir)
    repo = Path(repo).resolve() if repo else repo_root(project_dir.resolve() if project_dir.is_dir() else Path.cwd())
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").returncode != 0:
        raise TbkitError(f"unknown git revision '{base}' in {repo} (fetch it first, e.g. git fetch origin)")
    project_rel, fixtures_rel = _in_repo(repo, project_dir), _in_repo(repo, fixtures_dir)
    head = _load("working tree", project_dir, project_rel)
    with tempfile.TemporaryDirectory(prefix="tbkit-diff-") as tmp:
        _extract(repo, base, [project_rel, fixtures_rel], Path(tmp))
        old = _load(f"base {base}", Path(tmp) / project_rel, f"{base}:{project_rel}")
        with Engine.or_temporary(engine) as engine:
            old_contracts = _derive(engine, f"base {base}", f"diff_base_{os.getpid()}", old, f"{base}:{project_rel}")
            new_contracts = _derive(engine, "working tree", f"diff_head_{os.getpid()}", head, project_rel)
    report = DiffReport(base)
    report.endpoints_added = sorted(set(new_contracts) - set(old_contracts))
    report.endpoints_removed = sorted(set(old_contracts) - set(new_contracts))
    shared = sorted(set(old_contracts) & set(new_contracts))
    report.contract_changes = contracts.compare(
        {n: old_contracts[n] for n in shared}, {n: new_contracts[n] for n in shared}
    )
    report.datasource_changes = compare_datasources(old.datasources, head.datasources)
    report.materialization_changes = compare_materializations(old.materializations, head.materializations)
    report.golden_changed = _golden_changed(repo, base, f"{fixtures_rel}/golden")
    return report
