"""Oversized requests get an HTTP answer, never a connection closed without one: a request line over the head
limit is a 414, a header block a 431, a body over the body limit a 413, each with Tinybird's `{"error": ...}`
body; long parameters go through POST (JSON or form) to the endpoints and the Query API."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from tbkit.server.limits import HEAD_LIMIT

from .serving import InProcessServer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MAX_UPLOAD = 64 * 1024
BODY_LIMIT = MAX_UPLOAD + 1024 * 1024  # the server's body limit: the largest upload, plus room for multipart
LONG_ID = "c" * 100_000  # a customer id too long for a URL


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """A server with a small upload limit, and two customers: cust123 and one with a 100 KB id."""
    running = InProcessServer(engine, tmp_path_factory.mktemp("limits") / "data", max_upload_bytes=MAX_UPLOAD).start()
    for customer_id in ("cust123", LONG_ID):
        response = requests.post(
            f"{running.url}/v0/events?name=customers&wait=true",
            data=json.dumps(customer(customer_id)),
            headers=running.headers(),
        )
        assert response.status_code == 200, response.text
    yield running
    running.stop()


def customer(customer_id: str) -> dict:
    row = {"customer_id": customer_id, "name": "John Doe", "email": "j@example.com", "age": 35, "gender": "male"}
    row |= {"location": "New York", "signup_date": "2022-05-15 10:30:00", "lifetime_value": 750.5}
    return row | {"timestamp": "2023-10-01 12:00:00"}


def exchange(server, *parts: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send `parts` on a new connection, then read until the server closes it: status line, headers and body.

    A connection reset (the server closing without an answer, or over unread bytes) raises ConnectionResetError,
    and a connection closed without an answer fails the test.
    """
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
        for part in parts:
            sock.sendall(part)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received, "the connection was closed without an answer"
    return parse(received)


