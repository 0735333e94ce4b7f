"""`tbkit dev`: the local loop. Rebuild what a save changed, rerun the golden cases it affects, report.

`DevLoop` holds the last good build of the project (the served workspace) and its golden cases. `reload(paths)`
takes a batch of changed paths (from `watch.py`, or a test): it parses the whole project again; on an error it
reports `path:line: message` and keeps the last good build; else it rebuilds, keeping the data of datasources
whose schema did not change, reloading the fixture rows of those whose schema or fixture file changed (and the
materialized targets downstream), then reruns the cases of the endpoints affected. A rebuild that changes data
is made beside the served build and swapped in whole (`DevLoop._rebuild`). `ChecksState` is the record of those
runs that `GET /v0/tbkit/checks` serves.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks import golden, targets
from ..checks.cases import CaseResult, run_case
from ..checks.golden import Case, Response
from ..engine import Engine, Workspace, ddl, parts
from ..engine.parts import Blocks
from ..errors import ProjectError, TbkitError
from ..project import fixtures
from ..project.datafiles import Datasource, Project, load_project
from ..project.layout import Layout
from ..query import Reader
from ..server import ServerConfig, Service
from ..server import app as server
from ..server.workspaces import deployments
from ..server.workspaces.deployment import Deployment
from ..server.workspaces.registry import Tenant, datafile_texts
from .watch import Batch, Watcher

DATAFILE_SUFFIXES = (".datasource", ".pipe", ".incl")
FIXTURE_SUFFIXES = fixtures.FIXTURE_SUFFIXES
# Cases run on a few threads at once (the engine answers several queries at a time, as the server does): a
# case spends most of its time in ClickHouse, so the rerun after a save takes a fraction of a serial one.
CASE_THREADS = min(4, (os.cpu_count() or 1) + 1)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class ChecksState:
    """The latest outcome of every golden case, the current build error and the last change; thread-safe.

    The dev loop writes it from its own thread; the server's handlers read `snapshot()`. `generation` grows by
    one at each completed run (a rerun of cases, or a reload that stopped at a build error), so a reader can
    tell a new state from the one it has.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._running = False
        self._started_at: str | None = None
        self._finished_at: str | None = None
        self._build_error: dict[str, Any] | None = None
        self._changed: list[str] = []
        self._results: dict[str, dict[str, Any]] = {}  # by `endpoint/case`, in the order of the cases

    def begin(self, changed: Iterable[str]) -> None:
        """A run starts, for these changed paths (relative to the project root)."""
        with self._lock:
            self._running = True
            self._started_at = _now()
            self._changed = sorted(changed)

    def finish(
        self,
        case_ids: list[str],
        results: Iterable[dict[str, Any]],
        build_error: dict[str, Any] | None = None,
    ) -> None:
        """A run ended: `results` (each `CaseResult.to_dict()`) replace those of their cases; cases no longer in
        `case_ids` (every case of the project, in order) are dropped; `build_error` is the reload's, or None."""
        with self._lock:
            merged = {**self._results, **{f"{r['endpoint']}/{r['case']}": r for r in results}}
            self._results = {case_id: merged[case_id] for case_id in case_ids if case_id in merged}
            self._build_error = build_error
            self._running = False
            self._finished_at = _now()
            self._generation += 1

    def snapshot(self) -> dict[str, Any]:
        """The state as `GET /v0/tbkit/checks` answers it (a copy: safe to serialize while runs go on)."""
        with self._lock:
            results = [dict(r, differences=list(r["differences"])) for r in self._results.values()]
            return {
                "generation": self._generation,
                "running": self._running,
                "started_at": self._started_at,
                "finished_at": self._finished_at,
                "passed": sum(r["outcome"] != "failed" for r in results),
                "failed": sum(r["outcome"] == "failed" for r in results),
                "build_error": dict(self._build_error) if self._build_error else None,
                "changed": list(self._changed),
                "results": results,
            }


# -- what a batch of changed paths touches ----------------------------------------------------------------


