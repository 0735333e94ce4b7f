"""Endpoint contracts: the parameters and output columns each endpoint promises its consumers.

A contract is derived from the project (parameters from the pipe, columns from the engine without running the
endpoint) and kept in `fixtures/contracts/<endpoint>.yaml`, beside the golden files. `compare` lists what
changed between two sets of contracts and whether each change breaks consumers: a removed or renamed column, a
changed column type, a removed parameter, a new or newly required parameter and a changed parameter type
break them; a new optional parameter, a new column, a changed default or description do not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import TbkitError
from ..project.datafiles import Project
from ..project.layout import Layout

# An endpoint's (name, type) columns: from the engine (`Reader.endpoint_columns`) or from the answers seen.
Columns = Callable[[str], list[tuple[str, str]] | None]
HEADER = "# Written by `tbkit check --update` from the project; review its diff like code.\n"


@dataclass(frozen=True)
class Param:
    """One parameter of an endpoint's contract."""

    name: str
    type: str
    required: bool = False
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class Contract:
    """What one endpoint takes (parameters, by name) and returns (columns, in order)."""

    endpoint: str
    parameters: tuple[Param, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: parameters sorted by name, columns in output order as `name: type`."""
        return {
            "endpoint": self.endpoint,
            "parameters": [
                {
                    "name": p.name,
                    "type": p.type,
                    "required": p.required,
                    "default": p.default,
                    "description": p.description,
                }
                for p in sorted(self.parameters, key=lambda p: p.name)
            ],
            "columns": [{name: type_} for name, type_ in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contract:
        """A contract from its YAML form (as `to_dict` writes it)."""
        params = tuple(
            Param(p["name"], p["type"], bool(p.get("required", False)), p.get("default"), p.get("description") or "")
            for p in data.get("parameters") or []
        )
        columns = tuple(next(iter(c.items())) for c in data.get("columns") or [])
        return cls(data["endpoint"], params, columns)


@dataclass
class Change:
    """One difference between an endpoint's contract and the project; `accepted` once written."""

    endpoint: str
    what: str
    breaking: bool
    accepted: bool = False

    def __str__(self) -> str:
        return f"contract {self.endpoint}: {self.what} ({'breaking' if self.breaking else 'compatible'})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {"endpoint": self.endpoint, "change": self.what, "breaking": self.breaking, "accepted": self.accepted}


def _plain(value: Any) -> Any:
    """A default as YAML writes and reads it back (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def derive(project: Project, columns: Columns, endpoints: Iterable[str] | None = None) -> dict[str, Contract]:
    """The contract of every endpoint (or of `endpoints`), with each endpoint's columns from `columns`."""
    names = sorted(project.endpoints) if endpoints is None else sorted(endpoints)
    contracts = {}
    for name in names:
        pipe = project.endpoint(name)
        params = tuple(
            Param(p.name, p.type, p.required, _plain(p.default), p.description.strip())
            for p in sorted(pipe.parameters.values(), key=lambda p: p.name)
        )
        answered = tuple((column, type_) for column, type_ in columns(name) or ())
        contracts[name] = Contract(name, params, answered)
    return contracts


def contracts_dir(layout: Layout) -> Path:
    """`fixtures/contracts`: one `<endpoint>.yaml` per endpoint."""
    return layout.fixtures_dir / "contracts"


def load(layout: Layout) -> dict[str, Contract]:
    """Every contract file of the layout, by endpoint (none when the folder does not exist)."""
    contracts = {}
    for path in sorted(contracts_dir(layout).glob("*.yaml")):
        try:
            contract = Contract.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, KeyError, TypeError, AttributeError, StopIteration) as e:
            raise TbkitError(f"{path}: not a contract file ({e})") from None
        if contract.endpoint != path.stem:
            raise TbkitError(f"{path}: names endpoint '{contract.endpoint}', expected '{path.stem}'")
        contracts[contract.endpoint] = contract
    return contracts


def text(contract: Contract) -> str:
    """The file content of a contract: stable order, one line per column."""
    return HEADER + yaml.safe_dump(contract.to_dict(), sort_keys=False, allow_unicode=True, width=10_000)


def write(layout: Layout, contracts: Mapping[str, Contract | None]) -> None:
    """Write each contract to `fixtures/contracts/<endpoint>.yaml`; None deletes the endpoint's file."""
    folder = contracts_dir(layout)
    folder.mkdir(parents=True, exist_ok=True)
    for name, contract in contracts.items():
        path = folder / f"{name}.yaml"
        if contract is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text(contract), encoding="utf-8")


