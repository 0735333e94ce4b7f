"""The Analyze API's guess of a datasource schema from a sample of NDJSON or CSV (`POST /v0/analyze`).

Like Tinybird's: NDJSON objects are flattened into one column per JSON path (`$.a.b` becomes `a_b`, arrays
`$.a[:]` become `Array(T)`), CSV columns are named by the header when there is one (else `column_00`, ...).
Each column gets the narrowest type every sampled value fits (Int16/Int32/Int64, Float32/Float64, Date,
DateTime, DateTime64, Bool, String), `Nullable(...)` when a value is null or missing in some rows, and the
share of rows carrying it (`present_pct`, 1 when all do). A sample ending in a cut line (tb sends the first
MiB of a file) has that line ignored.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from ..errors import ParameterError

MAX_SAMPLE_ROWS = 10_000
PREVIEW_ROWS = 10
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:?\d{2})?$")
_DATETIME64 = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}\.\d{1,9}(Z|[+-]\d{2}:?\d{2})?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_NAME = re.compile(r"[^A-Za-z0-9_]+")
# Types in order of width: a column takes the widest of its values' types within one family.
_INTEGERS = ("Int16", "Int32", "Int64")
_FLOATS = ("Float32", "Float64")
_TIMES = ("Date", "DateTime", "DateTime64")


def _integer_type(value: int) -> str:
    if -(2**15) <= value < 2**15:
        return "Int16"
    if -(2**31) <= value < 2**31:
        return "Int32"
    if -(2**63) <= value < 2**63:
        return "Int64"
    return "Float64"


def _float_type(value: float) -> str:
    return "Float32" if abs(value) < 3.4e38 else "Float64"


def _text_type(value: str) -> str:
    """The type of a value given as text (CSV fields, JSON strings)."""
    text = value.strip()
    if _DATE.match(text):
        return "Date"
    if _DATETIME.match(text):
        return "DateTime"
    if _DATETIME64.match(text):
        return "DateTime64"
    return "String"


def _csv_type(value: str) -> str:
    text = value.strip()
    if _INTEGER.match(text):
        return _integer_type(int(text))
    if _FLOAT.match(text):
        return _float_type(float(text))
    if text.lower() in ("true", "false"):
        return "Bool"
    return _text_type(text)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return _integer_type(value)
    if isinstance(value, float):
        return _float_type(value)
    if isinstance(value, str):
        return _text_type(value)
    return "String"


def _merge(a: str | None, b: str) -> str:
    """The narrowest type holding values of types a and b."""
    if a is None or a == b:
        return b
    for family in (_INTEGERS, _FLOATS, _TIMES):
        if a in family and b in family:
            return max(a, b, key=family.index)
    numbers = _INTEGERS + _FLOATS
    if a in numbers and b in numbers:
        return "Float64" if "Float64" in (a, b) or "Int64" in (a, b) else "Float32"
    return "String"


class _Column:
    """What the sample says of one column: its type, how many rows carry it, whether any is null."""

    def __init__(self, name: str, path: str | None):
        self.name = name
        self.path = path
        self.type: str | None = None
        self.present = 0
        self.null = False

    def see(self, value_type: str | None) -> None:
        """One row's value: its type, or None for null."""
        self.present += 1
        if value_type is None:
            self.null = True
        else:
            self.type = _merge(self.type, value_type)

    def recommended(self, rows: int) -> str:
        base = self.type or "String"
        nullable = self.null or self.present < rows
        if nullable and not base.startswith("Array("):
            return f"Nullable({base})"
        return base

    def describe(self, rows: int) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "recommended_type": self.recommended(rows)}
        if self.path is not None:
            column["path"] = self.path
        share = round(self.present / rows, 2) if rows else 0
        column["present_pct"] = 1 if self.present == rows else share
        return column

    def schema(self, rows: int) -> str:
        text = f"{self.name} {self.recommended(rows)}"
        return text + (f" `json:{self.path}`" if self.path is not None else "")


def column_name(text: str) -> str:
    """A datasource column name from a JSON key or CSV header (letters, digits and _; not starting with a digit)."""
    name = _NAME.sub("_", text.strip()).strip("_") or "column"
    return f"_{name}" if name[0].isdigit() else name


def _path_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key) else "['" + key.replace("'", "\\'") + "']"


def _flatten(value: dict[str, Any], path: str, prefix: str, out: dict[tuple[str, str], Any]) -> None:
    for key, item in value.items():
        item_path = f"{path}.{_path_key(key)}"
        name = f"{prefix}_{column_name(key)}" if prefix else column_name(key)
        if isinstance(item, dict) and item:
            _flatten(item, item_path, name, out)
        elif isinstance(item, list):
            out[(name, item_path + "[:]")] = item
        else:
            out[(name, item_path)] = item


def _array_type(values: list[Any]) -> str | None:
    element: str | None = None
    for item in values:
        if item is None:
            continue
        element = _merge(element, "String" if isinstance(item, dict | list) else _json_type(item))
    return f"Array({element or 'String'})"


