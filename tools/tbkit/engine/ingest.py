"""The SQL that appends NDJSON to a datasource through its JSON paths, with Tinybird's quarantine.

Rows are read one line at a time (`LineAsString`), so one bad line never aborts the others, and every
column is extracted as `Nullable(T)` through its JSON path. A row goes to `<datasource>_quarantine` when
the line is not a JSON object, a required column (no DEFAULT, not Nullable) is missing or null, or a
value does not fit its column's type. A missing or null value in a column with a DEFAULT takes the
default (ClickHouse's `insert_null_as_default`).

The quarantine datasource has Tinybird's columns (`c__error_column`, `c__error`, `c__import_id`,
`insertion_date`) and every original column as `Nullable(String)` holding the value as sent. tbkit adds
`c__line`, the original line, so a row that is not even JSON is kept verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ParameterError
from ..project.datafiles import Column, Datasource

QUARANTINE_SUFFIX = "_quarantine"
# The values each date and time type can hold, as ClickHouse documents them.
_TIME_RANGES = {
    "Date": ("1970-01-01 00:00:00", "2149-06-06 00:00:00"),
    "DateTime": ("1970-01-01 00:00:00", "2106-02-07 06:28:15"),
    "Date32": ("1900-01-01 00:00:00", "2299-12-31 23:59:59"),
    "DateTime64": ("1900-01-01 00:00:00", "2299-12-31 23:59:59"),
}
_INTEGER = re.compile(r"^U?Int(8|16|32|64|128|256)$")
_FLOAT = re.compile(r"^(Float32|Float64|BFloat16)$")
_DATETIME = re.compile(r"^(DateTime|DateTime64)\b")
_DATE = re.compile(r"^(Date|Date32)$")
_STRING = re.compile(r"^(String|FixedString\(\d+\))$")
_COMPOSITE = re.compile(r"^(Array|Map|Tuple|JSON|Nested)\b")


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def identifier(name: str) -> str:
    """A ClickHouse identifier in backquotes."""
    return "`" + name.replace("`", "``") + "`"


def _split_arguments(text: str) -> list[str]:
    """Top-level comma-separated arguments of a type (`sum, Float64` -> ['sum', 'Float64'])."""
    parts: list[str] = []
    depth = 0
    start = 0
    for position, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:position].strip())
            start = position + 1
    parts.append(text[start:].strip())
    return parts


def aggregate_function(column_type: str) -> tuple[str, list[str]] | None:
    """(function, argument types) of an `AggregateFunction(f, T...)` column type, else None."""
    inner = column_type.strip()
    if not (inner.startswith("AggregateFunction(") and inner.endswith(")")):
        return None
    function, *arguments = _split_arguments(inner[len("AggregateFunction(") : -1])
    return function, arguments


def value_type(column_type: str) -> str:
    """The type of the values a column stores: SimpleAggregateFunction(f, T) stores T; others are themselves."""
    inner = column_type.strip()
    if inner.startswith("SimpleAggregateFunction(") and inner.endswith(")"):
        inner = _split_arguments(inner[len("SimpleAggregateFunction(") : -1])[-1]
    return inner


def base_type(column_type: str) -> str:
    """The type of a column's values without LowCardinality() and Nullable() wrappers."""
    inner = value_type(column_type)
    for wrapper in ("LowCardinality(", "Nullable("):
        if inner.startswith(wrapper) and inner.endswith(")"):
            inner = inner[len(wrapper) : -1].strip()
    if inner.startswith("Nullable(") and inner.endswith(")"):
        inner = inner[len("Nullable(") : -1].strip()
    return inner


def accepts_null(column: Column) -> bool:
    """True when a column can hold NULL: declared Nullable, or an aggregate of a Nullable type."""
    inner = value_type(column.type)
    if inner.startswith("LowCardinality(") and inner.endswith(")"):
        inner = inner[len("LowCardinality(") : -1].strip()
    return column.nullable or inner.startswith("Nullable(")


def required(column: Column) -> bool:
    """True when an appended row must carry a value for the column: no DEFAULT and no NULL allowed."""
    return column.default is None and not accepts_null(column)


def parsed_type(column: Column) -> str:
    """The type a column's JSON values are read as: T for `AggregateFunction(f, T)`, else the column's type."""
    aggregate = aggregate_function(column.type)
    return aggregate[1][0] if aggregate is not None and len(aggregate[1]) == 1 else column.type


def check_appendable(datasource: Datasource) -> None:
    """ParameterError naming the first column whose values cannot be appended as JSON values.

    `AggregateFunction(f, T)` columns take one value of T per row, stored as the state of `f` over that value
    (`initializeAggregation`); functions of several arguments have no single JSON value to read.
    """
    for column in datasource.columns:
        aggregate = aggregate_function(column.type)
        if aggregate is not None and len(aggregate[1]) != 1:
            raise ParameterError(
                f"Column '{column.name}' of Data Source '{datasource.name}' is {column.type}: an aggregate state of "
                "several arguments cannot be appended as a JSON value; append to the datasource its "
                "materialization reads instead"
            )


