"""Data-quality assertions: SQL queries over the datasources that must return no rows.

Like Tinybird Classic's data-quality tests, an assertion is a name, a description and a query that selects the
rows breaking a rule (a user without an ID, an order of an unknown product); any row it returns fails the
assertion, and the first few are shown.

They live in one project-wide file, `fixtures/assertions.yaml`, rather than in each endpoint's case file: they
are rules about datasources, which several endpoints read and no endpoint owns, so filing them under one
endpoint would hide them and run them only with that endpoint's cases.

The SQL follows the Query API's rules (unqualified datasource names, read-only, no FORMAT clause), so the same
assertion runs on the embedded engine (`Workspace.sql`) and on any Tinybird API (`/v0/sql`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ProjectError, TbkitError

FILE_NAME = "assertions.yaml"  # in the fixtures folder
SHOWN_ROWS = 5

# Runs one Query API query (unqualified tables) and returns its JSON response (`meta`, `data`, `rows`).
RunSql = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Assertion:
    """One rule: `sql` selects the rows that break it, so it must return none."""

    name: str
    sql: str
    description: str = ""
    path: Path = Path("fixtures/assertions.yaml")


@dataclass
class AssertionResult:
    """What one assertion found: the offending rows (the first `SHOWN_ROWS`), or the error its query raised."""

    assertion: Assertion
    offending: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the query ran and returned no row."""
        return self.error is None and self.offending == 0

    def headline(self) -> str:
        """`assertion <name>`, then `: N offending rows` or the query's error when it failed."""
        text = f"assertion {self.assertion.name}"
        if self.error is not None:
            return f"{text}: query failed: {self.error}"
        if self.offending:
            return f"{text}: {self.offending} offending row{'s' * (self.offending != 1)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "name": self.assertion.name,
            "description": self.assertion.description,
            "file": str(self.assertion.path),
            "ok": self.ok,
            "offending": self.offending,
            "rows": self.rows,
            "error": self.error,
            "ms": round(self.seconds * 1000, 2),
        }


def load(path: Path) -> list[Assertion]:
    """The assertions of `path` (`assertions:` a list of `name`, `description`, `sql`); none if it is absent."""
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ProjectError(f"{path}: not valid YAML: {e}") from None
    entries = data.get("assertions") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ProjectError(f"{path}: expected a list under 'assertions:'")
    found: list[Assertion] = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not entry.get("name") or not str(entry.get("sql") or "").strip():
            raise ProjectError(f"{path}: assertion #{index} needs a 'name' and an 'sql'")
        name = str(entry["name"])
        if any(a.name == name for a in found):
            raise ProjectError(f"{path}: assertion '{name}' is declared twice")
        sql = str(entry["sql"]).strip().rstrip(";").strip()
        found.append(Assertion(name, sql, str(entry.get("description") or "").strip(), path))
    return found


def run_one(assertion: Assertion, run_sql: RunSql) -> AssertionResult:
    """Run one assertion; a query error fails it with the error's message rather than stopping the run."""
    started = time.perf_counter()
    try:
        answer = run_sql(assertion.sql)
    except TbkitError as e:
        return AssertionResult(assertion, error=str(e), seconds=time.perf_counter() - started)
    rows = answer.get("data") or []
    offending = int(answer.get("rows", len(rows)))
    return AssertionResult(assertion, offending, rows[:SHOWN_ROWS], seconds=time.perf_counter() - started)


def run(assertions: list[Assertion], run_sql: RunSql) -> list[AssertionResult]:
    """Run every assertion in order."""
    return [run_one(a, run_sql) for a in assertions]
