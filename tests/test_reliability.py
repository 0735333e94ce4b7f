"""Hostile input against a real `tbkit serve`: fuzzed NDJSON, injection, writes through /v0/sql, limits, auth.

Figures (lines fuzzed, 5xx seen, the auth matrix) are written to reports/reliability/*.json for
docs/RELIABILITY.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbkit.errors import AuthError
from tbkit.project.datafiles import load_project
from tbkit.remote.client import TinybirdClient
from tbkit.server.workspaces import registry as workspaces_module

from . import ROOT
from .serving import InProcessServer, ServerProcess

PROJECT = load_project(ROOT / "tinybird")
LANDING = ["customers", "customer_events", "customer_transactions", "customer_demographics"]
REPORTS = ROOT / "reports" / "reliability"


def report(name: str, figures: dict) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    running = InProcessServer(engine, tmp_path_factory.mktemp("reliability") / "data").start()
    yield running
    running.stop()


def sql(server, q: str) -> list[dict]:
    response = requests.get(f"{server.url}/v0/sql", params={"q": q, "token": server.token}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["data"]


# -- fuzzed NDJSON -------------------------------------------------------------------------------------

HUGE = "x" * 200_000
JUNK = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(["2023-02-30 00:00:00", "9999-12-31 23:59:59", "1969-12-31 23:59:59", "2025-13-01", "NaN"]),
    st.sampled_from([-1, 256, 1e308, -1e308, 2**64, "1e400", "inf"]),
)


def valid_value(column_type: str):
    if column_type == "UInt8":
        return st.integers(0, 255)
    if column_type == "Float64":
        return st.floats(-1e12, 1e12, allow_nan=False)
    if column_type == "DateTime":
        # within DateTime's range; moving a generated 29 February to another year would not be a date
        bounds = {"min_value": dt.datetime(1971, 1, 1), "max_value": dt.datetime(2100, 12, 31)}
        return st.datetimes(**bounds).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
    return st.text(max_size=40)


def row(datasource: str):
    """A JSON object for the datasource: each column valid, wrong, missing, or absurd; extra keys too."""
    columns = PROJECT.datasources[datasource].columns
    fields = {
        c.name: st.one_of(valid_value(c.type), JUNK, st.just(...))  # Ellipsis: leave the key out
        for c in columns
    }
    extras = st.dictionaries(st.text(min_size=1, max_size=8), JUNK, max_size=3)
    return st.fixed_dictionaries(fields).flatmap(
        lambda values: extras.map(lambda more: {**more, **{k: v for k, v in values.items() if v is not ...}})
    )


def deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def line(datasource: str):
    """One NDJSON line as bytes: a row, or something that is not one."""
    encoded = row(datasource).flatmap(
        lambda obj: st.booleans().map(lambda ascii_only: json.dumps(obj, ensure_ascii=ascii_only).encode())
    )
    broken = st.one_of(
        st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
        st.text(max_size=60).map(lambda t: t.replace("\n", "").encode()),
        encoded.map(lambda b: b[: max(1, len(b) // 2)]),
        st.sampled_from([b"", b"   ", b"\t", b"{}", b"[]", b"null", b'"text"', b"\xff\xfe{}", deep(50), deep(5000)]),
        st.sampled_from([b'{"customer_id": "\xc3\x28"}', b'{"customer_id": "a\xed\xa0\x80b"}', b"{" * 3000]),
        row(datasource).map(lambda obj: json.dumps({**obj, "customer_id": HUGE}).encode()),
    )
    with_cr = st.tuples(st.one_of(encoded, encoded, broken), st.booleans())
    return with_cr.map(lambda pair: pair[0] + (b"\r" if pair[1] else b""))


def is_blank(raw: bytes) -> bool:
    """The server's rule: a line is skipped when, without trailing CRs, it holds only spaces and tabs."""
    return raw.rstrip(b"\r").replace(b"\t", b" ").strip(b" ") == b""