@dataclass
class Change:
    """A batch of changed paths, sorted by what they are."""

    paths: list[str] = field(default_factory=list)  # the relevant ones, relative to the root
    datafiles: bool = False  # a .datasource, .pipe or .incl file under the project folder
    fixtures: set[str] = field(default_factory=set)  # datasources whose fixture file changed
    case_endpoints: set[str] = field(default_factory=set)  # endpoints whose case or golden file changed

    @property
    def relevant(self) -> bool:
        """True when something in the batch can change a build or a case."""
        return bool(self.datafiles or self.fixtures or self.case_endpoints)


def _inside(path: Path, folder: Path) -> Path | None:
    """`path` relative to `folder`, or None when it is not inside it."""
    try:
        return path.relative_to(folder)
    except ValueError:
        return None


def classify(paths: Iterable[Path], layout: Layout) -> Change:
    """Sort changed paths into datafiles, fixture files (by datasource) and case or golden files (by endpoint).

    Anything else (an editor's swap file, exported `tb test` files, contracts) is left out.
    """
    project_dir, fixtures_dir = Path(os.path.abspath(layout.project_dir)), Path(os.path.abspath(layout.fixtures_dir))
    root = project_dir.parent
    change = Change()
    for raw in sorted({Path(os.path.abspath(p)) for p in paths}):
        if raw.name.startswith(".") or raw.name.endswith("~"):
            continue
        relevant = True
        if (inner := _inside(raw, project_dir)) is not None:
            if raw.suffix in DATAFILE_SUFFIXES and inner.parts[0] != "tests":
                change.datafiles = True
            elif inner.parent == Path("fixtures") and raw.suffix in FIXTURE_SUFFIXES:
                change.fixtures.add(raw.name.split(".", 1)[0])
            else:
                relevant = False
        elif (inner := _inside(raw, fixtures_dir)) is not None:
            if len(inner.parts) == 1 and raw.suffix in FIXTURE_SUFFIXES:
                change.fixtures.add(raw.name.split(".", 1)[0])
            elif len(inner.parts) == 2 and inner.parts[0] == "cases" and raw.suffix == ".yaml":
                change.case_endpoints.add(raw.stem)
            elif len(inner.parts) == 3 and inner.parts[0] == "golden" and raw.suffix == ".json":
                change.case_endpoints.add(inner.parts[1])
            else:
                relevant = False
        else:
            relevant = False
        if relevant:
            change.paths.append(os.path.relpath(raw, root))
    return change


def schema_of(datasource: Datasource) -> str:
    """A datasource's table as ClickHouse stores it (columns, engine, keys): equal schemas keep their rows."""
    return ddl.create_table("_", datasource) + ddl.create_quarantine_table("_", datasource)


@dataclass
class Plan:
    """What a reload does: datasources whose rows are reloaded from fixtures, those rebuilt downstream of them
    or of a changed materialization, and the endpoints whose cases run again."""

    reloaded: set[str]  # landing datasources appended from their fixture again
    rebuilt: set[str]  # every datasource whose rows are not copied from the previous build
    sources: set[str]  # datasources whose downstream targets are repopulated
    endpoints: set[str]
    tables_changed: bool  # a datasource or materialization datafile changed, was added or removed


