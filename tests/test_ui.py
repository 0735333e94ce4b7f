"""The web UI at `/`: page shells and static files in-process; sign-in, endpoints, datasources and checks in a
real headless Chromium (the system's, driven by playwright; the browser tests skip only when none is found)."""

from __future__ import annotations

import http.client
import json
import re
from urllib.parse import quote

import pytest
import requests

from tbkit.dev.loop import ChecksState
from tbkit.server.views.ui import sign_in_link

from . import ENDPOINTS, ROOT
from .browser import NO_BROWSER, chromium, chromium_path
from .conftest import LANDING
from .repo_copy import copy_project, edit
from .serving import DevProcess, InProcessServer, ServerProcess

PAGES = ("/", "/datasources", "/checks")
AS_OF = "2025-07-01 12:00:00"
GOLDEN = json.loads((ROOT / "fixtures/golden/customer_segment_lookup/vip_at_1000.json").read_text())
MALFORMED = ROOT / "fixtures/malformed/customers.ndjson"
CLTV_PIPE = "tinybird/endpoints/cltv_summary.pipe"
REVENUE = "round(sum(customer_cltv), 2) AS total_revenue"
DOUBLED = "round(sum(customer_cltv) * 2, 2) AS total_revenue"
WAIT_MS = 20_000  # playwright's expectations poll up to this deadline

browser_test = pytest.mark.skipif(chromium_path() is None, reason=NO_BROWSER)


# -- served by the same process, without data -------------------------------------------------------------


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """A server over the fixtures, shared by the tests of this module (one appends bad rows to `customers`)."""
    running = InProcessServer(engine, tmp_path_factory.mktemp("ui") / "data").start()
    for name in LANDING:
        running.service.main.workspace.append(name, ROOT / "fixtures" / f"{name}.ndjson")
    yield running
    running.stop()


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_shells_that_hold_no_data(server, path):
    response = requests.get(f"{server.url}{path}?token={server.token}", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = response.text
    assert '<script src="/-/static/tbkit.js" defer></script>' in page and 'id="sign-in-form"' in page
    # nothing of the workspace: no endpoint, datasource or token, even when the request carries a valid token
    for secret in (*ENDPOINTS, *LANDING, server.token, "cust_001"):
        assert secret not in page
    assert "<script>" not in page  # no inline script: the policy above would refuse it


@pytest.mark.parametrize(
    ("name", "content_type", "starts"),
    [("tbkit.js", "text/javascript", "// The web UI"), ("tbkit.css", "text/css", "/* The web UI")],
)
def test_static_files_are_served_with_their_types(server, name, content_type, starts):
    response = requests.get(f"{server.url}/-/static/{name}", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] in (content_type, "application/javascript")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.text.startswith(starts)
    assert "http://" not in response.text and "https://" not in response.text  # nothing from a CDN
    revalidated = requests.get(
        f"{server.url}/-/static/{name}", headers={"If-None-Match": response.headers["Etag"]}, timeout=30
    )
    assert revalidated.status_code == 304


@pytest.mark.parametrize(
    ("path", "status"),
    [("/-/static/missing.js", 404), ("/-/static/../views/ui.py", 403), ("/-/static/%2e%2e/app.py", 403)],
)
def test_static_paths_outside_the_folder_are_refused(server, path, status):
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)  # sends the path as it is, dots included
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == status
    assert "error" in json.loads(response.read())


def test_explain_answers_the_sql_an_endpoint_call_runs(server):
    url = f"{server.url}/v0/pipes/customer_segment_lookup/explain"
    params = {"customer_id": " CUST_001 ", "as_of": AS_OF}
    body = requests.get(url, params=params, headers=server.headers(), timeout=30).json()
    assert "lower(trimBoth(' CUST_001 '))" in body["debug_query"]
    assert "toDateTime('2025-07-01 12:00:00')" in body["debug_query"]
    assert body["debug_query"] == server.service.main.reader.endpoint_sql("customer_segment_lookup", params)
    read_only = json.loads((server.data_dir / "tokens.json").read_text())["tokens"]["customer_api_read"]
    refused = requests.get(url, params=params, headers=server.headers(read_only), timeout=30)
    assert refused.status_code == 403 and "admin token" in refused.json()["error"]
    missing = requests.get(url, headers=server.headers(), timeout=30)
    call = requests.get(f"{server.url}/v0/pipes/customer_segment_lookup.json", headers=server.headers(), timeout=30)
    assert (missing.status_code, missing.json()) == (400, call.json())
    unknown = requests.get(f"{server.url}/v0/pipes/nope/explain", headers=server.headers(), timeout=30)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]


