"""Coverage: which declared parameters and which template branches each endpoint's cases exercise.

A case exercises a parameter when it passes it. It takes a branch when rendering the node's template with the
case's parameters goes through it: each arm of every `{% if %}` (`if`, `elif`, `else`, and the implicit "none
of them" of an `if` without `else`) gets a marker comment, the node is rendered by Tinybird's template engine
with the case's parameters, and the markers in the output are the arms taken. `{{ error(...) }}` calls are
replaced by a marker as well, so a case that ends in an error still shows the arms it went through up to it;
nodes after an error are not rendered, as they would not be. A case whose value the template refuses (a
malformed date, a limit that is not a number) exercises its parameters but no arm of the node that refuses it.
The arms are listed by Tinybird's own template parser; the markers are placed by a scan of the template's
`{% %}` tags, and the two must agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProjectError, TbkitError
from ..project import tinybird_adapter
from ..project.datafiles import Node, Pipe, Project
from ..query.pipes import template_variables
from .golden import Case

_TAG = re.compile(r"\{%(.*?)%\}", re.S)
_ERROR_CALL = re.compile(r"\{\{\s*(?:custom_)?error\s*\(.*?\)\s*\}\}", re.S)
_ERROR_MARK = "/*tbkit_error*/"
_MARK = re.compile(r"/\*tbkit_arm_(\d+)\*/")
_BLOCKS = {"if", "for", "while", "try", "with", "block", "apply", "autoescape"}


@dataclass
class Arm:
    """One way through an `{% if %}`: its node, where it is, what it says, and the cases that take it."""

    node: str
    line: int | None  # in the .pipe file
    label: str
    cases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "line": self.line, "branch": self.label, "cases": self.cases}


@dataclass
class EndpointCoverage:
    """The parameters and branches of one endpoint, each with the cases that exercise it."""

    endpoint: str
    path: str
    parameters: dict[str, list[str]] = field(default_factory=dict)
    arms: list[Arm] = field(default_factory=list)

    @property
    def covered(self) -> int:
        """Parameters passed by some case plus arms taken by some case."""
        return sum(bool(c) for c in self.parameters.values()) + sum(bool(a.cases) for a in self.arms)

    @property
    def total(self) -> int:
        """Declared parameters plus arms."""
        return len(self.parameters) + len(self.arms)

    @property
    def percent(self) -> float:
        """Covered share, 100 for an endpoint with neither parameters nor branches."""
        return 100.0 if not self.total else round(100.0 * self.covered / self.total, 1)

    def missing(self) -> list[str]:
        """One line per parameter no case passes and per branch no case takes."""
        lines = [f"parameter {name}: no case passes it" for name, cases in self.parameters.items() if not cases]
        for arm in self.arms:
            if not arm.cases:
                where = f"{self.path}:{arm.line}" if arm.line else self.path
                lines.append(f"branch {arm.label} (node {arm.node}, {where}): no case takes it")
        return lines

    def summary(self) -> str:
        """`endpoint: 7/7 parameters, 12/14 branches (90.5%)`."""
        params = sum(bool(c) for c in self.parameters.values())
        arms = sum(bool(a.cases) for a in self.arms)
        return (
            f"{self.endpoint}: {params}/{len(self.parameters)} parameters, "
            f"{arms}/{len(self.arms)} branches ({self.percent:g}%)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "percent": self.percent,
            "parameters": self.parameters,
            "branches": [a.to_dict() for a in self.arms],
        }


@dataclass
class CoverageReport:
    """The coverage of every endpoint checked, and the threshold it is held to (None: report only)."""

    endpoints: list[EndpointCoverage]
    min_percent: float | None = None

    @property
    def ok(self) -> bool:
        """True unless an endpoint is below the threshold."""
        return self.min_percent is None or all(e.percent >= self.min_percent for e in self.endpoints)

    def below(self) -> list[EndpointCoverage]:
        """The endpoints under the threshold."""
        if self.min_percent is None:
            return []
        return [e for e in self.endpoints if e.percent < self.min_percent]

    def to_dict(self) -> dict[str, Any]:
        return {"min_percent": self.min_percent, "ok": self.ok, "endpoints": [e.to_dict() for e in self.endpoints]}


@dataclass
class _Instrumented:
    template: str
    arms: list[Arm]


def _label(statement: str, arm: str) -> str:
    if arm == "else":
        return f"else of `{statement}`"
    if arm == "none":
        return f"none of `{statement}`"
    return f"`{arm}`"


def instrument(node: Node, path: str, first: int = 0) -> _Instrumented:
    """The node's template with a marker comment at the start of every arm, and the arms in marker order."""
    template = node.template
    chains = tinybird_adapter.template_if_chains(template, node.name)
    arms: list[Arm] = []
    pieces: list[str] = []
    stack: list[dict[str, Any]] = []
    chain_index = 0
    position = 0

    def mark(label: str, chain: dict[str, Any]) -> str:
        line = tinybird_adapter.template_file_line(path, node.name, chain["line"]) if chain["line"] else None
        arms.append(Arm(node.name, line, label))
        return f"/*tbkit_arm_{first + len(arms) - 1}*/"

    for match in _TAG.finditer(template):
        content = " ".join(match.group(1).split())
        word = content.split(" ", 1)[0] if content else ""
        pieces.append(template[position : match.end()])
        position = match.end()
        if word == "if":
            if chain_index >= len(chains) or chains[chain_index][1][0] != content:
                raise ProjectError(f"node '{node.name}': cannot place coverage markers at `{{% {content} %}}`")
            chain = {"kind": "if", "statement": content, "line": chains[chain_index][0], "else": False}
            chain_index += 1
            stack.append(chain)
            pieces.append(mark(_label(content, content), chain))
        elif word in ("elif", "else") and stack and stack[-1]["kind"] == "if":
            chain = stack[-1]
            chain["else"] = word == "else"
            pieces.append(mark(_label(chain["statement"], "else" if word == "else" else content), chain))
        elif word in _BLOCKS:
            stack.append({"kind": word})
        elif word == "end" and stack:
            chain = stack.pop()
            if chain["kind"] == "if" and not chain["else"]:
                # An `if` without `else`: its "none of the arms" path gets an arm of its own.
                pieces[-1] = pieces[-1][: -len(match.group(0))]
                pieces.append("{% else %}" + mark(_label(chain["statement"], "none"), chain) + match.group(0))
    pieces.append(template[position:])
    if chain_index != len(chains):
        raise ProjectError(f"node '{node.name}': found {chain_index} of its {len(chains)} `{{% if %}}` tags")
    return _Instrumented(_ERROR_CALL.sub(_ERROR_MARK, "".join(pieces)), arms)


