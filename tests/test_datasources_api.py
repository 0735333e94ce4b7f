"""The Data Sources API in-process: listing, append and replace (v0 and v1), delete rows, truncate, Analyze and
Dependencies, with their statuses, shapes, effects on data and materialized targets, and token scopes."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

TRANSACTIONS = [
    {"customer_id": "c1", "transaction_date": "2024-01-01 10:00:00", "transaction_amount": 10.0},
    {"customer_id": "c1", "transaction_date": "2024-02-01 10:00:00", "transaction_amount": 200.0},
    {"customer_id": "c2", "transaction_date": "2024-03-01 10:00:00", "transaction_amount": 300.0},
]


def ndjson(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def sql(server, query: str) -> list[dict]:
    response = requests.get(f"{server.url}/v0/sql", params={"q": query + " FORMAT JSON"}, headers=server.headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def token_named(server, name: str) -> str:
    return next(t.value for t in server.service.main.tokens.tokens if t.name == name)


def post(server, path: str, token: str | None = None, headers: dict | None = None, **kwargs) -> requests.Response:
    headers = {**server.headers(token), **(headers or {})}
    return requests.post(f"{server.url}{path}", headers=headers, timeout=60, **kwargs)


def cltv(server) -> list[dict]:
    return sql(
        server,
        "SELECT customer_id, sum(cltv) AS cltv, sum(transactions) AS n FROM customer_cltv_mv "
        "GROUP BY customer_id HAVING n > 0 ORDER BY customer_id",
    )


@pytest.fixture
def server(start_server):
    running = start_server()
    response = post(running, "/v1/datasources/customer_transactions/append?format=ndjson", data=ndjson(TRANSACTIONS))
    assert response.status_code == 200, response.text
    return running


def test_list_has_tinybird_shape_with_statistics_and_times(server):
    response = requests.get(f"{server.url}/v0/datasources", params={"attrs": "name"}, headers=server.headers())
    assert response.status_code == 200
    listed = {d["name"]: d for d in response.json()["datasources"]}
    assert set(listed) == set(server.service.main.project.datasources)
    transactions = listed["customer_transactions"]
    assert transactions["id"].startswith("t_") and len(transactions["id"]) == 34
    assert transactions["statistics"]["row_count"] == 3 and transactions["statistics"]["bytes"] > 0
    assert listed["customer_cltv_mv"]["statistics"]["row_count"] >= 1  # fed by the materialization
    for field in ("created_at", "updated_at"):
        assert len(transactions[field]) == 26 and transactions[field][-7] == "."  # tb prints [:-7]
    assert transactions["engine"]["engine"] == "MergeTree"
    assert [c["name"] for c in transactions["columns"]][:3] == ["customer_id", "transaction_date", "transaction_amount"]
    assert transactions["used_by"] == [{"id": "customer_cltv_transactions", "name": "customer_cltv_transactions"}]
    # One datasource, by name or by id.
    one = requests.get(f"{server.url}/v0/datasources/{transactions['id']}", headers=server.headers()).json()
    assert one["name"] == "customer_transactions" and one["statistics"]["row_count"] == 3


def test_list_scopes(server):
    read_pipe = token_named(server, "customer_api_read")
    assert requests.get(f"{server.url}/v0/datasources", headers=server.headers(read_pipe)).status_code == 403
    unknown = requests.get(f"{server.url}/v0/datasources/nope", headers=server.headers())
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]


@pytest.mark.parametrize(
    ("datasource", "row"),
    [
        (
            "customer_cltv_mv",
            {"customer_id": "x", "cltv": 1.5, "transactions": 2, "first_transaction_at": "2024-01-01 00:00:00"},
        ),
        (
            "customer_engagement_mv",
            {
                "customer_id": "x",
                "events": 3,
                "event_types": ["a", "b"],
                "event_value": 2.5,
                "first_event_at": "2024-01-01 00:00:00",
                "last_event_at": "2024-01-02 00:00:00",
            },
        ),
        (
            "customers_latest_mv",
            {
                "customer_id": "x",
                "name": "n",
                "email": "e",
                "age": 3,
                "gender": "g",
                "location": "l",
                "signup_date": "2024-01-01 00:00:00",
                "lifetime_value": 1,
                "updated_at": "2024-01-01 00:00:00",
            },
        ),
        (
            "customer_events_by_customer_mv",
            {"customer_id": "x", "timestamp": "2024-01-01 00:00:00", "event_type": "t", "event_value": 1},
        ),
    ],
)
def test_events_api_appends_to_materialized_targets(start_server, datasource, row):
    server = start_server()
    response = post(server, f"/v0/events?name={datasource}&wait=true", data=json.dumps(row))
    assert response.status_code == 200, response.text
    assert response.json() == {"successful_rows": 1, "quarantined_rows": 0}
    assert sql(server, f"SELECT count() AS n FROM {datasource} WHERE customer_id = 'x'") == [{"n": 1}]


def test_aggregate_columns_take_null_and_quarantine_what_does_not_fit(start_server):
    server = start_server()
    rows = [
        {"customer_id": "a", "cltv": 1, "transactions": 1},  # Nullable aggregates may be missing
        {"customer_id": "b"},  # cltv and transactions are required
    ]
    response = post(server, "/v0/events?name=customer_cltv_mv&wait=true", data=ndjson(rows))
    assert response.json() == {"successful_rows": 1, "quarantined_rows": 1}
    stored = sql(server, "SELECT customer_id, location, first_transaction_at FROM customer_cltv_mv")
    assert stored == [{"customer_id": "a", "location": None, "first_transaction_at": None}]
    errors = sql(server, "SELECT c__error FROM customer_cltv_mv_quarantine")[0]["c__error"]
    assert any("'cltv'" in e for e in errors)


def test_v1_append_csv_gzip_and_job(server):
    csv = b"customer_id,transaction_date,transaction_amount\nc9,2024-05-01 00:00:00,5\n"
    response = post(
        server,
        "/v1/datasources/customer_transactions/append?format=csv",
        data=gzip.compress(csv),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["successful_rows"] == 1 and answer["job_url"].endswith(f"/v0/jobs/{answer['id']}")
    assert "error" not in answer  # tb raises on any `error` key
    job = requests.get(answer["job_url"], headers=server.headers()).json()
    assert job["status"] == "done"
    assert sql(server, "SELECT count() AS n FROM customer_transactions") == [{"n": 4}]


def test_full_replace_rebuilds_materialized_targets(server):
    before = cltv(server)
    assert before == [{"customer_id": "c1", "cltv": 210, "n": 2}, {"customer_id": "c2", "cltv": 300, "n": 1}]
    new = [{"customer_id": "c3", "transaction_date": "2024-04-01 00:00:00", "transaction_amount": 7}]
    response = post(server, "/v1/datasources/customer_transactions/replace?format=ndjson", data=ndjson(new))
    assert response.status_code == 200, response.text
    assert response.json()["successful_rows"] == 1
    assert sql(server, "SELECT customer_id FROM customer_transactions") == [{"customer_id": "c3"}]
    assert cltv(server) == [{"customer_id": "c3", "cltv": 7, "n": 1}]


def test_partial_replace_replaces_only_matching_rows(server):
    new = [
        {"customer_id": "c1", "transaction_date": "2024-02-01 10:00:00", "transaction_amount": 250.0},
        {"customer_id": "c4", "transaction_date": "2024-02-01 10:00:00", "transaction_amount": 1.0},  # no match
    ]
    response = post(
        server,
        "/v1/datasources/customer_transactions/replace",
        params={"format": "ndjson", "replace_condition": "transaction_amount > 100"},
        data=ndjson(new),
    )
    assert response.status_code == 200, response.text
    rows = sql(server, "SELECT customer_id, transaction_amount FROM customer_transactions ORDER BY transaction_amount")
    assert rows == [{"customer_id": "c1", "transaction_amount": 10}, {"customer_id": "c1", "transaction_amount": 250}]
    assert cltv(server) == [{"customer_id": "c1", "cltv": 260, "n": 2}]


def test_replace_with_bad_input_loses_nothing(server):
    bad = post(
        server,
        "/v1/datasources/customer_transactions/replace",
        params={"format": "ndjson", "replace_condition": "no_such_column = 1"},
        data=ndjson(TRANSACTIONS[:1]),
    )
    assert bad.status_code == 400 and "no_such_column" in bad.json()["error"]
    parquet = post(server, "/v1/datasources/customer_transactions/replace?format=parquet", data=b"PAR1")
    assert parquet.status_code == 400 and "parquet" in parquet.json()["error"]
    assert sql(server, "SELECT count() AS n FROM customer_transactions") == [{"n": 3}]


def test_v0_datasources_replace_mode(server):
    response = post(
        server,
        "/v0/datasources?name=customer_transactions&mode=replace&format=ndjson",
        files={"ndjson": ("t.ndjson", ndjson(TRANSACTIONS[:1]))},
    )
    assert response.status_code == 200, response.text
    assert sql(server, "SELECT count() AS n FROM customer_transactions") == [{"n": 1}]
    bad_mode = post(server, "/v0/datasources?name=customer_transactions&mode=create", data=b"{}")
    assert bad_mode.status_code == 400 and "mode" in bad_mode.json()["error"]


def test_delete_rows_is_a_done_job_and_does_not_cascade(server):
    dry = post(
        server,
        "/v0/datasources/customer_transactions/delete",
        data={"delete_condition": "customer_id = 'c1'", "dry_run": "true"},
    )
    assert dry.json() == {"rows_to_be_deleted": 2}
    response = post(
        server, "/v0/datasources/customer_transactions/delete", data={"delete_condition": "customer_id = 'c1'"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["job_id"] and answer["job_url"].endswith(answer["job_id"])
    job = requests.get(f"{server.url}/v0/jobs/{answer['job_id']}", headers=server.headers())
    assert job.status_code == 200 and job.json()["status"] == "done"
    assert sql(server, "SELECT customer_id FROM customer_transactions") == [{"customer_id": "c2"}]
    assert len(cltv(server)) == 2  # as Tinybird: deletes do not reach materialized targets
    lightweight = post(server, "/v1/datasources/customer_transactions/delete", data={"delete_condition": "1 = 1"})
    assert lightweight.json()["rows_affected"] == 1


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("", "delete_condition"),
        ("nope = 1", "nope"),
        ("customer_id IN (SELECT customer_id FROM customers)", "only refer to the columns"),
        ("1; DROP TABLE customers", "Invalid SQL condition"),
    ],
)
def test_delete_refuses_bad_conditions(server, condition, expected):
    response = post(server, "/v0/datasources/customer_transactions/delete", data={"delete_condition": condition})
    assert response.status_code == 400 and expected in response.json()["error"]
    assert sql(server, "SELECT count() AS n FROM customer_transactions") == [{"n": 3}]


def test_truncate_and_cascade_dependencies(server):
    deps = requests.get(
        f"{server.url}/v0/dependencies",
        params={"datasource": "customer_transactions", "check_for_partial_replace": "true", "recursive": "false"},
        headers=server.headers(),
    ).json()
    assert deps == {
        "dependencies": {"customer_cltv_mv": ["customer_cltv_locations", "customer_cltv_transactions"]},
        "incompatible_datasources": {},
    }
    assert post(server, "/v0/datasources/customer_transactions/truncate").status_code == 200
    assert sql(server, "SELECT count() AS n FROM customer_transactions") == [{"n": 0}]
    assert len(cltv(server)) == 2  # the target is truncated only when asked (--cascade)
    assert post(server, "/v0/datasources/customer_cltv_mv/truncate").status_code == 200
    assert cltv(server) == []


def test_scopes_of_writes(server):
    append = token_named(server, "customer_transactions_append")
    read_pipe = token_named(server, "customer_api_read")
    body = ndjson(TRANSACTIONS[:1])
    assert post(server, "/v1/datasources/customer_transactions/append", append, data=body).status_code == 200
    assert post(server, "/v1/datasources/customers/append", append, data=body).status_code == 403
    for path in (
        "/v1/datasources/customer_transactions/replace",
        "/v0/datasources/customer_transactions/truncate",
        "/v0/datasources/customer_transactions/delete?delete_condition=1%3D1",
        "/v0/analyze",
    ):
        for token in (append, read_pipe, "p.wrong"):
            assert post(server, path, token, data=body).status_code == 403, (path, token)
    assert sql(server, "SELECT count() AS n FROM customer_transactions") == [{"n": 4}]


def test_analyze_ndjson_and_csv(server):
    sample = b'{"id": 1, "at": "2024-01-01 00:00:00", "user": {"name": "a"}, "tags": ["x"]}\n{"id": 70000}\n{"id"'
    answer = post(server, "/v0/analyze", data=sample).json()  # tb sends the first MiB as the body
    columns = {c["name"]: c for c in answer["analysis"]["columns"]}
    assert columns["id"] == {"name": "id", "recommended_type": "Int32", "path": "$.id", "present_pct": 1}
    assert columns["at"]["recommended_type"] == "Nullable(DateTime)" and columns["at"]["present_pct"] == 0.5
    assert columns["user_name"]["path"] == "$.user.name"
    assert columns["tags"]["recommended_type"] == "Array(String)" and columns["tags"]["path"] == "$.tags[:]"
    assert answer["analysis"]["schema"].startswith("id Int32 `json:$.id`, at Nullable(DateTime) `json:$.at`")
    assert answer["preview"]["meta"][0] == {"name": "id", "type": "Int32"}
    csv = post(server, "/v0/analyze", files={"file": ("s.csv", b"a,b\n1,x\n2.5,\n")}).json()
    assert csv["analysis"]["schema"] == "a Float32, b Nullable(String)"
    assert csv["dialect"]["delimiter"] == "," and csv["dialect"]["has_header"] is True
    empty = post(server, "/v0/analyze", data=b"")
    assert empty.status_code == 400