def plan(old: Project, old_texts: dict[str, dict[str, str]], new: Project, change: Change) -> Plan:
    """From the previous project (with its datafiles' text as built: the files have changed since), the new
    project and a batch of changes: what to rebuild and which cases to rerun.

    A datasource keeps its rows when its schema (columns, engine, keys) did not change and its fixture file did
    not either; otherwise it is reloaded from its fixture. Materialized targets downstream of a reloaded
    datasource, or fed by a new or changed materialization, are rebuilt from their sources. An endpoint is
    affected when its datafile changed, when it reads a rebuilt datasource, or when its cases or golden files did.
    """
    new_texts = datafile_texts(new)
    schema_changed = {
        name
        for name, datasource in new.datasources.items()
        if name not in old.datasources or schema_of(old.datasources[name]) != schema_of(datasource)
    }
    reloaded = {n for n in schema_changed | change.fixtures if n in new.landing_datasources}
    changed_pipes = {n for n, text in new_texts["pipe"].items() if old_texts["pipe"].get(n) != text}
    sources = set(reloaded)
    for name, pipe in new.materializations.items():  # a new or changed one, or one into a changed target
        if name in changed_pipes or pipe.output_node.datasource in schema_changed:
            sources |= ddl.sources(new, pipe)
    rebuilt = schema_changed | reloaded
    for name in sources | schema_changed:
        rebuilt |= set(ddl.downstream(new, name))
    changed_datasources = {n for n, text in new_texts["datasource"].items() if old_texts["datasource"].get(n) != text}
    touched = rebuilt | changed_datasources
    endpoints = {
        name
        for name in new.endpoints
        if name in changed_pipes or ddl.sources(new, new.endpoints[name]) & touched or name in change.case_endpoints
    }
    materializations = {n: t for n, t in new_texts["pipe"].items() if n in new.materializations}
    old_materializations = {n: t for n, t in old_texts["pipe"].items() if n in old.materializations}
    tables_changed = new_texts["datasource"] != old_texts["datasource"] or materializations != old_materializations
    return Plan(reloaded, rebuilt, sources, endpoints, tables_changed)


# -- the loop ---------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    """One run of the loop: the cases rerun and their results, or the build error that stopped it."""

    results: list[CaseResult] = field(default_factory=list)
    endpoints: set[str] = field(default_factory=set)
    changed: list[str] = field(default_factory=list)
    build_error: dict[str, Any] | None = None
    seconds: float = 0.0  # the run itself: reload, rebuild and cases
    after_save: float | None = None  # from the first event of the save to the end of the run
    overall: tuple[int, int] | None = None  # passed and failed over every case's latest outcome

    @property
    def passed(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.results)

    def summary(self) -> str:
        """`N passed, M failed` and what ran how fast; or the build error and that the last good build stays."""
        if self.build_error:
            error = self.build_error
            where = f"{error['file']}:{error['line']}" if error["line"] else error["file"]
            return f"{where}: {error['message']}\n    keeping the last good build"
        cases = f"{len(self.results)} case{'s' * (len(self.results) != 1)}"
        endpoints = f"{len(self.endpoints)} endpoint{'s' * (len(self.endpoints) != 1)}"
        timing = f"in {self.seconds:.2f} s" if self.after_save is None else f"in {self.after_save:.2f} s after the save"
        verb = "ran" if not self.changed else "reran"
        if not self.results and self.overall:
            return f"no case affected ({self.overall[0]} passed, {self.overall[1]} failed in all) {timing}"
        return f"{self.passed} passed, {self.failed} failed: {verb} {cases} of {endpoints} {timing}"


class _WorkspaceTarget:
    """The golden cases' target: the loop's current build, whichever it is when a case runs."""

    name = "dev"

    def __init__(self, loop: DevLoop):
        self.loop = loop

    def fetch(self, case: Case) -> Response:
        return targets.answer(self.loop.reader, case)


def _build_error(error: TbkitError, root: Path) -> dict[str, Any]:
    """`{"file", "line", "message"}` of an error raised while loading or building the project."""
    path = getattr(error, "path", None)
    line = getattr(error, "line", None)
    message = error.message
    if path:
        message = message.removeprefix(f"{path}:{line}: " if line else f"{path}: ")
        path = os.path.relpath(os.path.abspath(path), root)
    return {"file": path or "", "line": line, "message": message}


