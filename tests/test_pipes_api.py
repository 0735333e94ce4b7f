"""The Pipes API (list, describe, datafile, example URL) and the request statistics behind `tb endpoint stats`."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest
import requests

from tbkit.engine import Workspace
from tbkit.query import Reader, service_datasources
from tbkit.server.workspaces.tokens import ADMIN

from . import ENDPOINTS

MATERIALIZATIONS = {
    "customer_cltv_locations": "customer_cltv_mv",
    "customer_cltv_transactions": "customer_cltv_mv",
    "customer_engagement": "customer_engagement_mv",
    "customer_events_by_customer": "customer_events_by_customer_mv",
    "customers_latest": "customers_latest_mv",
}
CUSTOMER = (
    '{"customer_id": "cust123", "name": "John Doe", "email": "john.doe@example.com", "age": 35, "gender": "male", '
    '"location": "New York", "signup_date": "2022-05-15 10:30:00", "lifetime_value": 750.50, '
    '"timestamp": "2023-10-01 12:00:00"}'
)
TRANSACTION = '{"customer_id":"cust123","transaction_date":"2023-01-15 14:30:00","transaction_amount":125.50}'
ID = re.compile(r"^t_[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """A server with one customer and one transaction, shared by the read-only tests of this module."""
    from .serving import InProcessServer

    running = InProcessServer(engine, tmp_path_factory.mktemp("pipes") / "data").start()
    for name, body in (("customers", CUSTOMER), ("customer_transactions", TRANSACTION)):
        posted = requests.post(f"{running.url}/v0/events?name={name}&wait=true", data=body, headers=running.headers())
        assert posted.status_code == 200, posted.text
    yield running
    running.stop()


def token(server, name: str) -> str:
    return next(t.value for t in server.service.main.tokens.tokens if t.name == name)


def get(server, path: str, token: str | None = None, **params) -> requests.Response:
    return requests.get(server.url + path, params={"token": token or server.token, **params}, timeout=30)


def pipes(server, token: str | None = None, **params) -> list[dict]:
    response = get(server, "/v0/pipes", token, **params)
    assert response.status_code == 200, response.text
    return response.json()["pipes"]


def test_the_admin_token_lists_every_pipe_with_its_type_and_nodes(server):
    listed = {p["name"]: p for p in pipes(server)}
    assert {n: p["type"] for n, p in listed.items()} == {
        **{n: "endpoint" for n in ENDPOINTS},
        **{n: "materialized" for n in MATERIALIZATIONS},
    }
    summary = listed["cltv_summary"]
    assert ID.match(summary["id"]) and summary["parent"] is None
    assert [n["name"] for n in summary["nodes"]] == ["customers_with_transactions", "cltv_summary_node"]
    assert [n["node_type"] for n in summary["nodes"]] == ["standard", "endpoint"]
    assert summary["endpoint"] == summary["nodes"][1]["id"] and ID.match(summary["endpoint"])
    assert summary["url"] == f"{server.url}/v0/pipes/cltv_summary.json"
    # Tinybird's timestamps, with microseconds (`tb` prints them without the last 7 characters)
    for value in (summary["created_at"], summary["updated_at"], summary["nodes"][0]["updated_at"]):
        assert dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f")
    materialized = listed["customers_latest"]
    assert materialized["endpoint"] is None and materialized["url"] is None
    assert "dependencies" not in materialized["nodes"][0]  # only with dependencies=true


def test_a_materialized_node_names_its_target_datasource_by_the_data_sources_api_id(server):
    datasources = get(server, "/v0/datasources").json()["datasources"]
    ids = {d["id"]: d["name"] for d in datasources}
    for pipe in pipes(server, dependencies="true", node_attrs="name,materialized,dependencies"):
        if pipe["name"] in MATERIALIZATIONS:
            (node,) = pipe["nodes"]
            assert ids[node["materialized"]] == MATERIALIZATIONS[pipe["name"]]
            assert node["dependencies"]  # the datasource it reads
        else:
            assert all(node["materialized"] is None for node in pipe["nodes"])


def test_attrs_and_node_attrs_keep_only_what_is_asked(server):
    listed = pipes(server, attrs="name,updated_at,endpoint,url", node_attrs="name", dependencies="false")
    assert {tuple(sorted(p)) for p in listed} == {("endpoint", "name", "nodes", "updated_at", "url")}
    assert {tuple(n) for p in listed for n in p["nodes"]} == {("name",)}
    # tb sends empty attrs for "everything"
    assert "description" in pipes(server, attrs="", node_attrs="")[0]


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({"attrs": "name,bogus"}, "Unknown attribute 'bogus' in 'attrs'"),
        ({"node_attrs": "sql,x,y"}, "Unknown attributes 'x', 'y' in 'node_attrs'"),
    ],
)
def test_unknown_attributes_are_refused_naming_them(server, params, phrase):
    response = get(server, "/v0/pipes", **params)
    assert response.status_code == 400 and phrase in response.json()["error"]


def test_a_read_token_sees_and_reads_only_its_pipes(server):
    read = token(server, "customer_api_read")
    assert {p["name"] for p in pipes(server, read)} == set(ENDPOINTS)
    assert get(server, "/v0/pipes/cltv_summary", read).status_code == 200
    refused = get(server, "/v0/pipes/customers_latest", read)
    assert refused.status_code == 403 and "customers_latest" in refused.json()["error"]
    assert get(server, "/v1/pipes/customers_latest.pipe", read).status_code == 403
    # an append token reads no pipe: it lists none
    assert pipes(server, token(server, "customer_events_append")) == []
    assert get(server, "/v0/pipes", "wrong").status_code == 403


def test_one_pipe_by_name_or_id_and_its_datafile(server):
    by_name = get(server, "/v0/pipes/customers_latest").json()
    assert by_name["type"] == "materialized" and by_name["nodes"][0]["node_type"] == "materialized"
    assert get(server, f"/v0/pipes/{by_name['id']}").json() == by_name
    missing = get(server, "/v0/pipes/nope")
    assert missing.status_code == 404 and "'nope'" in missing.json()["error"]
    datafile = get(server, "/v1/pipes/cltv_summary.pipe")
    assert datafile.status_code == 200 and datafile.headers["Content-Type"] == "text/plain"
    assert "TYPE ENDPOINT" in datafile.text and 'TOKEN "customer_api_read" READ' in datafile.text
    assert get(server, "/v1/pipes/nope.pipe").status_code == 404


def test_the_example_url_calls_the_endpoint_with_the_given_token(server):
    read = token(server, "customer_api_read")
    response = get(server, "/examples/query.http", read, pipe="cltv_summary", format="json", q="")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/plain"
    assert response.text == f"{server.url}/v0/pipes/cltv_summary.json?token={read}"
    answer = requests.get(response.text, timeout=30).json()
    assert answer["data"][0]["customers"] == 1
    assert get(server, "/examples/query.http", read, pipe="customers_latest").status_code == 403
    assert get(server, "/examples/query.http", pipe="nope").status_code == 404
    no_pipe = get(server, "/examples/query.http")
    assert no_pipe.status_code == 400 and "'pipe'" in no_pipe.json()["error"]


def stats_rows(server, query: str, expected: int) -> list[dict]:
    """Rows of a service datasource query, once `expected` of them are there (writes lag by about a second)."""
    log = server.service.requests
    deadline = time.monotonic() + 10
    while True:
        log.flush()  # the request is recorded when answered, which may follow the client's read by a moment
        response = get(server, "/v0/sql", q=query)
        assert response.status_code == 200, response.text
        rows = response.json()["data"]
        if len(rows) >= expected:
            return rows
        assert time.monotonic() < deadline, f"expected {expected} rows, got {rows}"
        time.sleep(0.05)


def test_endpoint_calls_are_recorded_in_the_service_datasources(start_server):
    server = start_server()
    other = start_server()  # another workspace over the same engine: it must not see these calls
    read = token(server, "customer_api_read")
    posted = requests.post(f"{server.url}/v0/events?name=customers&wait=true", data=CUSTOMER, headers=server.headers())
    assert posted.status_code == 200
    assert get(server, "/v0/pipes/customer_segment_lookup.json", read, customer_id="cust123").status_code == 200
    assert get(server, "/v0/pipes/customer_segment_lookup.csv", customer_id="cust123").status_code == 200
    assert get(server, "/v0/pipes/customer_segments_summary.json", min_age="abc").status_code == 400
    assert get(server, "/v0/pipes/nope.json").status_code == 404  # no such pipe: nothing to record

    rows = stats_rows(
        server,
        "SELECT pipe_id, pipe_name, status_code, error, read_rows, read_bytes, result_rows, token_name, "
        "parameters, method, duration, url FROM tinybird.pipe_stats_rt ORDER BY status_code, token_name",
        3,
    )
    ids = {p["name"]: p["id"] for p in pipes(server)}
    assert [(r["pipe_name"], r["status_code"], r["error"], r["result_rows"], r["token_name"]) for r in rows] == [
        ("customer_segment_lookup", 200, 0, 1, ADMIN),
        ("customer_segment_lookup", 200, 0, 1, "customer_api_read"),
        ("customer_segments_summary", 400, 1, 0, ADMIN),
    ]
    assert all(r["pipe_id"] == ids[r["pipe_name"]] for r in rows)
    assert rows[0]["read_rows"] >= 1 and rows[0]["read_bytes"] > 0  # what the query read from its tables
    assert rows[0]["parameters"] == {"customer_id": "cust123"} and rows[0]["method"] == "GET"
    assert all(0 < r["duration"] < 30 for r in rows)
    assert all("token=***" in r["url"] and read not in r["url"] for r in rows)

    # what `tb endpoint stats` asks, per day
    daily = stats_rows(
        server,
        "SELECT pipe_id id, sumIf(view_count, date > now() - interval 7 day) requests, "
        "sumIf(error_count, date > now() - interval 7 day) errors, "
        "avgMergeIf(avg_duration_state, date > now() - interval 7 day) latency "
        f"FROM tinybird.pipe_stats WHERE pipe_id IN ('{ids['customer_segment_lookup']}', "
        f"'{ids['customer_segments_summary']}') GROUP BY pipe_id ORDER BY requests DESC FORMAT JSON",
        2,
    )
    assert [(d["id"], d["requests"], d["errors"]) for d in daily] == [
        (ids["customer_segment_lookup"], 2, 0),
        (ids["customer_segments_summary"], 1, 1),
    ]
    assert daily[0]["latency"] == pytest.approx((rows[0]["duration"] + rows[1]["duration"]) / 2, rel=1e-3)

    assert stats_rows(other, "SELECT count() AS n FROM tinybird.pipe_stats_rt", 1) == [{"n": 0}]


def test_service_datasources_need_the_admin_token_and_other_databases_stay_unknown(server):
    refused = get(server, "/v0/sql", token(server, "customer_api_read"), q="SELECT count() FROM tinybird.pipe_stats")
    assert refused.status_code == 403 and "tinybird.pipe_stats" in refused.json()["error"]
    unknown = get(server, "/v0/sql", q="SELECT count() FROM tinybird.datasources_ops_log")
    assert unknown.status_code == 404 and "tinybird.datasources_ops_log" in unknown.json()["error"]
    internal = get(server, "/v0/sql", q=f"SELECT count() FROM {service_datasources.DATABASE}.pipe_stats_rt")
    assert internal.status_code == 404


def test_a_service_datasource_name_in_a_string_or_comment_is_left_alone(server):
    query = (
        "SELECT 'tinybird.pipe_stats' AS text, count() AS n FROM `tinybird`.`pipe_stats_rt` "
        "WHERE pipe_name != 'tinybird.pipe_stats_rt' /* tinybird.pipe_stats */ FORMAT JSON"
    )
    response = get(server, "/v0/sql", q=query)
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["text"] == "tinybird.pipe_stats"


def test_without_the_tables_a_service_datasource_reads_as_empty(project, engine):
    sql = service_datasources.subquery("tinybird.pipe_stats", "db", tables_exist=False)
    assert sql.startswith("SELECT date, pipe_id, pipe_name, view_count") and "FROM null('date Date" in sql
    assert service_datasources.subquery("tinybird.pipe_stats", "db", tables_exist=True).endswith(
        f"FROM {service_datasources.DATABASE}.pipe_stats WHERE workspace = 'db'"
    )
    # a reader outside a server (tbkit check's) reads them as empty, whatever the engine holds
    reader = Reader(Workspace(engine, "no_such_workspace", project))
    answer = json.loads(reader.sql("SELECT count() AS n FROM tinybird.pipe_stats_rt"))
    assert answer["data"] == [{"n": 0}]


def test_an_endpoint_answer_carries_no_etag_and_is_never_a_304(server):
    response = get(server, "/v0/pipes/customer_cltv.json", customer_id="cust123")
    assert response.status_code == 200 and response.json()["data"]
    assert "Etag" not in response.headers
    again = requests.get(
        f"{server.url}/v0/pipes/customer_cltv.json",
        params={"customer_id": "cust123"},
        headers={**server.headers(), "If-None-Match": '"*"'},
        timeout=30,
    )
    assert again.status_code == 200 and again.json()["data"] == response.json()["data"]


def test_an_endpoint_answer_says_the_time_it_took_in_the_server(server):
    started = time.perf_counter()
    response = get(server, "/v0/pipes/customer_cltv.json", customer_id="cust123")
    round_trip_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200 and response.json()["data"][0]["customer_id"] == "cust123"
    name, _, duration = response.headers["Server-Timing"].partition(";dur=")
    assert name == "engine" and 0 < float(duration) < round_trip_ms
    assert response.headers["Access-Control-Allow-Origin"] == "*" and response.headers["Date"].endswith(" GMT")
    assert int(response.headers["Content-Length"]) == len(response.content)
    refused = get(server, "/v0/pipes/customer_cltv.json", token="not-a-token", customer_id="cust123")
    assert refused.status_code == 403 and "Server-Timing" not in refused.headers
    assert refused.json() == {"error": "Invalid token"}


def test_an_endpoint_is_called_with_get_or_post_only(server):
    url = f"{server.url}/v0/pipes/customer_cltv.json"
    head = requests.head(url, params={"token": server.token}, timeout=30)
    assert (head.status_code, head.content) == (405, b"")
    put = requests.put(url, params={"token": server.token}, timeout=30)
    assert (put.status_code, put.json()) == (405, {"error": "Method Not Allowed"})
    posted = requests.post(url, params={"token": server.token}, data={"customer_id": "cust123"}, timeout=30)
    assert posted.status_code == 200 and posted.json()["data"][0]["customer_id"] == "cust123"


def test_a_fast_endpoint_is_answered_on_the_event_loop_only_when_nothing_else_is_in_flight(server, monkeypatch):
    import threading

    from tbkit.server import service as view

    workspace = server.service.main.workspace
    reader = server.service.main.reader
    real = reader.call_endpoint
    threads: list[str] = []

    def call_endpoint(*args):
        threads.append(threading.current_thread().name)
        return real(*args)

    times = view.EngineTimes()
    monkeypatch.setattr(server.service, "engine_times", times)
    monkeypatch.setattr(reader, "call_endpoint", call_endpoint)

    def answered_on() -> str:
        response = get(server, "/v0/pipes/customer_cltv.json", customer_id="cust123")
        assert response.status_code == 200 and response.json()["data"][0]["customer_id"] == "cust123"
        return threads[-1]

    assert answered_on().startswith("tbkit_")  # not known yet: the thread pool
    assert len(times._recent[(workspace.name, "customer_cltv")]) == 1  # ... which timed it
    times._recent.clear()
    for _ in range(view.MIN_CALLS):  # known fast (however slow the first calls of this server were)
        times.add(workspace.name, "customer_cltv", 0.001)
    assert answered_on() == "tbkit-server"  # alone: the event loop's thread
    server.service.in_flight += 1  # another request in flight: the thread pool
    try:
        assert answered_on().startswith("tbkit_")
    finally:
        server.service.in_flight -= 1
    monkeypatch.setattr(view, "INLINE_BELOW", 0.0)  # recent calls slower than the bound: the thread pool
    assert answered_on().startswith("tbkit_")
