"""`tb test` files: `tests/<pipe>.yaml` in a Tinybird project, as `tb test create` and `tb test update` write them.

A file is a list of tests, each a `name`, a `description`, its `parameters` (a query string), the
`expected_result` (the endpoint's NDJSON answer, compared as text by `tb test run`) and, for a status of 400 or
more, the `expected_http_status` (the `error` field of the answer is then the expected result).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class TbTest:
    """One test of a `tb test` file."""

    name: str
    description: str
    parameters: str  # a query string
    expected_result: str
    expected_http_status: int | None = None

    def to_dict(self) -> dict:
        """The test as the file holds it (`expected_http_status` only for an error)."""
        entry: dict = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "expected_result": self.expected_result,
        }
        if self.expected_http_status is not None:
            entry["expected_http_status"] = self.expected_http_status
        return entry


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, as `tb test create` writes them."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralDumper.add_representer(str, _represent_str)


def text(tests: list[TbTest]) -> str:
    """A `tb test` file's text: the tests in order, a blank line between two."""
    entries = [test.to_dict() for test in tests]
    dumped = yaml.dump(entries, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=1000)
    return dumped.replace("\n- name:", "\n\n- name:")


def write(tests_dir: Path, pipe: str, tests: list[TbTest]) -> Path:
    """Write `tests_dir/<pipe>.yaml`; the path written."""
    tests_dir.mkdir(parents=True, exist_ok=True)
    path = tests_dir / f"{pipe}.yaml"
    path.write_text(text(tests), encoding="utf-8")
    return path