class DevLoop:
    """The last good build of a project and its golden cases, rebuilt and rerun batch after batch of changes.

    `workspace` is the build to start from (built, and seeded by `seed_if_empty`); `publish(workspace)` makes
    each new build the served one. A rebuild that changes data goes into a second database, named after the
    first with `_b` (and back), so readers of the served build see it whole until `publish` swaps it; the build
    it replaced is dropped at the next rebuild, when no request can still be reading it.
    """

    def __init__(
        self,
        layout: Layout,
        workspace: Workspace,
        publish: Callable[[Workspace], None] = lambda workspace: None,
        on_result: Callable[[CaseResult], None] = lambda result: None,
        on_report: Callable[[RunReport], None] = lambda report: None,
        rel_tol: float = golden.DEFAULT_REL_TOL,
    ):
        self.layout = layout
        self.root = Path(os.path.abspath(layout.project_dir)).parent
        self.workspace = workspace
        self.base_name = workspace.name
        self.publish = publish
        self.on_result = on_result
        self.on_report = on_report
        self.rel_tol = rel_tol
        self.state = ChecksState()
        self.cases: list[Case] = []
        self._texts = datafile_texts(workspace.project)  # as built: the files change under the loop
        # The build the served one replaced, and the blocks of its parts copied so far, by table.
        self._replaced: tuple[Workspace, dict[str, set[Blocks]]] | None = None
        self._broken = False  # the last run ended in a build error
        self._target = _WorkspaceTarget(self)
        self._reader: Reader | None = None

    @property
    def project(self) -> Project:
        """The project of the last good build."""
        return self.workspace.project

    @property
    def reader(self) -> Reader:
        """Endpoint calls on the current build (a reader of its own, made again when the build changes)."""
        if self._reader is None or self._reader.workspace is not self.workspace:
            self._reader = Reader(self.workspace)
        return self._reader

    def seed_if_empty(self) -> bool:
        """Append every fixture when no landing datasource holds a row (a fresh data directory); True if it did."""
        landing = self.project.landing_datasources
        if any(self.workspace.row_count(name) for name in landing):
            return False
        fixtures.seed(self.workspace.append, fixtures.fixture_files(self.project, self.layout.fixtures_dir))
        return True

    def run_all(self) -> RunReport:
        """Run every golden case (the first run)."""
        return self._guarded(RunReport(), [], None, self._run_all)

    def _run_all(self, report: RunReport, started: float, first_event_at: float | None) -> RunReport:
        self.cases = golden.load_cases(self.layout.cases_dir, self.project)
        report.endpoints = {c.endpoint for c in self.cases}
        return self._run(report, self.cases, started, first_event_at)

    def on_batch(self, batch: Batch) -> RunReport | None:
        """`reload` for a watcher's batch, timed from its first event."""
        return self.reload(batch.paths, batch.first_event_at)

    def reload(self, paths: Iterable[Path], first_event_at: float | None = None) -> RunReport | None:
        """Rebuild what the changed paths touch and rerun the affected cases; None when nothing relevant changed.

        A project, case or golden file that does not load, or a build that fails, is reported with its file and
        line and leaves the last good build served.
        """
        change = classify(paths, self.layout)
        if not change.relevant:
            return None
        return self._guarded(RunReport(changed=change.paths), change.paths, first_event_at, self._reload, change)

    def _reload(self, report: RunReport, started: float, first_event_at: float | None, change: Change) -> RunReport:
        reparse = change.datafiles or self._broken  # after a build error, the datafiles may still be broken
        project = load_project(self.layout.project_dir) if reparse else self.project
        cases = golden.load_cases(self.layout.cases_dir, project)
        endpoints = set(change.case_endpoints)
        if reparse or change.fixtures:
            steps = plan(self.project, self._texts, project, change)
            self._rebuild(project, steps)
            endpoints = steps.endpoints
        self.cases = cases
        report.endpoints = endpoints
        selected = [case for case in cases if case.endpoint in endpoints]
        return self._run(report, selected, started, first_event_at)

    def _guarded(
        self, report: RunReport, changed: list[str], first_event_at: float | None, step: Callable, *args: Any
    ) -> RunReport:
        """Run a step of the loop; a user's mistake (or a file gone mid-save) ends it as a build error, and
        anything else leaves the state not running before it propagates."""
        started = time.perf_counter()
        self.state.begin(changed)
        try:
            return step(report, started, first_event_at, *args)
        except (TbkitError, OSError) as e:
            error = e  # an OSError: a file removed or unreadable between the event and the read
            if isinstance(e, OSError):
                error = ProjectError(f"cannot read it: {e.strerror}", path=e.filename and str(e.filename))
            return self._failed(report, error, started, first_event_at)
        except BaseException:
            self.state.finish([c.id for c in self.cases], [], {"file": "", "line": None, "message": "internal error"})
            raise

    def _rebuild(self, project: Project, steps: Plan) -> None:
        """Build `project` and publish it: in place when no datasource's rows change, else beside the served one."""
        engine = self.workspace.engine
        if not steps.rebuilt:  # endpoints only, or datafile text outside the tables' schemas
            workspace = Workspace(engine, self.workspace.name, project, self.workspace.query_timeout)
            if steps.tables_changed:  # a materialization's query, in place; a removed one's view dropped
                workspace.build(drop_stages=False)  # appends in flight have their stages
        else:
            self._carry_appends()  # the build about to be dropped may still hold late appends
            self._replaced = None
            name = self.base_name + "_b" if self.workspace.name == self.base_name else self.base_name
            workspace = Workspace(engine, name, project, self.workspace.query_timeout)
            workspace.drop()  # the build before the served one: no request reads it any more
            copied: dict[str, set[Blocks]] = {}
            try:
                workspace.build()
                for datasource in project.datasources:
                    if datasource not in steps.rebuilt:
                        track = datasource in project.landing_datasources
                        copied |= parts.attach_rows(workspace, self.workspace, datasource, track=track)
                for source in sorted(steps.sources):
                    workspace.rebuild_downstream(source)
                files = fixtures.fixture_files(project, self.layout.fixtures_dir)
                fixtures.seed(workspace.append, [f for f in files if f.datasource in steps.reloaded])
            except BaseException:
                workspace.drop()
                parts.resume_merges(self.workspace, copied)  # the served build goes on as it was
                raise
            self._replaced = (self.workspace, copied)
        self.workspace = workspace
        self._texts = datafile_texts(project)
        self.publish(workspace)
        self._carry_appends()

    def _carry_appends(self) -> None:
        """Copy into the served build the rows appended to the build it replaced after its data was copied.

        Appends go to whichever build is served when they start: those made to the old build during a rebuild
        are copied here once it is published, and those still in flight then, at the next rebuild or at close.
        """
        if self._replaced is None:
            return
        replaced, copied = self._replaced
        for table, copied_parts in copied.items():
            copied_parts |= parts.copy_parts(self.workspace, replaced, table, copied_parts)

    def _run(
        self, report: RunReport, cases: list[Case], started: float, first_event_at: float | None = None
    ) -> RunReport:
        with ThreadPoolExecutor(CASE_THREADS, thread_name_prefix="tbkit-dev") as pool:
            run = functools.partial(
                run_case, target=self._target, golden_dir=self.layout.golden_dir, update=False, rel_tol=self.rel_tol
            )
            for result in pool.map(run, cases):  # in the order of the cases
                report.results.append(result)
                if not result.ok:
                    self.on_result(result)
        self.state.finish([c.id for c in self.cases], [r.to_dict() for r in report.results])
        self._broken = False
        snapshot = self.state.snapshot()
        report.overall = (snapshot["passed"], snapshot["failed"])
        return self._done(report, started, first_event_at)

    def _failed(
        self, report: RunReport, error: TbkitError, started: float, first_event_at: float | None = None
    ) -> RunReport:
        report.build_error = _build_error(error, self.root)
        self._broken = True
        self.state.finish([c.id for c in self.cases], [], report.build_error)
        return self._done(report, started, first_event_at)

    def _done(self, report: RunReport, started: float, first_event_at: float | None) -> RunReport:
        ended = time.perf_counter()
        report.seconds = ended - started
        if first_event_at is not None:
            report.after_save = time.monotonic() - first_event_at
        self.on_report(report)
        return report

    def close(self) -> None:
        """Drop the build before the served one, and give the served one the first database's name again, so
        a data directory serves it at the next start (call once nothing reads it)."""
        self._carry_appends()
        self._replaced = None
        other = self.base_name + "_b" if self.workspace.name == self.base_name else self.base_name
        Workspace(self.workspace.engine, other, self.project).drop()
        if self.workspace.name != self.base_name:
            self.workspace = self.workspace.rename(self.base_name)
            self.publish(self.workspace)


