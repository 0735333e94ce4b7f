"""The Query API policy (`query_api`): one parse answers what a query reads and whether it is allowed.

Also the adapter's promise behind it: the `tinybird` package's failures reach tbkit as tbkit errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tbkit.errors import NotFoundError, ParameterError, QueryError, SqlParseError, TemplateError
from tbkit.project import tinybird_adapter
from tbkit.query import policy as query_api
from tbkit.query.policy import QueryPlan


def rows(body: bytes) -> list[dict]:
    return json.loads(body)["data"]


# -- what a query reads ------------------------------------------------------------------------------


def test_a_format_clause_sets_the_format_and_the_plan_names_what_the_query_reads(project):
    plan = query_api.plan(project, "SELECT * FROM customers FORMAT CSV")
    assert plan.fmt == "CSV"
    assert plan.statement == "SELECT * FROM customers"
    assert plan.tables == (("", "customers"),)
    assert plan.resources == ("customers",)


def test_without_a_format_clause_the_format_is_the_argument_and_a_trailing_semicolon_goes(project):
    assert query_api.plan(project, "SELECT count() FROM customers ;").fmt == "JSON"
    plan = query_api.plan(project, "  SELECT count() FROM customers;  ", fmt="CSVWithNames")
    assert (plan.statement, plan.fmt) == ("SELECT count() FROM customers", "CSVWithNames")


def test_a_query_joining_an_endpoint_and_a_datasource_lists_both_once(project):
    plan = query_api.plan(
        project,
        "SELECT c.customer_id, l.location FROM customers AS c "
        "JOIN cltv_by_location AS l ON l.location = c.location "
        "WHERE c.customer_id IN (SELECT customer_id FROM customers_quarantine) OR c.customer_id IN "
        "(SELECT customer_id FROM customers)",
    )
    assert plan.resources == ("cltv_by_location", "customers", "customers_quarantine")
    assert set(plan.tables) == {("", "cltv_by_location"), ("", "customers"), ("", "customers_quarantine")}


def test_ctes_and_enabled_table_functions_are_not_resources(project):
    assert query_api.plan(project, "WITH x AS (SELECT 1 AS a) SELECT * FROM x").resources == ()
    assert query_api.plan(project, "SELECT number FROM numbers(3)").resources == ()


def test_render_qualifies_tables_and_inlines_endpoints(project):
    plan = query_api.plan(project, "SELECT * FROM customers JOIN cltv_summary ON 1 = 1")
    sql = query_api.render(plan, project, "ws_x", {})
    assert "ws_x.customers" in sql
    # The endpoint is inlined as a subquery, which reads the (qualified) materialized datasource.
    assert ") AS cltv_summary" in sql and "FROM cltv_summary" not in sql
    assert "ws_x.customer_cltv_mv" in sql


def test_an_endpoint_read_through_the_query_api_takes_the_request_parameters(seeded, reader):
    plan = query_api.plan(seeded.project, "SELECT customer_id, cltv FROM customer_cltv")
    assert plan.resources == ("customer_cltv",)
    answer = rows(reader.run_query(plan, {"customer_id": "CUST_001 "}))
    assert [row["customer_id"] for row in answer] == ["cust_001"]
    with pytest.raises(ParameterError, match="customer_id"):
        reader.run_query(plan, {})


def test_workspace_sql_is_plan_then_run_query(seeded, reader):
    text = "SELECT count() AS n FROM customers FORMAT JSONEachRow"
    body = reader.sql(text)
    assert body == reader.run_query(query_api.plan(seeded.project, text))
    assert json.loads(body) == {"n": seeded.row_count("customers")}


def test_an_endpoint_joined_with_a_datasource_answers(reader):
    body = reader.sql("SELECT count() AS n FROM customers AS c JOIN cltv_by_location AS l ON l.location = c.location")
    assert rows(body)[0]["n"] > 0


# -- what is refused, with the messages the Query API has always given --------------------------------


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("INSERT INTO customers (customer_id) VALUES ('x')", ParameterError, "[Error] only SELECT queries are allowed"),
        ("DROP TABLE customers", ParameterError, "[Error] only SELECT queries are allowed"),
        ("EXPLAIN SELECT 1", ParameterError, "[Error] only SELECT queries are allowed"),
        ("SELECT 1 FORMAT XML", ParameterError, "[Error] unsupported format 'XML': use one of CSV,"),
        (
            "SELECT * FROM customers INTO OUTFILE '/tmp/tbkit-leak.csv'",
            ParameterError,
            "[Error] INTO OUTFILE is not allowed in the Query API",
        ),
        (
            "SELECT * FROM customers INTO /* hidden */ OUTFILE '/tmp/tbkit-leak.csv' FORMAT CSV",
            ParameterError,
            "[Error] INTO OUTFILE is not allowed in the Query API",
        ),
        ("SELECT * FROM nope", NotFoundError, "[Error] Resource 'nope' not found"),
        ("SELECT * FROM main.customers", NotFoundError, "[Error] Resource 'main.customers' not found"),
        ("SELECT * FROM system.tables", NotFoundError, "[Error] Resource 'system.tables' not found"),
        ("SELECT * FROM cluster('c', 'db.t')", NotFoundError, "[Error] Resource 'db.t' not found"),
        ("SELECT FROM WHERE", SqlParseError, "[Error] DB::Exception: Syntax error"),
        ("SELECT 1; DROP TABLE customers", SqlParseError, "[Error] DB::Exception: Syntax error (Multi-statements"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", SqlParseError, "Usage of function file is restricted"),
        ("SELECT 1 SETTINGS readonly = 0", SqlParseError, "Usage of setting 'readonly' is restricted"),
        ("SELECT * FROM format(JSONEachRow, '{}')", SqlParseError, "disabled table functions: 'format'"),
    ],
)
def test_plan_refuses_what_the_query_api_refuses(project, text, error, message):
    with pytest.raises(error) as raised:
        query_api.plan(project, text)
    assert type(raised.value) is error
    assert message in str(raised.value)
    assert raised.value.status in (400, 404)


def test_sql_the_parser_refuses_is_our_query_error_not_a_tinybird_one(project):
    with pytest.raises(SqlParseError) as raised:
        query_api.plan(project, "SELECT * FROM customers WHERE (")
    assert isinstance(raised.value, QueryError) and raised.value.status == 400
    assert not isinstance(raised.value, ValueError)  # every failure of tinybird's sql_toolset is a ValueError
    assert str(raised.value).startswith("[Error] DB::Exception: Syntax error")


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 'into outfile' AS s",
        "SELECT 'INTO OUTFILE' AS s -- into outfile",
        "SELECT 'x' AS s /* INTO OUTFILE '/tmp/x' */",
    ],
)
def test_into_outfile_in_a_string_or_a_comment_is_allowed(seeded, reader, text):
    assert query_api.plan(seeded.project, text).resources == ()
    assert rows(reader.sql(text))[0]["s"].lower() in ("into outfile", "x")


def test_render_refuses_into_outfile_in_the_final_sql(project):
    # plan() refuses INTO OUTFILE on the text; render() checks again on Tinybird's formatting of the final SQL.
    plan = QueryPlan("SELECT * FROM customers INTO OUTFILE '/tmp/x.csv'", "JSON", (("", "customers"),), ("customers",))
    with pytest.raises(ParameterError, match=r"\[Error\] INTO OUTFILE is not allowed in the Query API"):
        query_api.render(plan, project, "ws_x", {})


def test_a_refused_into_outfile_writes_no_file(reader, tmp_path: Path):
    target = tmp_path / "leak.csv"
    for text in (
        f"SELECT * FROM customers INTO OUTFILE '{target}'",
        f"SELECT * FROM customers INTO -- a comment\n OUTFILE '{target}'",
        f"SELECT * FROM customers INTO/**/OUTFILE '{target}'",
    ):
        with pytest.raises(ParameterError, match="INTO OUTFILE"):
            reader.sql(text)
    assert not target.exists()


# -- the adapter turns the tinybird package's failures into tbkit errors -------------------------------


@pytest.mark.parametrize(
    ("sql", "phrase"),
    [
        ("SELECT FROM WHERE", "Syntax error"),
        ("", "Empty query"),
        ("INSERT INTO t VALUES (1)", "Only SELECT or DESCRIBE"),
        ("SELECT 1\x00", "null character"),
        ("SELECT '\udcff'", "surrogates"),
        ("SELECT no_such_function(1)", "Unknown function"),
    ],
)
def test_used_tables_raises_sql_parse_error(sql, phrase):
    with pytest.raises(SqlParseError, match=phrase) as raised:
        tinybird_adapter.used_tables(sql)
    assert not isinstance(raised.value, ValueError)


def test_replace_tables_raises_sql_parse_error_for_a_cycle_and_a_restricted_function():
    cycle = {"a": ("", "(SELECT * FROM b)"), "b": ("", "(SELECT * FROM a)")}
    with pytest.raises(SqlParseError, match="Circular"):
        tinybird_adapter.replace_tables("SELECT * FROM a", cycle)
    with pytest.raises(SqlParseError, match="restricted"):
        tinybird_adapter.replace_tables("SELECT * FROM t", {"t": ("", "(SELECT * FROM url('x'))")})


@pytest.mark.parametrize(
    ("template", "phrase"),
    [
        ("SELECT {{ Int32(x }}", "never closed"),  # Python's SyntaxError
        ("SELECT {% if defined(x) %} 1", "Missing {% end %}"),  # UnClosedIfError
        ("SELECT {% end %}", "Extra {% end %}"),  # tornado's ParseError
        ("SELECT {{ }}", "Empty expression"),  # tornado's ParseError
        ("SELECT {{ __import__('os') }}", "Invalid function name"),  # SecurityException, wrapped
        ("SELECT {{ format }}", "can not be used as a variable name"),  # ValueError
    ],
)
def test_a_template_tinybird_cannot_parse_raises_template_error(template, phrase):
    with pytest.raises(TemplateError, match=phrase):
        tinybird_adapter.template_parameters(template, "n")
    with pytest.raises(TemplateError, match=phrase):
        tinybird_adapter.render_template_for_check(template, "n")


def test_a_template_whose_expressions_fail_raises_template_error_on_check_and_parameter_error_on_request():
    template = "SELECT {% set ratio = 10 / Int32(d, 1) %}{{ ratio }}"
    assert tinybird_adapter.render_template_for_check(template, "n") == "SELECT 10.0"
    with pytest.raises(TemplateError, match="division by zero"):
        tinybird_adapter.render_template_for_check("SELECT {% set y = 1 / 0 %}{{ y }}", "n")
    assert tinybird_adapter.render_template(template, {"d": "2"}, "n") == "SELECT 5.0"
    with pytest.raises(ParameterError, match="division by zero") as raised:
        tinybird_adapter.render_template(template, {"d": "0"}, "n")
    assert raised.value.status == 400


def test_with_a_pipeline_the_query_reads_its_nodes_and_needs_the_pipe(project):
    plan = query_api.plan(project, "SELECT * FROM customers_with_transactions", pipeline="cltv_summary")
    assert (plan.nodes, plan.resources, plan.pipeline) == (
        ("customers_with_transactions",),
        ("cltv_summary",),
        "cltv_summary",
    )
    with pytest.raises(NotFoundError, match="Resource 'customers_with_transactions' not found"):
        query_api.plan(project, "SELECT * FROM customers_with_transactions")
    with pytest.raises(NotFoundError, match="Pipe 'nope' not found"):
        query_api.plan(project, "SELECT 1", pipeline="nope")


def test_a_node_of_the_pipeline_answers_as_the_pipe_computes_it(seeded, reader):
    plan = query_api.plan(
        seeded.project, "SELECT count() AS n FROM customers_with_transactions", pipeline="cltv_summary"
    )
    node = json.loads(reader.run_query(plan))["data"][0]["n"]
    summary = reader.endpoint("cltv_summary")["data"][0]["customers"]
    assert node == summary > 0


def test_tb_dev_reads_a_pipeline_node_over_http(start_server):
    server = start_server()
    answer = requests.get(
        f"{server.url}/v0/sql",
        params={"q": "SELECT * FROM cltv_summary_node", "pipeline": "cltv_summary"},
        headers=server.headers(),
    )
    assert answer.status_code == 200, answer.text
    assert [column["name"] for column in answer.json()["meta"]] == [
        "average_cltv",
        "customers",
        "transactions",
        "total_revenue",
    ]