def parse(received: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, body[: int(headers["content-length"])]


def request_head(server, target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {urlsplit(server.url).netloc}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")


def assert_refused(answer: tuple[str, dict[str, str], bytes], status: str, *words: str) -> str:
    line, headers, body = answer
    assert line.split()[:2] == ["HTTP/1.1", status]
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    message = json.loads(body)["error"]
    for word in words:
        assert word in message
    return message


def test_a_100_kb_request_line_is_a_414_telling_to_post(server):
    target = "/v0/pipes/customer_segment_lookup.json?" + urlencode({"customer_id": LONG_ID, "token": server.token})
    message = assert_refused(exchange(server, request_head(server, target)), "414", "POST body")
    assert f"limit of {HEAD_LIMIT} bytes" in message and "/v0/pipes/<name>.json or /v0/sql" in message


def test_a_request_line_over_the_limit_by_any_length_is_a_414(server):
    for length in (HEAD_LIMIT + 1, 3 * 1024 * 1024):  # just over, and far over: the rest is read and discarded
        answer = exchange(server, request_head(server, "/v0/sql?q=" + "x" * length))
        assert_refused(answer, "414")


def test_a_64_kb_header_is_a_431(server):
    head = request_head(server, "/v0/health", "X-Big: " + "y" * HEAD_LIMIT)
    assert_refused(exchange(server, head), "431", f"limit of {HEAD_LIMIT} bytes")
    many = request_head(server, "/v0/health", *(f"X-Header-{i}: {'z' * 60}" for i in range(2000)))
    assert_refused(exchange(server, many), "431")


def test_a_long_url_through_requests_gets_the_414_not_a_connection_error(server):
    url = f"{server.url}/v0/pipes/customer_segment_lookup.json"
    response = requests.get(url, params={"customer_id": LONG_ID, "token": server.token}, timeout=60)
    assert response.status_code == 414 and "POST body" in response.json()["error"]


def test_a_kept_alive_connection_gets_the_414_after_a_normal_request(server):
    normal = request_head(server, f"/v0/health?pad={'p' * 2000}")
    oversized = request_head(server, "/v0/sql?q=" + "x" * (2 * HEAD_LIMIT))
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:
        sock.sendall(normal)
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < int(
            parse(received)[1]["content-length"]
        ):
            received += sock.recv(65536)
        assert parse(received)[0] == "HTTP/1.1 200 OK"
        sock.sendall(oversized)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert_refused(parse(received), "414")


def test_a_2_kb_request_and_a_60_kb_request_line_are_answered(server):
    url = f"{server.url}/v0/pipes/customer_segment_lookup.json"
    response = requests.get(url, params={"customer_id": "cust123", "pad": "p" * 2000, "token": server.token})
    assert response.status_code == 200 and response.json()["data"][0]["name"] == "John Doe"
    response = requests.get(url, params={"customer_id": "c" * 60_000, "token": server.token})
    assert response.status_code == 200 and response.json()["data"] == []


def test_a_body_over_the_limit_is_a_413_before_it_is_read(server):
    head = (
        f"POST /v0/events?name=customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Length: {BODY_LIMIT + 1}\r\n\r\n"
    ).encode()
    answer = exchange(server, head, b"{}\n" * ((BODY_LIMIT + 1) // 3) + b"\n" * ((BODY_LIMIT + 1) % 3))
    assert_refused(answer, "413", str(BODY_LIMIT + 1), f"limit of {BODY_LIMIT} bytes")
    # announced far larger than anything sent, and with Expect: 100-continue: refused at once, no 100 Continue
    head = head.replace(f"{BODY_LIMIT + 1}".encode(), b"10000000000").replace(
        b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"
    )
    assert_refused(exchange(server, head, b"x" * 100_000), "413", "10000000000")


def test_a_chunked_body_over_the_limit_is_a_413(server):
    head = (
        f"POST /v0/events?name=customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    chunks = [chunk] * (BODY_LIMIT // (64 * 1024) + 2) + [b"0\r\n\r\n"]
    assert_refused(exchange(server, head, *chunks), "413", f"limit of {BODY_LIMIT} bytes")
    # one chunk announcing more than the limit
    huge = b"%x\r\n" % (BODY_LIMIT * 4) + b"x" * (BODY_LIMIT + 1024)
    assert_refused(exchange(server, head, huge), "413")


def test_a_chunked_body_under_the_limit_still_works(server):
    row = json.dumps(customer("chunked")).encode() + b"\n"
    response = requests.post(
        f"{server.url}/v0/events?name=customers&wait=true", data=iter([row, row]), headers=server.headers()
    )  # a generator body is sent chunked
    assert (response.status_code, response.json()["successful_rows"]) == (200, 2)


def test_the_events_api_own_limit_stays_a_413(start_server):
    small = start_server(max_events_bytes=1024)
    response = requests.post(f"{small.url}/v0/events?name=customers", data=b"{}\n" * 1000, headers=small.headers())
    assert response.status_code == 413 and "Events API limit of 1024 bytes" in response.json()["error"]


def test_long_parameters_through_post_json_and_form_answer_as_get_would(server):
    url = f"{server.url}/v0/pipes/customer_segment_lookup.json"
    short = requests.get(url, params={"customer_id": "cust123", "token": server.token}).json()["data"]
    as_json = requests.post(url, json={"customer_id": "cust123"}, headers=server.headers()).json()["data"]
    as_form = requests.post(url, data={"customer_id": "cust123"}, headers=server.headers()).json()["data"]
    assert short == as_json == as_form and short[0]["name"] == "John Doe"
    for body in ({"json": {"customer_id": LONG_ID}}, {"data": {"customer_id": LONG_ID}}):
        response = requests.post(url, **body, headers=server.headers())
        assert response.status_code == 200, response.text
        [row] = response.json()["data"]
        assert row["customer_id"] == LONG_ID and row["name"] == "John Doe"
    # the form's parameters win over the query string's, as the JSON body's do
    response = requests.post(url + "?customer_id=nobody", data={"customer_id": "cust123"}, headers=server.headers())
    assert response.json()["data"] == short


def test_a_long_query_goes_through_post_to_the_query_api(server):
    ids = ", ".join(f"'id{i:05}'" for i in range(10_000))
    q = f"SELECT count() AS n FROM customers WHERE customer_id IN ({ids}, '{LONG_ID}') FORMAT JSON"
    assert len(q) > 2 * HEAD_LIMIT
    response = requests.get(f"{server.url}/v0/sql", params={"q": q, "token": server.token})
    assert response.status_code == 414
    for body in ({"data": {"q": q}}, {"data": q.encode()}):
        response = requests.post(f"{server.url}/v0/sql", **body, headers=server.headers())
        assert response.status_code == 200, response.text
        assert response.json()["data"] == [{"n": 1}]