def jsonpath_arguments(jsonpath: str) -> list[str]:
    """Translate a Tinybird JSON path (`$.a.b`, `$.a[0]`, `$.['a b']`, `$.a[:]`) to JSONExtract keys."""
    path = jsonpath.strip()
    if not path.startswith("$"):
        raise ValueError(f"JSON path '{jsonpath}' must start with '$'")
    path = path[1:]
    if path.endswith("[:]"):
        path = path[:-3]
    arguments: list[str] = []
    for match in re.finditer(r"\.?\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\.?\[\s*(\d+)\s*\]|\.([^.\[]+)", path):
        quoted, index, plain = match.groups()
        if quoted is not None:
            arguments.append(quote(quoted))
        elif index is not None:
            arguments.append(str(int(index) + 1))
        else:
            arguments.append(quote(plain))
    return arguments


def _top_level_key(column: Column) -> str | None:
    """The JSON key of a column read from the top level of the object (most are), else None."""
    arguments = jsonpath_arguments(column.jsonpath or f"$.{column.name}")
    if len(arguments) == 1 and arguments[0].startswith("'"):
        return arguments[0][1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return None


def texts_tuple(datasource: Datasource, line: str) -> tuple[str, dict[str, int]]:
    """One JSONExtract that reads every top-level column as text: (expression, column -> tuple position).

    Strings come unescaped, numbers, booleans, objects and arrays as their JSON text, and a missing or null
    value as NULL: one parse of the line for all columns, which keeps the query small to plan.
    """
    positions: dict[str, int] = {}
    elements = []
    for column in datasource.columns:
        key = _top_level_key(column)
        if key is not None:
            elements.append(f"{identifier(key)} Nullable(String)")
            positions[column.name] = len(elements)
    return f"JSONExtract({line}, {quote('Tuple(' + ', '.join(elements) + ')')})", positions


def _cast(text: str, helper: str, column_type: str) -> tuple[str | None, str]:
    """(helper expression or None, value): the text converted to the column's type, NULL when it does not fit.

    The value reads the helper by its alias `helper`, computed one query level below it.
    """
    base = base_type(column_type)
    if _FLOAT.match(base):
        return f"accurateCastOrNull({text}, {quote(base)})", f"if(isFinite(assumeNotNull({helper})), {helper}, NULL)"
    if _DATETIME.match(base) or _DATE.match(base):
        # Casts clamp out-of-range dates silently; check the range on a wider type first.
        lowest, highest = _TIME_RANGES[base.split("(")[0]]
        in_range = f"{helper} BETWEEN toDateTime64('{lowest}', 3) AND toDateTime64('{highest}', 3)"
        wide = f"accurateCastOrNull({text}, 'DateTime64(3)')"
        return wide, f"if({in_range}, CAST({helper}, {quote('Nullable(' + base + ')')}), NULL)"
    # Integers, decimals, booleans, UUIDs...: objects, arrays and fractions simply do not cast.
    return None, f"accurateCastOrNull({text}, {quote(base)})"


# A raw JSON value (or the text of one) that is an object or an array.
_OPENS_COMPOSITE = "'^[{[]'"


@dataclass(frozen=True)
class _ColumnSQL:
    """How one column of a line (`line`, and `texts` from `texts_tuple`) is read and checked.

    Expressions read the aliases of the level below them (`texts`, then `text`, then `helper`): ClickHouse
    plans every function of a query each time it runs (about 70 µs each here, more than running them on 10k
    lines), so a column costs as few functions as it can.
    """

    column: Column
    text: str  # alias of the value as text (NULL when missing or null)
    text_expression: str
    helper: str | None  # alias of a cast the value reads
    helper_expression: str | None
    value: str  # the typed value: NULL when missing or when it does not fit (an alias, or `text` itself)
    value_expression: str | None  # None when the value is the text (a top-level string: see `plain_string`)
    plain_string: bool  # a top-level String column: its value is its text unless the raw JSON is an object or
    # an array, which `staging_select` checks for all such columns at once, and only on lines that need it
    key: str | None  # the JSON key of a top-level column

    @property
    def fits(self) -> str:
        """True when the value is acceptable (missing only where the column has a default or is Nullable)."""
        if required(self.column):
            return f"isNotNull({self.value})"
        return "" if self.plain_string else f"({self.text} IS NULL OR {self.value} IS NOT NULL)"


def _column_sql(index: int, column: Column, positions: dict[str, int]) -> _ColumnSQL:
    text, value, helper = f"t{index}", f"v{index}", f"h{index}"
    key = _top_level_key(column)
    arguments = ", ".join(jsonpath_arguments(column.jsonpath or f"$.{column.name}"))
    if column.name in positions:
        text_expression = f"tupleElement(texts, {positions[column.name]})"
    else:
        text_expression = f"JSONExtract(line, {arguments}, 'Nullable(String)')"
    base = base_type(parsed_type(column))
    if _STRING.match(base) and column.name in positions:
        return _ColumnSQL(column, text, text_expression, None, None, text, None, True, key)
    # The text of an object or an array is its JSON: its raw JSON tells it from a string that looks like one, and
    # is read only where the text looks like one (ClickHouse evaluates the right side of AND only where the left
    # side holds).
    raw = f"JSONExtractRaw(line, {arguments})"
    helper_expression = None
    if _COMPOSITE.match(base):
        opening = "[" if base.startswith(("Array", "Nested")) else "{"
        looks_right = f"startsWith({text}, '{opening}') AND startsWith({raw}, '{opening}')"
        value_expression = f"if({looks_right}, JSONExtract({raw}, {quote(base)}), NULL)"
    elif _STRING.match(base):
        # Numbers and booleans are kept as their text; an object or an array is not a string.
        looks_composite = f"match({text}, {_OPENS_COMPOSITE}) AND match({raw}, {_OPENS_COMPOSITE})"
        value_expression = f"if({looks_composite}, NULL, {text})"
    else:
        helper_expression, value_expression = _cast(text, helper, parsed_type(column))
    helper_alias = helper if helper_expression else None
    return _ColumnSQL(
        column, text, text_expression, helper_alias, helper_expression, value, value_expression, False, key
    )


def _read_lines(datasource: Datasource, lines: str) -> tuple[list[_ColumnSQL], str]:
    """(columns, SELECT): every row of `lines` (a query with a `line` column) with each column's text and value,
    by the aliases of `columns`. Each line is parsed once for all its top-level columns (`texts_tuple`)."""
    texts, positions = texts_tuple(datasource, "line")
    columns = [_column_sql(index, column, positions) for index, column in enumerate(datasource.columns)]
    query = f"SELECT line, {texts} AS texts FROM ({lines})"
    query = f"SELECT line, {', '.join(f'{c.text_expression} AS {c.text}' for c in columns)} FROM ({query})"
    helpers = [f"{c.helper_expression} AS {c.helper}" for c in columns if c.helper_expression]
    if helpers:
        query = f"SELECT *, {', '.join(helpers)} FROM ({query})"
    values = [f"{c.value_expression} AS {c.value}" for c in columns if c.value_expression]
    if values:
        query = f"SELECT *, {', '.join(values)} FROM ({query})"
    return columns, query


_IS_OBJECT = "isValidJSON(line) AND JSONType(line) = 'Object'"


def _errors(columns: list[_ColumnSQL]) -> str:
    """Why the row of a line (a JSON object) does not fit: (column, message) pairs, one per column that does not.

    One function builds every column's message, so ClickHouse plans it once whatever the number of columns; a
    top-level string does not fit when its raw JSON is an object or an array.
    """
    message = (
        "(name, type, needed, text, plain, key, unfit) -> (name, multiIf("
        "text IS NULL, if(needed, concat('missing value for column \\'', name, '\\' (', type, ')'), ''), "
        f"if(plain, match(JSONExtractRaw(line, key), {_OPENS_COMPOSITE}), unfit), "
        "concat('value \\'', substring(text, 1, 200), '\\' on column \\'', name, '\\' is not ', type), ''))"
    )
    arrays = [
        "[" + ", ".join(quote(c.column.name) for c in columns) + "]",
        "[" + ", ".join(quote(c.column.type) for c in columns) + "]",
        "[" + ", ".join("1" if required(c.column) else "0" for c in columns) + "]",
        "[" + ", ".join(c.text for c in columns) + "]",
        "[" + ", ".join("1" if c.plain_string else "0" for c in columns) + "]",
        "[" + ", ".join(quote(c.key or "") for c in columns) + "]",
        "[" + ", ".join("0" if c.plain_string else f"isNull({c.value})" for c in columns) + "]",
    ]
    return f"arrayFilter(x -> x.2 != '', arrayMap({message}, {', '.join(arrays)}))"


def staging_select(datasource: Datasource, source: str) -> str:
    """SELECT every non-blank line of `source` (a `raw String` per line) with its typed values and errors.

    A row that fits the datasource has an empty `c__line` and no `c__errors`; one that does not keeps its line
    and says why. What costs more runs only on the lines that need it: a line that starts with `{` and yields a
    value is a JSON object (JSONExtract yields nothing from a line that does not parse, and an array's elements
    by position), so only the others are parsed again to tell; the raw JSON of top-level strings is read only on
    lines where one of them reads as `{...` or `[...`; errors are worked out only for rows that do not fit.
    """
    lines = (
        f"SELECT line FROM (SELECT trim(TRAILING '\\r' FROM raw) AS line FROM {source}) "
        "WHERE notEmpty(trim(BOTH ' \\t' FROM line))"
    )
    columns, query = _read_lines(datasource, lines)
    if any(required(c.column) for c in columns):  # a required value is found only in a line that parses
        is_object = f"(startsWith(line, '{{') OR ({_IS_OBJECT}))"
    else:
        found = " OR ".join(f"{c.text} IS NOT NULL" for c in columns) or "0"
        is_object = f"((startsWith(line, '{{') AND ({found})) OR ({_IS_OBJECT}))"
    conditions = [is_object, *(c.fits for c in columns if c.fits)]
    strings = [c for c in columns if c.plain_string]
    if strings:
        texts = ", ".join(c.text for c in strings)
        keys = ", ".join(quote(c.key or "") for c in strings)
        conditions.append(
            f"(NOT arrayExists(x -> match(x, {_OPENS_COMPOSITE}), [{texts}]) "
            f"OR NOT arrayExists(k -> match(JSONExtractRaw(line, k), {_OPENS_COMPOSITE}), [{keys}]))"
        )
    values = ", ".join(f"{c.value} AS {identifier('v__' + c.column.name)}" for c in columns)
    not_object = quote("the line is not a valid JSON object")
    return f"""
SELECT
    if(fits, '', line) AS c__line,
    if(fits, [], if({_IS_OBJECT}, {_errors(columns)}, [('', {not_object})])) AS c__errors,
    {values}
FROM (SELECT *, {" AND ".join(conditions)} AS fits FROM ({query}))
"""


def staging_columns(datasource: Datasource) -> str:
    """The column list of the staging table that `staging_select` fills."""
    columns = ["c__line String", "c__errors Array(Tuple(String, String))"]
    for column in datasource.columns:
        value_type = base_type(parsed_type(column))
        if not _COMPOSITE.match(value_type):
            value_type = f"Nullable({value_type})"
        columns.append(f"{identifier('v__' + column.name)} {value_type}")
    return ", ".join(columns)


def _accepted_value(column: Column) -> str:
    """A staged value as the column stores it: an `AggregateFunction` column stores the state of its value."""
    value = identifier("v__" + column.name)
    aggregate = aggregate_function(column.type)
    if aggregate is None:
        return value
    function, (argument_type,) = aggregate
    name, _, parameters = function.partition("(")
    state = f"{name.strip()}State" + (f"({parameters}" if parameters else "")
    return f"initializeAggregation({quote(state)}, CAST({value}, {quote(argument_type)}))"


def insert_accepted(datasource: Datasource, target: str, stage: str) -> str:
    """INSERT the rows of the staging table that fit into the datasource."""
    names = ", ".join(identifier(c.name) for c in datasource.columns)
    values = ", ".join(_accepted_value(c) for c in datasource.columns)
    return f"INSERT INTO {target} ({names}) SELECT {values} FROM {stage} WHERE empty(c__errors)"


def insert_quarantined(datasource: Datasource, target: str, stage: str, import_id: str) -> str:
    """INSERT the rows of the staging table that do not fit into the quarantine, with their original values."""
    names = ", ".join(identifier(c.name) for c in datasource.columns)
    texts, positions = texts_tuple(datasource, "c__line")
    originals = []
    for column in datasource.columns:
        if column.name in positions:
            original = f"tupleElement(texts, {positions[column.name]})"
        else:
            arguments = ", ".join(jsonpath_arguments(column.jsonpath or f"$.{column.name}"))
            original = f"JSONExtract(c__line, {arguments}, 'Nullable(String)')"
        # JSONExtract reads an array's elements by position: a line that is not an object has no column values.
        originals.append(f"if(c__object, {original}, NULL)")
    return f"""
INSERT INTO {target} (c__error_column, c__error, c__import_id, insertion_date, c__line, {names})
SELECT
    arrayFilter(x -> x != '', arrayMap(x -> x.1, c__errors)),
    arrayMap(x -> x.2, c__errors),
    {quote(import_id)},
    now(),
    c__line,
    {", ".join(originals)}
FROM (
    SELECT c__errors, c__line, {texts} AS texts, startsWith(trimLeft(c__line), '{{') AS c__object
    FROM {stage} WHERE notEmpty(c__errors)
)
"""


def quarantine_columns(datasource: Datasource) -> str:
    """The columns of `<datasource>_quarantine`."""
    columns = [
        "`c__error_column` Array(String)",
        "`c__error` Array(String)",
        "`c__import_id` Nullable(String)",
        "`insertion_date` DateTime",
        "`c__line` String",
    ]
    columns.extend(f"{identifier(c.name)} Nullable(String)" for c in datasource.columns)
    return ", ".join(columns)
