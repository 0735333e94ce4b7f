"""Endpoint cases and their golden files, and comparing a response with its golden file as data.

A case file `cases/<endpoint>.yaml` lists cases (a name and query parameters); the expected response of
each is `golden/<endpoint>/<case>.json`: status, meta and data, or status and error. Responses are
compared as data: column types come from `meta`, floats match within a relative tolerance, 64-bit
integers match whether sent as numbers or strings, row order matters, and `statistics` is ignored.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import NotFoundError, ProjectError
from ..project.datafiles import Project

DEFAULT_REL_TOL = 1e-9
_FLOAT_TYPES = ("Float32", "Float64", "Decimal")
_INT_PREFIXES = ("Int", "UInt")


@dataclass(frozen=True)
class Case:
    """One request to an endpoint with its expected response on disk."""

    endpoint: str
    name: str
    params: dict[str, str]
    error_phrase: str | None = None
    description: str = ""
    source: Path | None = None

    @property
    def id(self) -> str:
        """`endpoint/case`, as printed and as filtered on."""
        return f"{self.endpoint}/{self.name}"

    def golden_path(self, golden_dir: Path) -> Path:
        """Where this case's golden file lives."""
        return golden_dir / self.endpoint / f"{self.name}.json"


@dataclass
class Response:
    """An endpoint response reduced to what golden files hold."""

    status: int
    meta: list[dict[str, str]] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def from_json(cls, status: int, body: dict[str, Any]) -> Response:
        """From a Tinybird JSON response body (or error body)."""
        if status >= 400:
            return cls(status=status, error=str(body.get("error", body)))
        meta = [{"name": m["name"], "type": m["type"]} for m in body.get("meta", [])]
        return cls(status=status, meta=meta, data=list(body.get("data", [])))

    def to_golden(self, case: Case) -> dict[str, Any]:
        """The golden file content for `case`, keys in a stable order."""
        content: dict[str, Any] = {"endpoint": case.endpoint, "case": case.name, "params": case.params}
        content["status"] = self.status
        if self.error is not None:
            content["error"] = self.error
        else:
            content["meta"] = self.meta
            content["data"] = self.data
        return content


def _string_params(params: Any, where: str) -> dict[str, str]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProjectError(f"{where}: 'params' must be a mapping of parameter names to values")
    return {str(k): ("" if v is None else str(v)) for k, v in params.items()}


def load_cases(cases_dir: Path, project: Project) -> list[Case]:
    """Every case of every `<endpoint>.yaml` in `cases_dir`, validated against the project."""
    if not cases_dir.is_dir():
        raise NotFoundError(f"cases folder not found: {cases_dir}")
    cases: list[Case] = []
    for path in sorted(cases_dir.glob("*.yaml")):
        cases.extend(_load_case_file(path, project))
    return cases


def _load_case_file(path: Path, project: Project) -> list[Case]:
    endpoint = path.stem
    if endpoint not in project.endpoints:
        known = ", ".join(sorted(project.endpoints))
        raise ProjectError(f"no endpoint '{endpoint}' for this case file (endpoints: {known})", path=str(path))
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ProjectError(f"invalid YAML: {e}", path=str(path), line=line + 1 if line is not None else None) from None
    if not isinstance(content, dict) or not isinstance(content.get("cases", []), list):
        raise ProjectError("expected a mapping with a 'cases' list (and optional 'defaults')", path=str(path))
    defaults = _string_params(content.get("defaults"), str(path))
    declared = project.endpoints[endpoint].parameters
    cases, seen = [], set()
    for index, raw in enumerate(content.get("cases", []), start=1):
        where = f"{path}: case {index}"
        if not isinstance(raw, dict) or not raw.get("name"):
            raise ProjectError(f"{where} needs a 'name'")
        name = str(raw["name"])
        if name in seen:
            raise ProjectError(f"case '{name}' is defined twice", path=str(path))
        seen.add(name)
        params = {**defaults, **_string_params(raw.get("params"), where)}
        for key in raw.get("unset", []) or []:
            params.pop(str(key), None)
        unknown = [p for p in params if p not in declared]
        if unknown and not raw.get("allow_unknown_params"):
            raise ProjectError(
                f"case '{name}' passes {', '.join(unknown)}, which endpoint '{endpoint}' does not declare "
                f"(parameters: {', '.join(declared)})",
                path=str(path),
            )
        phrase = raw.get("error")
        cases.append(
            Case(endpoint, name, params, str(phrase) if phrase else None, str(raw.get("description", "")), path)
        )
    return cases