# -- `tbkit dev` and `tbkit check --watch` ------------------------------------------------------------------


def _go_live(tenant: Tenant, workspace: Workspace) -> None:
    """Serve a new build in the main workspace as a new live deployment (as `tb dev`'s builds are), saying what
    changed, as a deployment through the API does."""
    with tenant.lock:
        changes = deployments.diff(tenant.texts, workspace.project)
        tenant.make_live(workspace, Deployment(tenant.next_deployment_id(), changes=changes))


def attach(
    service: Service,
    layout: Layout,
    on_result: Callable[[CaseResult], None] = lambda result: None,
    on_report: Callable[[RunReport], None] = lambda report: None,
    rel_tol: float = golden.DEFAULT_REL_TOL,
) -> DevLoop:
    """A loop over a service's main workspace, which it seeds when empty and whose builds it serves; the service's
    `checks` is then the loop's state (GET /v0/tbkit/checks)."""
    tenant = service.main
    loop = DevLoop(layout, tenant.workspace, lambda ws: _go_live(tenant, ws), on_result, on_report, rel_tol)
    loop.seed_if_empty()
    service.checks = loop.state
    return loop


def serve(
    config: ServerConfig,
    layout: Layout,
    on_ready: Callable[[Service, int], None],
    on_result: Callable[[CaseResult], None],
    on_report: Callable[[RunReport], None],
    rel_tol: float = golden.DEFAULT_REL_TOL,
) -> None:
    """Serve the project as `tbkit serve` does, seeded with the fixtures when its data directory is empty; run
    every golden case, then rebuild and rerun the affected cases on each change, until SIGINT or SIGTERM."""
    running: list[tuple[DevLoop, Watcher]] = []

    def ready(service: Service, port: int) -> None:
        loop = attach(service, layout, on_result, on_report, rel_tol)
        on_ready(service, port)
        watcher = Watcher([layout.project_dir, layout.fixtures_dir], loop.on_batch, on_start=loop.run_all)
        running.append((loop, watcher.start()))

    def stop(service: Service) -> None:
        for loop, watcher in running:
            watcher.stop()
            loop.close()

    server.serve(config, on_ready=ready, on_stop=stop)