@pytest.mark.parametrize(
    ("host", "token", "link"),
    [
        ("127.0.0.1", "p.abc/+=", "http://127.0.0.1:7181/?token=p.abc%2F%2B%3D"),
        ("0.0.0.0", "t", "http://127.0.0.1:7181/?token=t"),
        ("::1", None, "http://[::1]:7181/"),
    ],
)
def test_sign_in_link(host, token, link):
    assert sign_in_link(host, 7181, token) == link


# -- in a real browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser):
    """A fresh browser context (its own session storage) at a laptop's width; JavaScript errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def signed_in(page, server, path: str = "/"):
    """Open `path` through a sign-in link; the page once it shows its data."""
    separator = "&" if "?" in path.split("#")[0] else "?"
    base, _, fragment = path.partition("#")
    page.goto(f"{server.url}{base}{separator}token={quote(server.token)}" + (f"#{fragment}" if fragment else ""))
    expect(page.locator("#app")).to_be_visible(timeout=WAIT_MS)
    return page


@browser_test
def test_sign_in_asks_for_a_token_once_and_refuses_a_wrong_one(page, server):
    page.goto(server.url + "/")
    expect(page.locator("#sign-in-form")).to_be_visible(timeout=WAIT_MS)
    assert page.locator("#app").is_hidden() and "customer_segment_lookup" not in page.content()
    page.fill("#token", "not-a-token")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-error")).to_contain_text("This token was refused", timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.getItem('tbkit.token')") is None
    page.fill("#token", server.token)
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#list a")).to_have_count(len(ENDPOINTS), timeout=WAIT_MS)
    assert sorted(page.locator("#list .item-name").all_inner_texts()) == sorted(ENDPOINTS)
    page.goto(server.url + "/datasources")  # the token stays in the session: no second prompt
    expect(page.locator("#list .item-name").first).to_be_visible(timeout=WAIT_MS)
    assert page.locator("#sign-in").is_hidden()
    page.click("#sign-out")
    expect(page.locator("#sign-in-form")).to_be_visible(timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.getItem('tbkit.token')") is None


@browser_test
def test_a_sign_in_link_signs_in_and_leaves_the_address_bar(page, tmp_path):
    """The link `tbkit serve` prints (a real process, with a generated admin token): opened, it signs in, then the
    token is gone from the address bar and the history."""
    process = ServerProcess(tmp_path / "data", None).start()
    try:
        log = process.log_path.read_text()
        link = re.search(r"web UI: (http://\S+)", log)
        assert link and "?token=" in link.group(1), log
        token = json.loads((tmp_path / "data/tokens.json").read_text())["admin"]
        assert link.group(1) == f"{process.url}/?token={quote(token, safe='')}"
        page.goto(link.group(1))
        expect(page.locator("#list a")).to_have_count(len(ENDPOINTS), timeout=WAIT_MS)
        assert page.url == f"{process.url}/"  # the token is gone from the address
        assert page.evaluate("sessionStorage.getItem('tbkit.token')") == token
        page.go_back()  # the entry with the token was replaced, not kept behind the clean one
        assert page.url == "about:blank"
    finally:
        process.stop()


@browser_test
def test_calling_an_endpoint_shows_its_row_the_sql_and_a_curl(page, server):
    signed_in(page, server, "/#customer_segment_lookup")
    expect(page.locator("#detail h1")).to_have_text("customer_segment_lookup", timeout=WAIT_MS)
    expect(page.locator("#detail .description")).to_contain_text("Looks up one customer")
    assert page.locator("label[for=param-customer_id] .badge").inner_text() == "required"
    page.fill("#param-customer_id", GOLDEN["params"]["customer_id"])
    page.fill("#param-as_of", GOLDEN["params"]["as_of"])
    page.click("#detail button[type=submit]")
    rows = page.locator(".result table.rows tbody tr")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    headers = page.locator(".result table.rows thead .col-name").all_inner_texts()
    assert headers == [column["name"] for column in GOLDEN["meta"]]
    cells = rows.first.locator("td").all_inner_texts()
    expected = GOLDEN["data"][0]
    assert cells == [str(expected[name]) for name in headers]
    facts = page.locator(".result .facts").inner_text()
    assert "1 row" in facts and re.search(r"[1-9][\d,]* rows read", facts), facts
    expect(page.locator(".sql-text")).to_contain_text("lower(trimBoth('cust_001'))", timeout=WAIT_MS)
    curl = page.locator(".code", has_text="curl").locator("pre").inner_text()
    assert curl == (
        'curl -H "Authorization: Bearer $TB_TOKEN" \\\n'
        f"  '{server.url}/v0/pipes/customer_segment_lookup.json?customer_id=cust_001&as_of=2025-07-01+12%3A00%3A00'"
    )
    assert server.token not in page.content()
    assert page.url.endswith("#customer_segment_lookup?customer_id=cust_001&as_of=2025-07-01+12%3A00%3A00")


@browser_test
def test_a_scoped_token_sees_what_its_scopes_allow(page, server):
    tokens = json.loads((server.data_dir / "tokens.json").read_text())["tokens"]
    dashboard = tokens["cltv_dashboard"]  # PIPES:READ on the three CLTV endpoints only
    page.goto(f"{server.url}/?token={quote(dashboard)}#cltv_summary")
    expect(page.locator("#list a")).to_have_count(3, timeout=WAIT_MS)
    assert sorted(page.locator("#list .item-name").all_inner_texts()) == [
        "cltv_by_location",
        "cltv_summary",
        "customer_cltv",
    ]
    page.click("#detail button[type=submit]")
    expect(page.locator(".result table.rows tbody tr")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator(".result .sql")).to_have_text("The SQL is shown to the admin token only.", timeout=WAIT_MS)
    page.goto(server.url + "/datasources")
    refused = requests.get(f"{server.url}/v0/datasources", headers=server.headers(dashboard), timeout=30)
    assert refused.status_code == 403
    expect(page.locator("#detail .notice.error")).to_contain_text(refused.json()["error"], timeout=WAIT_MS)
    assert page.locator("#list a").count() == 0


@browser_test
def test_a_bad_parameter_shows_the_api_error(page, server):
    signed_in(page, server, "/#customer_segments_summary")
    page.fill("#param-min_age", "60")
    page.fill("#param-max_age", "20")
    page.click("#detail button[type=submit]")
    error = requests.get(
        f"{server.url}/v0/pipes/customer_segments_summary.json",
        params={"min_age": 60, "max_age": 20},
        headers=server.headers(),
        timeout=30,
    ).json()["error"]
    expect(page.locator(".result .notice.error")).to_contain_text(error, timeout=WAIT_MS)
    expect(page.locator(".result .notice.error")).to_contain_text("HTTP 400")


@browser_test
def test_quarantine_shows_the_bad_rows_with_their_errors(page, server):
    sent = requests.post(
        f"{server.url}/v0/events?name=customers&wait=true",
        data=MALFORMED.read_bytes(),
        headers=server.headers(),
        timeout=60,
    )
    assert sent.json()["quarantined_rows"] >= 1
    stored = requests.get(
        f"{server.url}/v0/sql",
        params={"q": "SELECT c__error FROM customers_quarantine WHERE has(c__error_column, 'age') FORMAT JSON"},
        headers=server.headers(),
        timeout=30,
    ).json()["data"]
    errors = [error for row in stored for error in row["c__error"]]
    assert errors
    signed_in(page, server, "/datasources#customers")
    quarantine = page.locator(".panel", has=page.locator("h2", has_text="Quarantine"))
    expect(quarantine.locator("tbody tr")).to_have_count(
        requests.get(f"{server.url}/v0/datasources/customers", headers=server.headers(), timeout=30).json()[
            "quarantine_rows"
        ],
        timeout=WAIT_MS,
    )
    for error in errors:
        expect(quarantine).to_contain_text(error)
    assert quarantine.locator("thead .col-name").first.inner_text() == "insertion_date"
    schema = page.locator(".panel", has=page.locator("h2", has_text="Schema"))
    assert "$.lifetime_value" in schema.inner_text()
    page.click("#list a:has-text('customer_transactions')")
    expect(page.locator("#detail h1")).to_have_text("customer_transactions", timeout=WAIT_MS)
    expect(page.get_by_text("No rows in quarantine.")).to_be_visible(timeout=WAIT_MS)


@browser_test
def test_at_a_phone_width_tables_scroll_inside_the_page(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        signed_in(page, server, "/#customer_segment_lookup?customer_id=cust_001")
        expect(page.locator(".result table.rows tbody tr")).to_have_count(1, timeout=WAIT_MS)
        expect(page.locator(".sql-text")).to_be_visible(timeout=WAIT_MS)
        table = page.locator(".result .table-wrap")
        assert table.evaluate("e => e.scrollWidth > e.clientWidth")  # 17 columns: wider than the phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.goto(server.url + "/datasources#customers")
        expect(page.locator(".panel").nth(1).locator("tbody tr").first).to_be_visible(timeout=WAIT_MS)
        quarantine = page.locator(".panel").nth(2)  # its rows, or "No rows in quarantine." when no test sent any
        expect(quarantine.locator(".table-wrap, .empty")).to_have_count(1, timeout=WAIT_MS)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.locator("nav.tabs a").count() == 3 and page.locator("nav.tabs").is_visible()
    finally:
        context.close()


@browser_test
def test_checks_under_serve_explain_they_run_under_dev(page, server):
    signed_in(page, server, "/checks")
    expect(page.locator("#detail .notice")).to_contain_text("Checks run under tbkit dev", timeout=WAIT_MS)


def _result(endpoint: str, case: str, outcome: str, differences: list[str] | None = None) -> dict:
    return {"endpoint": endpoint, "case": case, "outcome": outcome, "ms": 1.5, "differences": differences or []}


@browser_test
def test_the_checks_page_follows_each_new_run(page, start_server):
    server = start_server()
    server.service.checks = state = ChecksState()
    ids = ["cltv_summary/defaults", "customer_cltv/known_customer"]
    state.begin(["tinybird/endpoints/cltv_summary.pipe"])
    state.finish(
        ids, [_result("cltv_summary", "defaults", "passed"), _result("customer_cltv", "known_customer", "passed")]
    )
    signed_in(page, server, "/checks")
    expect(page.locator(".status")).to_have_text("All passed", timeout=WAIT_MS)
    diff = "~ row 1 average_cltv=4737969.2 changed: total_revenue: 184780798.65 -> 369561597.3"
    state.begin(["tinybird/endpoints/cltv_summary.pipe"])
    state.finish(ids, [_result("cltv_summary", "defaults", "failed", [diff])])
    expect(page.locator(".status")).to_have_text("1 failed", timeout=WAIT_MS)  # redrawn by polling, no reload
    failing = page.locator("article.case.failed")
    expect(failing).to_have_count(1)
    expect(failing.locator("h3")).to_contain_text("cltv_summary/defaults")
    expect(failing.locator("pre.diff")).to_have_text(diff)
    state.begin(["tinybird/endpoints/cltv_summary.pipe"])
    state.finish(ids, [], build_error={"file": "tinybird/endpoints/cltv_summary.pipe", "line": 7, "message": "bad"})
    build_error = page.locator("#detail .notice.error")
    expect(build_error).to_contain_text("tinybird/endpoints/cltv_summary.pipe:7 bad", timeout=WAIT_MS)


@browser_test
def test_breaking_a_pipe_under_tbkit_dev_shows_the_failing_check(page, tmp_path):
    """A real `tbkit dev`: the page shows its first run, then, without a reload, the case a pipe edit breaks with
    its diff, then the fix."""
    root = copy_project(tmp_path / "project")
    process = DevProcess(root, tmp_path / "data").start(deadline=120)
    try:
        revenue = requests.get(
            f"{process.url}/v0/pipes/cltv_summary.json", headers=process.headers(), timeout=30
        ).json()["data"][0]["total_revenue"]
        signed_in(page, process, "/checks")
        status = page.locator("#detail .status")
        expect(status).to_have_text("All passed", timeout=60_000)
        cases = len(
            requests.get(f"{process.url}/v0/tbkit/checks", headers=process.headers(), timeout=30).json()["results"]
        )
        expect(page.locator("#detail .facts")).to_contain_text(f"{cases} passed")
        edit(root / CLTV_PIPE, REVENUE, DOUBLED)
        expect(status).to_have_text("1 failed", timeout=WAIT_MS)
        failing = page.locator("article.case.failed")
        expect(failing).to_have_count(1)
        expect(failing.locator("h3 code")).to_have_text("cltv_summary/defaults")
        expect(failing.locator("pre.diff")).to_contain_text(f"total_revenue: {revenue} -> {revenue * 2}")
        expect(page.locator("#detail .facts")).to_contain_text(f"after a change to {CLTV_PIPE}")
        edit(root / CLTV_PIPE, DOUBLED, REVENUE)
        expect(status).to_have_text("All passed", timeout=WAIT_MS)
        expect(failing).to_have_count(0)
    finally:
        process.stop()