def select_cases(cases: list[Case], endpoint: str | None = None, case: str | None = None) -> list[Case]:
    """Filter cases by endpoint and case name; an unknown name is a NotFoundError."""
    selected = cases
    if endpoint:
        selected = [c for c in selected if c.endpoint == endpoint]
        if not selected:
            known = ", ".join(sorted({c.endpoint for c in cases}))
            raise NotFoundError(f"no cases for endpoint '{endpoint}' (endpoints with cases: {known})")
    if case:
        matching = [c for c in selected if c.name == case or c.id == case]
        if not matching:
            close = difflib.get_close_matches(case, [c.name for c in selected], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise NotFoundError(f"no case named '{case}'{hint}")
        selected = matching
    return selected


def read_golden(case: Case, golden_dir: Path) -> Response | None:
    """The golden response of a case, or None when it has none yet."""
    path = case.golden_path(golden_dir)
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ProjectError(f"invalid JSON: {e.msg}", path=str(path), line=e.lineno) from None
    if content.get("error") is not None:
        return Response(status=int(content["status"]), error=content["error"])
    return Response(status=int(content["status"]), meta=content.get("meta", []), data=content.get("data", []))


def golden_text(case: Case, response: Response) -> str:
    """The golden file text: pretty-printed JSON with a trailing newline."""
    return json.dumps(response.to_golden(case), indent=2, ensure_ascii=False) + "\n"


def write_golden(case: Case, response: Response, golden_dir: Path) -> bool:
    """Write a case's golden file; True when its content changed."""
    path = case.golden_path(golden_dir)
    text = golden_text(case, response)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


# -- comparison -------------------------------------------------------------------------------------------


def _is_float(column_type: str) -> bool:
    return any(t in column_type for t in _FLOAT_TYPES)


def _is_int(column_type: str) -> bool:
    inner = column_type.replace("Nullable(", "").replace("LowCardinality(", "")
    return inner.startswith(_INT_PREFIXES)


def values_equal(expected: Any, actual: Any, column_type: str, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Compare two cell values as the column's type says."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if _is_int(column_type):
        try:
            return int(expected) == int(actual)
        except (TypeError, ValueError):
            return expected == actual
    if _is_float(column_type):
        try:
            a, b = float(expected), float(actual)
        except (TypeError, ValueError):
            return expected == actual
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=rel_tol)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            values_equal(e, a, column_type.removeprefix("Array(")[:-1], rel_tol)
            for e, a in zip(expected, actual, strict=True)
        )
    return expected == actual


def _row_key(row: dict[str, Any], meta: list[dict[str, str]]) -> Any:
    """A row's identity for pairing changed rows: its first column (an ID, a date, a name, ...)."""
    return row.get(meta[0]["name"]) if meta else None


def _row_changes(
    expected: dict[str, Any], actual: dict[str, Any], types: dict[str, str], rel_tol: float
) -> list[tuple[str, Any, Any]]:
    return [
        (name, expected.get(name), actual.get(name))
        for name, column_type in types.items()
        if not values_equal(expected.get(name), actual.get(name), column_type, rel_tol)
    ]


def _fmt(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _fmt_row(row: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in row.items()) + "}"


def compare(expected: Response, actual: Response, case: Case, rel_tol: float = DEFAULT_REL_TOL) -> list[str]:
    """Differences between a golden response and an actual one, as readable lines; [] when equal."""
    if expected.status != actual.status:
        lines = [f"status: expected {expected.status}, got {actual.status}"]
        if actual.error:
            lines.append(f"error: {actual.error}")
        return lines
    if expected.error is not None or actual.error is not None:
        phrase = case.error_phrase
        if phrase and phrase.lower() not in (actual.error or "").lower():
            return [f"error message does not contain {phrase!r}: {actual.error!r}"]
        return []
    lines = _schema_changes(expected.meta, actual.meta)
    types = {m["name"]: m["type"] for m in expected.meta}
    for m in actual.meta:
        types.setdefault(m["name"], m["type"])
    lines.extend(_data_changes(expected, actual, types, rel_tol))
    return lines


def _schema_changes(expected: list[dict[str, str]], actual: list[dict[str, str]]) -> list[str]:
    old = {m["name"]: m["type"] for m in expected}
    new = {m["name"]: m["type"] for m in actual}
    lines = [f"schema: column '{n}' removed (was {t})" for n, t in old.items() if n not in new]
    lines += [f"schema: column '{n}' added ({t})" for n, t in new.items() if n not in old]
    lines += [f"schema: column '{n}' retyped {old[n]} -> {new[n]}" for n in old if n in new and old[n] != new[n]]
    if not lines and list(old) != list(new):
        lines.append(f"schema: columns reordered: {', '.join(old)} -> {', '.join(new)}")
    return lines


def _data_changes(expected: Response, actual: Response, types: dict[str, str], rel_tol: float) -> list[str]:
    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return not _row_changes(a, b, types, rel_tol)

    old, new = expected.data, actual.data
    if len(old) == len(new) and all(same(a, b) for a, b in zip(old, new, strict=True)):
        return []
    lines = [f"rows: expected {len(old)}, got {len(new)}"] if len(old) != len(new) else []
    matcher = difflib.SequenceMatcher(a=[_fmt_row(r) for r in old], b=[_fmt_row(r) for r in new], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        lines.extend(_block_changes(old[i1:i2], new[j1:j2], i1, j1, expected.meta, types, rel_tol))
    return lines or ["rows differ only in float digits within tolerance (no change)"]


def _block_changes(
    old: list[dict[str, Any]],
    new: list[dict[str, Any]],
    old_start: int,
    new_start: int,
    meta: list[dict[str, str]],
    types: dict[str, str],
    rel_tol: float,
) -> Iterable[str]:
    """Pair rows of a differing block by key (or position) and describe them."""
    unmatched_new = list(range(len(new)))
    for i, row in enumerate(old):
        key = _row_key(row, meta)
        j = next((j for j in unmatched_new if _row_key(new[j], meta) == key), None)
        if j is None and len(old) == len(new) and i in unmatched_new:
            j = i
        if j is None:
            yield f"- row {old_start + i + 1} removed: {_fmt_row(row)}"
            continue
        unmatched_new.remove(j)
        changes = _row_changes(row, new[j], types, rel_tol)
        moved = f" (now row {new_start + j + 1})" if old_start + i != new_start + j else ""
        if not changes:
            yield f"~ row {old_start + i + 1} {meta[0]['name'] if meta else ''}={_fmt(key)} moved{moved}"
            continue
        details = "; ".join(f"{name}: {_fmt(a)} -> {_fmt(b)}" for name, a, b in changes)
        label = f"{meta[0]['name']}={_fmt(key)}" if meta else ""
        yield f"~ row {old_start + i + 1} {label}{moved} changed: {details}"
    for j in unmatched_new:
        yield f"+ row {new_start + j + 1} added: {_fmt_row(new[j])}"