def watch_check(
    layout: Layout,
    on_result: Callable[[CaseResult], None],
    on_report: Callable[[RunReport], None],
    rel_tol: float = golden.DEFAULT_REL_TOL,
    until: threading.Event | None = None,
    engine: Engine | None = None,
) -> None:
    """`tbkit check --watch`: the loop on a fresh embedded workspace seeded with the fixtures (in `engine`, else a
    temporary one), with no server; runs every case, then reruns the affected ones on each change until Ctrl+C (or
    `until` is set)."""
    project = load_project(layout.project_dir)
    with Engine.or_temporary(engine) as engine:
        workspace = Workspace(engine, f"dev_check_{uuid.uuid4().hex[:8]}", project)
        workspace.build()
        loop = DevLoop(layout, workspace, on_result=on_result, on_report=on_report, rel_tol=rel_tol)
        stop = until or threading.Event()
        try:
            loop.seed_if_empty()
            watcher = Watcher([layout.project_dir, layout.fixtures_dir], loop.on_batch, on_start=loop.run_all)
            with watcher, _stopped_by_signals(stop):  # the watcher stops after the run in progress
                stop.wait()
        finally:
            loop.close()  # one build left, under the first name
            loop.workspace.drop()


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl+C) and SIGTERM set `stop` while in the block (from the main thread; elsewhere, nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
