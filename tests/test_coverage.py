"""Coverage: the parameters and template branches each endpoint's cases exercise, found by rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tbkit.checks import coverage, golden
from tbkit.checks.golden import Case
from tbkit.errors import ProjectError
from tbkit.project.datafiles import Node, Pipe

from . import ENDPOINTS
from .repo_copy import run


@pytest.fixture(scope="module")
def cases(project, layout) -> list[Case]:
    return golden.load_cases(layout.cases_dir, project)


def _case(endpoint: str, name: str, **params: str) -> Case:
    return Case(endpoint, name, params)


def _pipe(*templates: str) -> Pipe:
    nodes = [Node(f"n{i}", "%\n" + sql) for i, sql in enumerate(templates)]
    nodes[-1].type = "endpoint"
    return Pipe("p", Path("nowhere/p.pipe"), "", nodes)


def test_the_project_cases_cover_every_parameter_and_every_branch(project, cases):
    report = coverage.coverage(project, cases, min_percent=100)
    assert sorted(e.endpoint for e in report.endpoints) == sorted(ENDPOINTS)
    assert {e.endpoint: e.missing() for e in report.endpoints} == {name: [] for name in ENDPOINTS}
    assert report.ok
    # Every declared parameter is counted, and every templated endpoint has branches.
    assert {e.endpoint: sorted(e.parameters) for e in report.endpoints} == {
        name: sorted(project.endpoint(name).parameters) for name in ENDPOINTS
    }
    assert all(e.arms for e in report.endpoints if any(n.is_template for n in project.endpoint(e.endpoint).nodes))


def test_a_branch_is_taken_when_rendering_goes_through_it(project):
    pipe = project.endpoint("customer_engagement_analysis")
    one = _case(pipe.name, "one", customer_id="cust_001", as_of="2025-07-01 00:00:00")
    result = coverage.endpoint_coverage(project, pipe, [one])
    taken = {(a.node, a.label) for a in result.arms if a.cases}
    assert ("engagement_events", "`if defined(customer_id)`") in taken
    assert ("engagement_by_customer", "`if defined(customer_id)`") in taken
    assert ("engagement_events", "else of `if defined(start_date)`") in taken
    assert ("engagement_events", "`if defined(as_of)`") in taken
    assert not any("else of `if defined(customer_id)`" in label for _, label in taken)
    assert result.parameters["customer_id"] == ["one"] and result.parameters["limit"] == []


def test_an_error_branch_ends_the_request_so_later_nodes_take_no_branch(project):
    pipe = project.endpoint("customer_engagement_analysis")
    result = coverage.endpoint_coverage(project, pipe, [_case(pipe.name, "bad", limit="0", activity_level="Active")])
    taken = [(a.node, a.label) for a in result.arms if a.cases]
    assert ("engagement_events", "`if Int32(limit, 100) < 1 or Int32(limit, 100) > 10000`") in taken
    assert all(node == "engagement_events" for node, _ in taken), taken
    # It passes both parameters, even though the request stops at the first node.
    assert result.parameters["limit"] == ["bad"] and result.parameters["activity_level"] == ["bad"]


def test_a_value_the_template_refuses_exercises_its_parameter_but_no_branch_of_that_node(project):
    pipe = project.endpoint("customer_segment_lookup")
    result = coverage.endpoint_coverage(project, pipe, [_case(pipe.name, "x", customer_id="a", as_of="yesterday")])
    assert result.parameters == {"as_of": ["x"], "customer_id": ["x"]}
    assert [a.label for a in result.arms if a.cases] == []  # the render fails, so no arm of the node is known


def test_arms_of_nested_ifs_loops_and_ifs_without_else(project):
    pipe = _pipe(
        "SELECT 1 {% if defined(a) %} , 2 {% elif b == 'x' %} , 3 {% end %}"
        "{% for v in [1, 2] %}{% if v == 2 %} , {{ v }} {% else %} , 0 {% end %}{% end %}"
    )
    result = coverage.endpoint_coverage(project, pipe, [Case("p", "b_is_x", {"b": "x"})])
    assert [(a.label, a.cases) for a in result.arms] == [
        ("`if defined(a)`", []),
        ("`elif b == 'x'`", ["b_is_x"]),
        ("none of `if defined(a)`", []),
        ("`if v == 2`", ["b_is_x"]),
        ("else of `if v == 2`", ["b_is_x"]),
    ]
    assert result.percent == 60.0  # no declared parameter: 3 of 5 arms


def test_min_coverage_fails_check_and_names_what_no_case_exercises(repo):
    cases_file = repo / "fixtures" / "cases" / "customer_segment_lookup.yaml"
    text = cases_file.read_text()
    start = text.index("  - name: without_as_of_unknown_customer\n")
    cases_file.write_text(
        text[:start] + text[text.index("    unset: [as_of]\n", start) + len("    unset: [as_of]\n") :]
    )
    reported = run("check")
    assert reported.exit_code == 0, reported.output  # without a threshold, coverage is reported only
    assert "~ coverage customer_segment_lookup: 2/2 parameters, 3/4 branches (83.3%)" in reported.output
    failed = run("check", "--min-coverage", "90")
    assert failed.exit_code == 1
    assert "✗ coverage customer_segment_lookup: 2/2 parameters, 3/4 branches (83.3%)" in failed.output
    assert (
        "    branch else of `if defined(as_of)` (node customer_segment_lookup_node, "
        "tinybird/endpoints/customer_segment_lookup.pipe:18): no case takes it" in failed.output
    )
    assert "(1 endpoint under 90% coverage)" in failed.output
    assert "✓ coverage customer_cltv: 1/1 parameters, 2/2 branches (100%)" in failed.output
    assert run("check", "--min-coverage", "80").exit_code == 0
    as_json = json.loads(run("check", "--min-coverage", "90", "--json").output)["coverage"]
    [lookup] = [e for e in as_json["endpoints"] if e["endpoint"] == "customer_segment_lookup"]
    assert lookup["percent"] == 83.3 and as_json["ok"] is False
    assert [b["branch"] for b in lookup["branches"] if not b["cases"]] == ["else of `if defined(as_of)`"]


def test_coverage_counts_only_the_endpoints_of_a_narrowed_run(repo):
    by_endpoint = json.loads(run("check", "--endpoint", "customer_cltv", "--json").output)["coverage"]
    assert [e["endpoint"] for e in by_endpoint["endpoints"]] == ["customer_cltv"]
    assert json.loads(run("check", "--case", "seed_outlier", "--json").output)["coverage"] is None


def test_a_template_the_marker_scan_cannot_follow_is_a_project_error():
    spaced = Node("n", "%\nSELECT 1 {%if   defined(a)%} 2 {%end%}")
    assert coverage.instrument(spaced, "x.pipe").arms[0].label == "`if defined(a)`"
    commented = Node("n", "%\nSELECT 1 {% if defined(a) %} 2 {% end %} {# {% if defined(b) %} #}")
    with pytest.raises(ProjectError, match=r"cannot place coverage markers at `\{% if defined\(b\) %\}`"):
        coverage.instrument(commented, "x.pipe")