FUZZED: Counter = Counter()
SERVER_ERRORS: Counter = Counter()


@pytest.mark.parametrize("datasource", LANDING)
def test_fuzzed_ndjson_never_errors_and_every_row_is_accounted_for(server, datasource):
    columns = {c.name for c in PROJECT.datasources[datasource].columns}
    countable = PROJECT.datasources[datasource].engine == "MergeTree"

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(line(datasource), min_size=25, max_size=60))
    def send(lines):
        body = b"\n".join(lines)
        stored_before = sql(server, f"SELECT count() AS n FROM {datasource}")[0]["n"] if countable else 0
        response = requests.post(
            f"{server.url}/v0/events?name={datasource}&wait=true",
            data=body,
            headers={**server.headers(), "Content-Type": "application/x-ndjson"},
            timeout=120,
        )
        if response.status_code >= 500:
            SERVER_ERRORS[datasource] += 1
        assert response.status_code == 200, response.text
        result = response.json()
        sent = [raw.rstrip(b"\r") for raw in body.split(b"\n") if not is_blank(raw)]
        FUZZED[datasource] += len(sent)
        assert result["successful_rows"] + result["quarantined_rows"] == len(sent)
        if countable:  # a ReplacingMergeTree (customers) collapses rows as it merges, so its count moves
            stored_after = sql(server, f"SELECT count() AS n FROM {datasource}")[0]["n"]
            assert stored_after == stored_before + result["successful_rows"]
        import_id = response.headers["X-Tbkit-Import-Id"]
        quarantined = sql(
            server,
            f"SELECT base64Encode(c__line) AS line, c__error_column, c__error FROM {datasource}_quarantine "
            f"WHERE c__import_id = '{import_id}'",
        )
        assert len(quarantined) == result["quarantined_rows"]
        originals = Counter(base64.b64encode(raw).decode() for raw in sent)
        for record in quarantined:
            assert originals[record["line"]] > 0, "a quarantined row must keep its original text"
            originals[record["line"]] -= 1
            assert record["c__error"]
            assert set(record["c__error_column"]) <= columns
            for column, error in zip(record["c__error_column"], record["c__error"], strict=False):
                assert f"'{column}'" in error

    send()
    assert FUZZED[datasource] >= 1000
    assert SERVER_ERRORS[datasource] == 0
    report(f"fuzz_{datasource}", {"lines": FUZZED[datasource], "server_errors": SERVER_ERRORS[datasource]})


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Content-Type": "application/xml"}, b"<customer/>"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
        ({"Content-Type": "text/html"}, b"<p>"),
        ({"Content-Encoding": "gzip"}, b'{"customer_id": "not gzip"}'),
        ({"Content-Encoding": "gzip"}, b"\x1f\x8b\x08\x00truncated"),
    ],
)
def test_bodies_that_are_not_ndjson_are_400_and_store_nothing(server, headers, body):
    before = (
        sql(server, "SELECT count() AS n FROM customers")[0]["n"]
        + sql(server, "SELECT count() AS n FROM customers_quarantine")[0]["n"]
    )
    response = requests.post(
        f"{server.url}/v0/events?name=customers&wait=true", data=body, headers={**server.headers(), **headers}
    )
    assert response.status_code == 400
    after = (
        sql(server, "SELECT count() AS n FROM customers")[0]["n"]
        + sql(server, "SELECT count() AS n FROM customers_quarantine")[0]["n"]
    )
    assert after == before


# -- hostile parameters --------------------------------------------------------------------------------

DANGER = st.sampled_from(
    ["'", "\\", "\\'", "--", "/*", "*/", ";", " UNION SELECT * FROM customers", " OR 1=1", "%", "\x00"]
)
IDS = st.sampled_from(["cust_001", "CUST_002", " cust_003 ", "cust123", ""])


def ascii_lower(text: str) -> str:
    """ClickHouse's lower(): ASCII letters only."""
    return "".join(c.lower() if c.isascii() else c for c in text)