def _taken(pipe: Pipe, instrumented: list[tuple[Node, _Instrumented]], params: dict[str, Any]) -> set[int]:
    """The markers a case's parameters go through, node by node, up to the first error."""
    variables = template_variables(params)
    taken: set[int] = set()
    for node, each in instrumented:
        try:
            rendered = tinybird_adapter.render_template(each.template, variables, node.name)
        except TbkitError:
            return taken  # a value the template refuses: this node, and the request, end here
        before, error, _ = rendered.partition(_ERROR_MARK)
        taken.update(int(n) for n in _MARK.findall(before))
        if error:
            return taken
    return taken


def endpoint_coverage(project: Project, pipe: Pipe, cases: list[Case]) -> EndpointCoverage:
    """The parameters and branches of one endpoint, each with the cases (of `cases`) that exercise it."""
    path = str(pipe.path)
    result = EndpointCoverage(pipe.name, path, {name: [] for name in sorted(pipe.parameters)})
    instrumented: list[tuple[Node, _Instrumented]] = []
    for node in pipe.nodes:
        if node.is_template:
            each = instrument(node, path, len(result.arms))
            instrumented.append((node, each))
            result.arms.extend(each.arms)
        if node is pipe.output_node:
            break
    for case in cases:
        for name in template_variables(case.params):
            if name in result.parameters:
                result.parameters[name].append(case.name)
        for index in sorted(_taken(pipe, instrumented, case.params)):
            result.arms[index].cases.append(case.name)
    return result


def coverage(
    project: Project, cases: list[Case], endpoints: list[str] | None = None, min_percent: float | None = None
) -> CoverageReport:
    """The coverage of every endpoint (or of `endpoints`) by its cases of `cases`."""
    names = sorted(project.endpoints) if endpoints is None else sorted(endpoints)
    return CoverageReport(
        [endpoint_coverage(project, project.endpoint(n), [c for c in cases if c.endpoint == n]) for n in names],
        min_percent,
    )
