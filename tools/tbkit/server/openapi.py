"""An OpenAPI 3 document for a project's endpoints, built from their parameters and columns.

Parameters come from the pipes' template functions (type, default, description, `required`, `enum`);
response columns come from the endpoint's SQL (`DESCRIBE`), so the document always matches what the
endpoint returns.
"""

from __future__ import annotations

import re
from typing import Any

from ..project.datafiles import Parameter, Pipe

_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}"
_INTEGER_BOUNDS = {
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
}


def parameter_schema(parameter: Parameter) -> dict[str, Any]:
    """The JSON schema of a query parameter of a Tinybird type."""
    kind = parameter.type
    if kind in _INTEGER_BOUNDS:
        low, high = _INTEGER_BOUNDS[kind]
        schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    elif kind.startswith("Float"):
        schema = {"type": "number"}
    elif kind in ("Boolean", "bool"):
        schema = {"type": "boolean"}
    elif kind.startswith("DateTime"):
        schema = {"type": "string", "pattern": _DATETIME_PATTERN, "example": "2025-07-01 12:00:00"}
    elif kind == "Date":
        schema = {"type": "string", "format": "date"}
    elif kind.startswith("Array"):
        schema = {"type": "string", "description": "Comma-separated values"}
    else:
        schema = {"type": "string"}
        if parameter.required:
            schema["pattern"] = r"\S"  # a required text parameter needs more than spaces
    if parameter.enum:
        schema["enum"] = list(parameter.enum)
    if parameter.default is not None:
        schema["default"] = parameter.default
    if parameter.example is not None:
        schema["example"] = parameter.example
    return schema


def column_schema(clickhouse_type: str) -> dict[str, Any]:
    """The JSON schema of a value of a ClickHouse column type in a JSON response."""
    inner = clickhouse_type
    nullable = False
    match = re.match(r"^Nullable\((.*)\)$", inner)
    if match:
        inner, nullable = match.group(1), True
    inner = re.sub(r"^LowCardinality\((.*)\)$", r"\1", inner)
    if re.match(r"^U?Int(8|16|32|64|128|256)$", inner):
        schema: dict[str, Any] = {"type": "integer"}
    elif inner.startswith(("Float", "Decimal")):
        schema = {"type": "number"}
    elif inner == "Bool":
        schema = {"type": "boolean"}
    elif inner.startswith("Array"):
        schema = {"type": "array", "items": {}}
    else:
        schema = {"type": "string"}
    if nullable:
        schema["nullable"] = True
    return schema


def _responses(columns: list[tuple[str, str]]) -> dict[str, Any]:
    row = {"type": "object", "properties": {name: column_schema(kind) for name, kind in columns}}
    body = {
        "type": "object",
        "required": ["meta", "data", "rows", "statistics"],
        "properties": {
            "meta": {"type": "array", "items": {"$ref": "#/components/schemas/Column"}},
            "data": {"type": "array", "items": row},
            "rows": {"type": "integer"},
            "rows_before_limit_at_least": {"type": "integer"},
            "statistics": {"$ref": "#/components/schemas/Statistics"},
        },
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "200": {"description": "The endpoint's rows", "content": {"application/json": {"schema": body}}},
        "400": {"description": "A parameter is missing, has the wrong type or an invalid value", **error},
        "403": {"description": "The token is missing, invalid or cannot read this endpoint", **error},
        "404": {"description": "The endpoint does not exist", **error},
        "408": {"description": "The query ran past the server's time limit and was cancelled", **error},
        "429": {"description": "Too many concurrent requests; retry after the Retry-After header", **error},
    }


def _operation(pipe: Pipe, columns: list[tuple[str, str]]) -> dict[str, Any]:
    parameters = []
    for parameter in pipe.parameters.values():
        parameters.append(
            {
                "name": parameter.name,
                "in": "query",
                "required": parameter.required,
                "description": parameter.description or parameter.name,
                "schema": parameter_schema(parameter),
            }
        )
    return {
        "operationId": pipe.name,
        "summary": pipe.description.split(". ")[0].rstrip(".") if pipe.description else pipe.name,
        "description": pipe.description,
        "parameters": parameters,
        "responses": _responses(columns),
    }


def document(endpoints: dict[str, Pipe], columns: dict[str, list[tuple[str, str]]], server_url: str) -> dict:
    """The OpenAPI 3.0 document for `endpoints`, whose responses have `columns[name]`."""
    paths = {f"/v0/pipes/{name}.json": {"get": _operation(pipe, columns[name])} for name, pipe in endpoints.items()}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Tinybird endpoints",
            "version": "1.0.0",
            "description": "Tinybird endpoints served by tbkit. Pass a token as a Bearer header or as ?token=.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}, {"tokenQuery": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
            },
            "schemas": {
                "Column": {
                    "type": "object",
                    "required": ["name", "type"],
                    "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
                },
                "Statistics": {
                    "type": "object",
                    "properties": {
                        "elapsed": {"type": "number"},
                        "rows_read": {"type": "integer"},
                        "bytes_read": {"type": "integer"},
                    },
                },
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            },
        },
    }