@pytest.fixture(scope="module")
def seeded_server(server):
    api = TinybirdClient(server.url, server.token)
    for name in LANDING:
        api.append_ndjson(name, ROOT / "fixtures" / f"{name}.ndjson")
    return server


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(st.one_of(IDS, DANGER, st.text(max_size=8)), min_size=1, max_size=5).map("".join))
def test_injection_through_string_parameters_returns_only_that_id_or_400(seeded_server, attack):
    server = seeded_server
    expected = ascii_lower(attack.strip(" "))
    for endpoint in ("customer_segment_lookup", "customer_cltv", "customer_engagement_analysis"):
        response = requests.get(
            f"{server.url}/v0/pipes/{endpoint}.json",
            params={"customer_id": attack, "token": server.token},
            timeout=60,
        )
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert {row["customer_id"] for row in response.json()["data"]} <= {expected}
    summary = requests.get(
        f"{server.url}/v0/pipes/customer_segments_summary.json",
        params={"location": attack, "token": server.token},
        timeout=60,
    )
    assert summary.status_code in (200, 400)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO customers (customer_id) VALUES ('x')",
        "ALTER TABLE customers DELETE WHERE 1",
        "DROP TABLE customers",
        "TRUNCATE TABLE customers",
        "CREATE TABLE x (a Int8) ENGINE = Memory",
        "OPTIMIZE TABLE customers FINAL",
        "SYSTEM STOP MERGES",
        "KILL QUERY WHERE 1",
        "SET readonly = 0",
        "RENAME TABLE customers TO c2",
        "DETACH TABLE customers",
        "GRANT ALL ON *.* TO default",
        "SELECT 1; DROP TABLE customers",
        "SELECT * FROM customers INTO OUTFILE '/tmp/tbkit-leak.csv'",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
        "SELECT * FROM system.tables",
        "SELECT * FROM main.customers",
        "WITH x AS (SELECT 1) INSERT INTO customers SELECT * FROM customers",
        "SELECT 1 SETTINGS readonly = 0",
        "EXPLAIN SELECT 1",
    ],
)
def test_sql_refuses_every_statement_that_is_not_a_read(seeded_server, statement):
    server = seeded_server
    # customers is a ReplacingMergeTree, whose count() falls as parts merge: FINAL counts what merges keep.
    before = sql(server, "SELECT count() AS n FROM customers FINAL")
    response = requests.get(f"{server.url}/v0/sql", params={"q": statement, "token": server.token}, timeout=60)
    assert 400 <= response.status_code < 500, (statement, response.status_code, response.text)
    assert "error" in response.json()
    assert sql(server, "SELECT count() AS n FROM customers FINAL") == before
    assert not Path("/tmp/tbkit-leak.csv").exists()


# -- auth ----------------------------------------------------------------------------------------------


def route_calls(server):
    """Every route with a request that would succeed for the admin token."""
    event = json.dumps({"customer_id": "auth_1", "age": 30, "location": "Austin"})
    return {
        "GET /v0/pipes/customer_segment_lookup.json": (
            "GET",
            "/v0/pipes/customer_segment_lookup.json?customer_id=cust_001",
            None,
        ),
        "GET /v0/pipes/cltv_summary.json": ("GET", "/v0/pipes/cltv_summary.json", None),
        "GET /v0/pipes/cltv_summary": ("GET", "/v0/pipes/cltv_summary", None),
        "GET /v0/pipes/openapi.json": ("GET", "/v0/pipes/openapi.json", None),
        "POST /v0/events customer_demographics": ("POST", "/v0/events?name=customer_demographics", event),
        "POST /v0/datasources customer_demographics": (
            "POST",
            "/v0/datasources?name=customer_demographics&format=ndjson",
            event,
        ),
        "GET /v0/datasources/customer_demographics": ("GET", "/v0/datasources/customer_demographics", None),
        "GET /v0/datasources": ("GET", "/v0/datasources", None),
        "GET /v0/sql": ("GET", "/v0/sql?q=SELECT+count()+FROM+customers", None),
        "POST /v0/datasources/customer_demographics/truncate": (
            "POST",
            "/v0/datasources/customer_demographics/truncate",
            None,
        ),
        "GET /v0/health": ("GET", "/v0/health", None),
    }


