"""Table rewrites reused by query shape (`tbkit.query.skeletons`): the same SQL and answers as rewriting every query."""

from __future__ import annotations

import json

import pytest

from tbkit.checks import golden
from tbkit.errors import ParameterError, SqlParseError
from tbkit.project import tinybird_adapter
from tbkit.query import pipes as query
from tbkit.query.skeletons import Skeletons

from .conftest import AS_OF

HOSTILE = [
    "cust_001' OR '1'='1",
    "cust_001\\' OR 1=1 --",
    "x' UNION SELECT * FROM customers --",
    "\\",
    "\\\\'",
    "{{ customer_id }}",
    "{% if 1 %}x{% end %}",
    "%s %d %%",
    "{0}",
    "cust_ünïcödé_✓",
    "line\nbreak\ttab",
    "'",
    "''",
    '"quoted"',
    "`backtick`",
    "/* comment */ cust_001",
    "-- cust_001",
    "tbkitdeadbeefx0",
    "   CUST_001   ",
]


# The cache these tests share, as a server's workspaces share theirs.
CACHE = Skeletons()


def cached(project, pipe, params, database):
    """The render a served call makes: its table rewrite from the shared cache."""
    return query.render_pipe(project, pipe, params, database, skeletons=CACHE)


def uncached(project, pipe, params, database):
    """The same render with a rewrite per call (no cache)."""
    return query.render_pipe(project, pipe, params, database)


def render_both(project, endpoint, params, database="ws"):
    """(cached SQL rendered twice, so the second comes from the skeleton; uncached SQL), or the errors' text."""
    pipe = project.endpoint(endpoint)
    results = []
    for render in (cached, cached, uncached):
        try:
            results.append(render(project, pipe, params, database))
        except (ParameterError, SqlParseError) as e:
            results.append(f"{type(e).__name__}: {e}")
    return results


def test_golden_cases_render_byte_identical_sql(project, layout):
    cases = golden.load_cases(layout.cases_dir, project)
    assert len(cases) >= 40
    for case in cases:
        first, second, direct = render_both(project, case.endpoint, case.params)
        assert first == second == direct, case.id


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    ("endpoint", "name", "extra"),
    [
        ("customer_segment_lookup", "customer_id", {"as_of": AS_OF}),
        ("customer_cltv", "customer_id", {}),
        ("customer_segments_summary", "location", {"as_of": AS_OF}),
        ("customer_engagement_analysis", "event_type", {"as_of": AS_OF}),
    ],
)
def test_hostile_parameters_render_byte_identical_sql(project, endpoint, name, extra, value):
    cached(project, project.endpoint(endpoint), {**extra, name: "plain_value"}, "ws")  # shape known
    first, second, direct = render_both(project, endpoint, {**extra, name: value})
    assert first == second == direct


def test_a_known_shape_is_reused_with_other_values(project):
    cache = Skeletons()
    pipe = project.endpoint("customer_segment_lookup")
    params = [{"customer_id": f"cust_{n:03}", "as_of": AS_OF} for n in range(5)]
    sqls = [query.render_pipe(project, pipe, each, "ws", skeletons=cache) for each in params]
    assert (cache.misses, cache.hits) == (1, 4)
    assert "lower(trimBoth('cust_003'))" in sqls[3]
    assert "FROM ws.customers_latest_mv" in sqls[3]
    assert sqls[3] == uncached(project, pipe, {"customer_id": "cust_003", "as_of": AS_OF}, "ws")


def test_the_database_is_part_of_the_shape(project):
    pipe = project.endpoint("customer_cltv")
    one = query.render_pipe(project, pipe, {"customer_id": "a"}, "first", skeletons=CACHE)
    other = query.render_pipe(project, pipe, {"customer_id": "a"}, "second", skeletons=CACHE)
    assert "first.customer_cltv_mv" in one and "second.customer_cltv_mv" in other


def fake_rewrite(calls):
    def rewrite(sql, replacements):
        calls.append(sql)
        for name, (database, target) in replacements.items():
            sql = sql.replace(f" {name} ", f" {database + '.' if database else ''}{target} ")
        return sql

    return rewrite


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'it''s' FROM t ",
        "SELECT 'a\\'b' FROM t ",
        "SELECT 'ü' FROM t ",
        "SELECT dictGet('d', 'x', 1) FROM t ",
        "SELECT now() - INTERVAL '1 day' FROM t ",
        "SELECT 'unclosed FROM t ",
    ],
)
def test_queries_whose_literals_matter_are_rewritten_directly(sql):
    cache, calls = Skeletons(), []
    for _ in range(2):
        assert cache.rewrite(sql, {"t": ("db", "t")}, fake_rewrite(calls)) == fake_rewrite([])(sql, {"t": ("db", "t")})
    assert calls == [sql, sql]
    assert cache.hits == cache.misses == 0


def test_a_shape_whose_rewrite_depends_on_a_literal_is_not_reused():
    def literal_dependent(sql, replacements):  # as a rewriter that would read the literal's text
        return sql.upper() if "'a'" in sql else sql

    cache = Skeletons()
    assert cache.rewrite("SELECT 'a' FROM t", {}, literal_dependent) == "SELECT 'A' FROM T"
    assert cache.rewrite("SELECT 'b' FROM t", {}, literal_dependent) == "SELECT 'b' FROM t"
    assert cache.rewrite("SELECT 'a' FROM t", {}, literal_dependent) == "SELECT 'A' FROM T"


def test_literals_of_node_subqueries_are_part_of_the_shape():
    cache, calls = Skeletons(), []
    replacements = {"node": ("", "(SELECT 'x' AS v)"), "t": ("db", "t")}
    first = cache.rewrite("SELECT 'a' FROM node ", replacements, fake_rewrite(calls))
    replacements["node"] = ("", "(SELECT 'y' AS v)")
    second = cache.rewrite("SELECT 'b' FROM node ", replacements, fake_rewrite(calls))
    assert (first, second) == ("SELECT 'a' FROM (SELECT 'x' AS v) ", "SELECT 'b' FROM (SELECT 'y' AS v) ")
    assert (cache.misses, cache.hits, len(calls)) == (1, 1, 2)


def test_the_cache_is_bounded():
    cache = Skeletons(size=2)
    for n in range(5):
        cache.rewrite(f"SELECT 'v' FROM t{n}", {}, lambda sql, _: sql)
    assert len(cache._cache) == 2


def test_cached_answers_equal_uncached_answers(seeded, reader):
    pipe = seeded.project.endpoint("customer_segment_lookup")
    for customer in ["cust_001", "CUST_016 ", "cust_001' OR '1'='1", "nobody"]:
        params = {"customer_id": customer, "as_of": AS_OF}
        cached = json.loads(reader.query_endpoint("customer_segment_lookup", params))
        direct_sql = uncached(seeded.project, pipe, params, seeded.name)
        direct = json.loads(seeded.read(direct_sql, "JSON").bytes())
        assert (cached["meta"], cached["data"]) == (direct["meta"], direct["data"])
    assert reader.endpoint("customer_segment_lookup", {"customer_id": "cust_001", "as_of": AS_OF})["data"]


def test_the_adapter_rewrite_is_what_the_cache_wraps(project):
    pipe = project.endpoint("customer_cltv")
    sql = query.render_pipe(project, pipe, {"customer_id": "cust_001"}, "ws", skeletons=CACHE)
    rendered = tinybird_adapter.render_template(pipe.output_node.template, {"customer_id": "cust_001"}, "n")
    assert sql == tinybird_adapter.replace_tables(rendered, query.table_replacements(project, "ws"))