def _ndjson_rows(data: bytes) -> list[dict[str, Any]]:
    lines = data.decode("utf-8", "replace").splitlines()
    rows = []
    for number, line in enumerate(lines[: MAX_SAMPLE_ROWS + 1]):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1 and rows:
                break  # a sample cut in the middle of its last line
            raise ParameterError(f"Line {number + 1} of the sample is not valid JSON: send NDJSON or CSV") from None
        if not isinstance(row, dict):
            raise ParameterError(f"Line {number + 1} of the sample is not a JSON object: send NDJSON or CSV")
        rows.append(row)
    return rows[:MAX_SAMPLE_ROWS]


def analyze_ndjson(data: bytes) -> dict[str, Any]:
    """Tinybird's analysis of an NDJSON sample: columns with JSON paths, schema and preview."""
    rows = _ndjson_rows(data)
    if not rows:
        raise ParameterError("The sample holds no JSON object to analyze")
    columns: dict[tuple[str, str], _Column] = {}
    flattened = []
    for row in rows:
        flat: dict[tuple[str, str], Any] = {}
        _flatten(row, "$", "", flat)
        flattened.append(flat)
        for key, value in flat.items():
            column = columns.setdefault(key, _Column(*key))
            if isinstance(value, list):
                column.see(_array_type(value))
            else:
                column.see(None if value is None else _json_type(value))
    _unique_names(list(columns.values()))
    preview = [{c.name: flat.get(key) for key, c in columns.items()} for flat in flattened[:PREVIEW_ROWS]]
    return _answer(list(columns.values()), len(rows), preview)


def analyze_csv(data: bytes) -> dict[str, Any]:
    """Tinybird's analysis of a CSV sample: columns, schema, preview and the CSV dialect found."""
    text = data.decode("utf-8-sig", "replace")
    if not text.strip():
        raise ParameterError("The sample is empty: send a CSV or NDJSON file")
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        text = "".join(lines[:-1])  # a sample cut in the middle of its last line
    sample = text[:65536]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    records = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r][: MAX_SAMPLE_ROWS + 1]
    has_header = _has_header(records, sample)
    width = max(len(r) for r in records)
    if has_header:
        header, records = records[0], records[1:]
        names = [column_name(h) for h in header] + [f"column_{i:02d}" for i in range(len(header), width)]
    else:
        names = [f"column_{i:02d}" for i in range(width)]
    columns = [_Column(name, None) for name in names]
    _unique_names(columns)
    for record in records:
        for column, value in zip(columns, record, strict=False):
            column.see(None if value == "" else _csv_type(value))
    preview = [{c.name: (v if v != "" else None) for c, v in zip(columns, r, strict=False)} for r in records]
    answer = _answer(columns, len(records), preview[:PREVIEW_ROWS])
    newline = "\r\n" if "\r\n" in sample else "\n"
    answer["dialect"] = {
        "delimiter": delimiter,
        "has_header": has_header,
        "newline": newline,
        "escapechar": None,
        "encoding": "utf-8",
    }
    return answer


def _has_header(records: list[list[str]], sample: str) -> bool:
    """True when the first row names the columns: all its values are text, and some column's values below are
    not (a number, a date), or, when every value is text, when Python's sniffer says so."""
    first, rest = records[0], records[1:]
    if any(_csv_type(value) != "String" for value in first if value != ""):
        return False
    if not rest:
        return True
    for position in range(len(first)):
        below = {_csv_type(r[position]) for r in rest if position < len(r) and r[position] != ""}
        if below and below != {"String"}:
            return True
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return False


def _unique_names(columns: list[_Column]) -> None:
    seen: dict[str, int] = {}
    for column in columns:
        count = seen.get(column.name, 0)
        seen[column.name] = count + 1
        if count:
            column.name = f"{column.name}_{count}"


def _answer(columns: list[_Column], rows: int, preview: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "analysis": {
            "columns": [c.describe(rows) for c in columns],
            "schema": ", ".join(c.schema(rows) for c in columns),
        },
        "preview": {
            "meta": [{"name": c.name, "type": c.recommended(rows)} for c in columns],
            "data": preview,
            "rows": len(preview),
            "statistics": {"elapsed": 0, "rows_read": rows, "bytes_read": 0},
        },
    }


def analyze(data: bytes, fmt: str | None = None) -> dict[str, Any]:
    """The analysis of a sample in `fmt` (ndjson or csv; guessed from the content when None)."""
    if fmt is None:
        first = data.lstrip()[:1]
        fmt = "ndjson" if first in (b"{", b"[") else "csv"
    if fmt in ("ndjson", "json", "jsonl"):
        return analyze_ndjson(data)
    if fmt == "csv":
        return analyze_csv(data)
    raise ParameterError(f"Unsupported format '{fmt}': this server analyzes ndjson and csv")