# Expected status per route for each kind of token; None = no token at all.
EXPECTED = {
    #                                                none  wrong admin read append other
    "GET /v0/pipes/customer_segment_lookup.json": (403, 403, 200, 200, 403, 403),
    "GET /v0/pipes/cltv_summary.json": (403, 403, 200, 200, 403, 200),
    "GET /v0/pipes/cltv_summary": (403, 403, 200, 200, 403, 200),
    "GET /v0/pipes/openapi.json": (403, 403, 200, 200, 200, 200),
    "POST /v0/events customer_demographics": (403, 403, 202, 403, 202, 403),
    "POST /v0/datasources customer_demographics": (403, 403, 200, 403, 200, 403),
    "GET /v0/datasources/customer_demographics": (403, 403, 200, 403, 200, 403),
    "GET /v0/datasources": (403, 403, 200, 403, 403, 403),
    "GET /v0/sql": (403, 403, 200, 403, 403, 403),
    "POST /v0/datasources/customer_demographics/truncate": (403, 403, 200, 403, 403, 403),
    "GET /v0/health": (200, 200, 200, 200, 200, 200),
}
TOKEN_KINDS = ("none", "wrong", "admin", "read", "append", "other pipe")


def test_auth_matrix_every_route_and_every_kind_of_token(server):
    saved = json.loads((server.data_dir / "tokens.json").read_text())
    values = {
        "none": None,
        "wrong": "p.not-a-real-token",
        "admin": server.token,
        "read": saved["tokens"]["customer_api_read"],
        "append": saved["tokens"]["customer_demographics_append"],
        "other pipe": saved["tokens"]["cltv_dashboard"],
    }
    matrix = {}
    for route, (method, path, body) in route_calls(server).items():
        row = {}
        for kind, value in values.items():
            headers = {"Authorization": f"Bearer {value}"} if value else {}
            if route.startswith("POST /v0/datasources customer"):
                response = requests.post(server.url + path, files={"ndjson": ("d.ndjson", body)}, headers=headers)
            else:
                response = requests.request(method, server.url + path, data=body, headers=headers, timeout=60)
            row[kind] = response.status_code
            for secret in values.values():
                if secret:
                    assert secret not in response.text, f"{route} leaked a token in its answer"
        matrix[route] = row
    expected = {route: dict(zip(TOKEN_KINDS, statuses, strict=True)) for route, statuses in EXPECTED.items()}
    for route, row in expected.items():
        assert matrix[route] == row, route
    report("auth_matrix", matrix)