def _as_contract(name: str, value: Contract | Mapping[str, Any]) -> Contract:
    return value if isinstance(value, Contract) else Contract.from_dict({"endpoint": name, **value})


def compare(
    old: Mapping[str, Contract | Mapping[str, Any]], new: Mapping[str, Contract | Mapping[str, Any]]
) -> list[Change]:
    """Every change from the `old` contracts to the `new` ones, by endpoint, each breaking or compatible."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(Change(name, "endpoint removed", True))
        elif name not in old:
            changes.append(Change(name, "new endpoint, no contract yet", False))
        else:
            before, after = _as_contract(name, old[name]), _as_contract(name, new[name])
            changes += [Change(name, what, breaking) for what, breaking in _parameter_changes(before, after)]
            changes += [Change(name, what, breaking) for what, breaking in _column_changes(before, after)]
    return changes


def _parameter_changes(old: Contract, new: Contract) -> list[tuple[str, bool]]:
    before = {p.name: p for p in old.parameters}
    after = {p.name: p for p in new.parameters}
    changes = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if b is None:
            changes.append((f"parameter {name} removed", True))
        elif a is None:
            kind = "required" if b.required else "optional"
            changes.append((f"new {kind} parameter {name} {b.type}", b.required))
        else:
            if a.type != b.type:
                changes.append((f"parameter {name} type {a.type} -> {b.type}", True))
            if a.required != b.required:
                changes.append((f"parameter {name} became {'required' if b.required else 'optional'}", b.required))
            if a.default != b.default:
                changes.append((f"parameter {name} default {a.default!r} -> {b.default!r}", False))
            if a.description != b.description:
                changes.append((f"parameter {name} description changed", False))
    return changes


def _column_changes(old: Contract, new: Contract) -> list[tuple[str, bool]]:
    before, after = dict(old.columns), dict(new.columns)
    removed = [c for c in before if c not in after]
    added = [c for c in after if c not in before]
    changes = []
    for position, (name, type_) in enumerate(old.columns):
        if name not in removed:
            continue
        # A column replaced at the same position by a new one of the same type reads as a rename.
        twin = new.columns[position] if position < len(new.columns) else None
        if twin and twin[0] in added and twin[1] == type_:
            changes.append((f"column {name} renamed to {twin[0]}", True))
            added.remove(twin[0])
        else:
            changes.append((f"column {name} removed (was {type_})", True))
    for name, type_ in old.columns:
        if name in after and after[name] != type_:
            changes.append((f"column {name} {type_} -> {after[name]}", True))
    for name in added:
        changes.append((f"new column {name} {after[name]}", False))
    kept_before = [c for c, _ in old.columns if c in after]
    kept_after = [c for c, _ in new.columns if c in before]
    if kept_before != kept_after:
        changes.append((f"columns reordered: {', '.join(kept_after)} (was {', '.join(kept_before)})", True))
    return changes


@dataclass
class ContractCheck:
    """The contract changes of a `tbkit check` run, and which of them were written."""

    changes: list[Change] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every change was accepted (or there was none)."""
        return all(c.accepted for c in self.changes)


def check(
    layout: Layout,
    project: Project,
    columns: Columns,
    endpoints: Iterable[str] | None = None,
    update: bool = False,
    accept_breaking: bool = False,
) -> ContractCheck:
    """Compare the project with the contract files; with `update`, write the endpoints whose changes are accepted.

    An endpoint's changes are accepted together: with `update` when none breaks consumers, or with
    `accept_breaking` as well. `endpoints` limits the check to those endpoints (removed ones are not sought).
    """
    current = derive(project, columns, endpoints)
    stored = load(layout)
    if endpoints is not None:
        stored = {name: c for name, c in stored.items() if name in current}
    result = ContractCheck(compare(stored, current))
    if update:
        to_write: dict[str, Contract | None] = {}
        for name in sorted({c.endpoint for c in result.changes}):
            mine = [c for c in result.changes if c.endpoint == name]
            if accept_breaking or not any(c.breaking for c in mine):
                to_write[name] = current.get(name)
                for change in mine:
                    change.accepted = True
        for name, contract in current.items():  # unchanged contracts, rewritten in the current file format
            path = contracts_dir(layout) / f"{name}.yaml"
            changed = any(c.endpoint == name for c in result.changes)
            if not changed and path.exists() and path.read_text(encoding="utf-8") != text(contract):
                to_write[name] = contract
        write(layout, to_write)
    return result