def test_a_token_is_found_by_its_digest_and_confirmed_in_constant_time(monkeypatch, start_server):
    registry = start_server(local_api=True).service.registry
    every = [t for tenant in registry.tenants.values() for t in tenant.tokens.tokens] + registry.user_tokens
    assert len(every) > 2  # the Local API's user tokens too
    calls = []
    real = workspaces_module.hmac.compare_digest
    monkeypatch.setattr(workspaces_module.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for token in every:  # each one is found, the Local API's too, with one constant-time comparison
        tenant, found = registry.authenticate(token.value)
        assert found is token
    assert len(calls) == len(every)
    calls.clear()
    with pytest.raises(AuthError, match="Invalid token"):  # no digest matches: nothing of a secret is compared
        registry.authenticate("nope")
    assert calls == []


def test_tokens_never_reach_the_server_log(server):
    saved = json.loads((server.data_dir / "tokens.json").read_text())
    secrets = [server.token, *saved["tokens"].values(), "p.a-wrong-token-for-the-log"]
    for secret in secrets:
        requests.get(f"{server.url}/v0/pipes/cltv_summary.json?token={secret}")
        requests.get(f"{server.url}/v0/pipes/nope.json", headers={"Authorization": f"Bearer {secret}"})
        requests.post(f"{server.url}/v0/events?name=customers&token={secret}", data="{")
    log = server.log_path.read_text()
    assert "GET /v0/pipes/cltv_summary.json?token=***" in log  # requests are logged, tokens redacted
    for secret in secrets:
        assert secret not in log


# -- limits --------------------------------------------------------------------------------------------

SLOW = "SELECT sum(sipHash64(number)) FROM numbers(20000000000)"


def wait_for_a_request_in_flight(running, deadline: float = 30.0) -> None:
    """Poll the server's health until a request is being served (or fail after the deadline)."""
    limit = time.monotonic() + deadline
    while requests.get(f"{running.url}/v0/health").json()["requests_in_flight"] < 1:
        assert time.monotonic() < limit, "the slow query never started"
        time.sleep(0.01)


def test_a_slow_query_is_cancelled_at_the_timeout_and_appends_go_on(start_server):
    running = start_server(query_timeout=1)
    try:
        outcome = {}

        def slow():
            outcome["slow"] = requests.get(f"{running.url}/v0/sql", params={"q": SLOW, "token": running.token})

        thread = threading.Thread(target=slow)
        thread.start()
        wait_for_a_request_in_flight(running)
        event = '{"customer_id":"x","age":1,"location":"y"}'
        appended = requests.post(
            f"{running.url}/v0/events?name=customer_demographics&wait=true", data=event, headers=running.headers()
        )
        assert appended.status_code == 200
        assert "slow" not in outcome  # the append was answered while the slow query still ran
        thread.join(timeout=120)
        assert outcome["slow"].status_code == 408
        assert "limit and was cancelled" in outcome["slow"].json()["error"]
    finally:
        running.stop()


def test_too_many_concurrent_requests_get_429_and_the_client_honours_retry_after(start_server):
    running = start_server(max_concurrency=1, query_timeout=4)
    try:
        thread = threading.Thread(
            target=requests.get, args=(f"{running.url}/v0/sql",), kwargs={"params": {"q": SLOW, "token": running.token}}
        )
        thread.start()
        wait_for_a_request_in_flight(running)
        refused = requests.get(f"{running.url}/v0/pipes/cltv_summary.json", params={"token": running.token})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        client = TinybirdClient(running.url, running.token, retry_deadline=60)
        status, body = client.query_pipe("cltv_summary")  # waits out the slow query, as Retry-After says
        assert status == 200, body
        assert body["data"][0]["customers"] == 0, body
        thread.join(timeout=120)
    finally:
        running.stop()


@pytest.fixture(scope="module")
def serve_process(tmp_path_factory):
    running = ServerProcess(tmp_path_factory.mktemp("parser") / "data").start()
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("query", "phrase"),
    [
        ("SELECT " + "+".join(["1"] * 25_000), "parse depth"),  # crashed the process in Tinybird's parser before
        ("SELECT " + "(" * 100_000 + "1" + ")" * 100_000, "[Error]"),
        ("SELECT '" + "x" * 300_000 + "'", "max_query_size"),
    ],
    ids=["25k-terms", "100k-parentheses", "300KB"],
)
def test_huge_or_deeply_nested_queries_are_refused_and_the_server_lives(serve_process, query, phrase):
    server = serve_process  # a real process: the failure this guards against is the process crashing
    answer = requests.post(f"{server.url}/v0/sql", data={"q": query}, headers=server.headers(), timeout=120)
    assert answer.status_code == 400, answer.text[:300]
    assert phrase in answer.json()["error"]
    assert requests.get(f"{server.url}/v0/health", timeout=10).json()["status"] == "ok"
