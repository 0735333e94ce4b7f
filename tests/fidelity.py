"""The `tb --local` command matrix: every row runs the real `tb` against a fresh `tbkit serve` and checks what
it prints (and, where the answer is data, what the server then holds).

`test_fidelity.py` runs the rows in order, for tb 5.0.3 and tb 4.6.13, and writes docs/FIDELITY.md from the
outcomes. A row is a command with its arguments, a check on its output and exit code, and, when it cannot
work without Docker or a real connector, the reason (then the check is that it fails saying why).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from . import ENDPOINTS, ROOT
from .repo_copy import copy_project

WORKS = "works"
NOT_SUPPORTED = "not supported"
MISSING = "not in this version"
FAILS = "FAILS"
SKIPPED = "skipped"

# Rows of the matrix run in this order: deploy, loads and reads, tokens, jobs, secrets, destructive writes,
# build/dev/test, deployments, and last the commands that cannot work here.
MATERIALIZATIONS = (
    "customer_cltv_locations",
    "customer_cltv_transactions",
    "customer_engagement",
    "customer_events_by_customer",
    "customers_latest",
)
DATASOURCES = (
    "customer_cltv_mv",
    "customer_demographics",
    "customer_engagement_mv",
    "customer_events",
    "customer_events_by_customer_mv",
    "customer_transactions",
    "customers",
    "customers_latest_mv",
)
NO_CONNECTORS = re.compile(r"(?i)connector")


class Mismatch(AssertionError):
    """A check that did not hold; its message is deterministic (it goes into docs/FIDELITY.md)."""


@dataclass
class Result:
    code: int | None
    output: str


@dataclass
class Outcome:
    status: str
    detail: str = ""
    log: str = ""

    def cell(self) -> str:
        if self.status == WORKS:
            return "works"
        if self.status in (NOT_SUPPORTED, MISSING, SKIPPED):
            return f"{self.status}: {self.detail}"
        return f"**FAILS**: {self.detail}"

    @property
    def failed(self) -> bool:
        return self.status == FAILS


@dataclass
class Session:
    """One tb executable against one server, from one copy of the project."""

    tb_path: Path
    version: str
    server: Any  # tests.serving.ServerProcess
    root: Path  # the copy: root/tinybird, root/fixtures
    work: Path  # scratch files the rows write
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.root / "tinybird"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
        env.update(
            TB_LOCAL_HOST="127.0.0.1",
            TB_LOCAL_PORT=str(self.server.port),
            TB_CLI_TELEMETRY_OPTOUT="1",
            TB_VERSION_WARNING="0",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def tb(
        self, *args: str, timeout: float = 120, stdin: str | None = None, cwd: Path | None = None, **env: str
    ) -> Result:
        command = [str(self.tb_path), "--local", *args]
        try:
            done = subprocess.run(
                command,
                cwd=cwd or self.project,
                env=self.env(**env),
                input=stdin if stdin is not None else "",
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            output = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return Result(None, output + f"\n[timed out after {timeout:g} s]")
        return Result(done.returncode, done.stdout)

    # The server, asked directly (never through the tb command under test) to check what a command did.

    def local_tokens(self) -> dict[str, str]:
        return requests.get(f"{self.server.url}/tokens", timeout=10).json()

    def workspace(self, project: Path | None = None) -> dict[str, Any]:
        """The workspace tb --local uses for a project folder (named after the folder's path)."""
        name = "Tinybird_Local_Build_" + hashlib.sha256(str(project or self.project).encode()).hexdigest()
        admin = self.local_tokens()["admin_token"]
        listed = requests.get(f"{self.server.url}/v1/user/workspaces", params={"token": admin}, timeout=10).json()
        for ws in listed.get("workspaces", []):
            if ws["name"] == name:
                return ws
        raise Mismatch(f"no workspace {name} on the server (tb --local creates it)")

    @property
    def token(self) -> str:
        return self.workspace()["token"]

    def get(self, path: str, token: str | None = None, **params: Any) -> requests.Response:
        params["token"] = token or self.token
        return requests.get(f"{self.server.url}{path}", params=params, timeout=30)

    def sql(self, query: str) -> list[dict[str, Any]]:
        answer = self.get("/v0/sql", q=f"{query} FORMAT JSON")
        if answer.status_code != 200:
            raise Mismatch(f"checking with /v0/sql failed ({answer.status_code}): {answer.text[:200]}")
        return answer.json()["data"]

    def count(self, table: str, where: str = "1") -> int:
        return int(self.sql(f"SELECT count() AS c FROM {table} WHERE {where}")[0]["c"])

    def fixture(self, name: str) -> Path:
        return self.root / "fixtures" / name


@dataclass(frozen=True)
class Row:
    group: str
    shown: str  # the command as the report shows it
    args: tuple[str, ...] | Callable[[Session], tuple[str, ...]]
    check: Callable[[Session, Result], None]
    unsupported: str | None = None  # why it cannot work here (then `check` asserts it fails saying so)
    missing: dict[str, str] = field(default_factory=dict)  # tb version -> why that version cannot run it
    setup: Callable[[Session], None] | None = None
    runner: Callable[[Session, tuple[str, ...]], Result] | None = None
    timeout: float = 120
    stdin: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def run_row(session: Session, row: Row) -> Outcome:
    if session.version in row.missing:
        return Outcome(MISSING, row.missing[session.version])
    result = Result(None, "")
    try:
        if row.setup:
            row.setup(session)
        args = row.args(session) if callable(row.args) else row.args
        if row.runner:
            result = row.runner(session, args)
        else:
            result = session.tb(*args, timeout=row.timeout, stdin=row.stdin, **row.env)
        row.check(session, result)
    except (Mismatch, AssertionError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        return Outcome(FAILS, detail, f"exit code {result.code}\n{result.output}")
    except Exception as e:  # a crash of the harness around a row is that row's failure, with its cause
        return Outcome(FAILS, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", result.output)
    if row.unsupported:
        return Outcome(NOT_SUPPORTED, row.unsupported)
    return Outcome(WORKS)


# Checks. Each raises Mismatch with a message that names what was expected.


def ok(result: Result) -> None:
    if result.code != 0:
        raise Mismatch(f"exit code {result.code}, expected 0: {last_line(result.output)}")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"(?i)error|✗|not found|failed", line)]
    return (errors or lines or ["(no output)"])[0][:160]


def has(result: Result, *texts: str) -> None:
    for text in texts:
        if text not in result.output:
            raise Mismatch(f"`{text}` not in the output: {last_line(result.output)}")


def works_with(*texts: str) -> Callable[[Session, Result], None]:
    def check(session: Session, result: Result) -> None:
        ok(result)
        has(result, *texts)

    return check


def records(output: str) -> list[dict[str, str]]:
    """The rows of a tb table: `| a | b |` lines under a header, or, when the terminal is narrow, blocks of
    `key: value` lines between dashed rules."""
    piped = [[c.strip() for c in line.strip()[1:-1].split("|")] for line in output.splitlines() if line.startswith("|")]
    if piped:
        return [dict(zip(piped[0], row, strict=False)) for row in piped[1:]]
    found: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in output.splitlines():
        if re.fullmatch(r"-{3,}", line.strip()):
            if current:
                found.append(current)
            current = {}
        elif (match := re.fullmatch(r"([\w .]+): ?(.*)", line.strip())) and not line.startswith(" "):
            current[match.group(1)] = match.group(2).strip()
    return found + ([current] if current else [])


def table_names(output: str) -> set[str]:
    """Every cell of tb's tables, and every stripped line (tb sql's tables are aligned by spaces)."""
    cells = {value for record in records(output) for value in record.values()}
    return cells | {line.strip() for line in output.splitlines()}


def lists(*names: str) -> Callable[[Session, Result], None]:
    def check(session: Session, result: Result) -> None:
        ok(result)
        missing = [name for name in names if name not in table_names(result.output)]
        if missing:
            raise Mismatch(f"not listed: {', '.join(missing)}: {last_line(result.output)}")

    return check


def fails_saying(pattern: re.Pattern[str], what: str) -> Callable[[Session, Result], None]:
    def check(session: Session, result: Result) -> None:
        if result.code == 0 and not re.search(r"(?i)error|✗", result.output):
            raise Mismatch(f"succeeded, expected it to fail saying {what}")
        if not pattern.search(result.output):
            raise Mismatch(f"fails without saying {what}: {last_line(result.output)}")

    return check


def json_output(result: Result) -> Any:
    ok(result)
    text = result.output[result.output.find("{") :]
    try:
        return json.loads(text)
    except ValueError:
        raise Mismatch(f"not JSON: {last_line(result.output)}") from None


def expect_count(session: Session, table: str, expected: int, where: str = "1") -> None:
    got = session.count(table, where)
    if got != expected:
        raise Mismatch(f"{table} has {got} rows where {where}, expected {expected}")


def lines_of(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


# Data the rows send.

MV_ROW = {
    "customer_id": "fid_mv_1",
    "cltv": 12.5,
    "transactions": 2,
    "first_transaction_at": "2024-01-01 00:00:00",
    "last_transaction_at": "2024-02-01 00:00:00",
    "location": "Madrid",
}
EVENT = {
    "event_id": "fid_evt_1",
    "customer_id": "cust_034",
    "event_type": "purchase",
    "event_value": 9.5,
    "product_id": "p1",
    "category": "books",
    "timestamp": "2025-06-30 10:00:00",
}
KAFKA_CONNECTION = """TYPE kafka
KAFKA_BOOTSTRAP_SERVERS 127.0.0.1:9
KAFKA_SECURITY_PROTOCOL PLAINTEXT
"""
KAFKA_DATASOURCE = """SCHEMA >
    `data` String `json:$`

KAFKA_CONNECTION_NAME fid_kafka
KAFKA_TOPIC events
KAFKA_GROUP_ID fid_group
"""
PROBE_PIPE = """NODE probe
SQL >
    SELECT {value} AS probe

TYPE ENDPOINT
"""


def write_scratch(session: Session) -> None:
    """Files the load rows send: an NDJSON row for the materialized target, demographics as CSV."""
    session.work.mkdir(parents=True, exist_ok=True)
    (session.work / "cltv_mv.ndjson").write_text(json.dumps(MV_ROW) + "\n")
    with (session.work / "customer_demographics.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "age", "location"])
        for line in session.fixture("customer_demographics.ndjson").read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                writer.writerow([record["customer_id"], record["age"], record["location"]])
    (session.work / "customers_two.ndjson").write_text(
        "".join(line + "\n" for line in session.fixture("customers.ndjson").read_text().splitlines()[:2])
    )
    cust_034 = [
        line for line in session.fixture("customer_transactions.ndjson").read_text().splitlines() if "cust_034" in line
    ]
    (session.work / "transactions_cust_034.ndjson").write_text(cust_034[0] + "\n")


# Checks of single rows.


def check_appended(table: str, fixture: str) -> Callable[[Session, Result], None]:
    def check(session: Session, result: Result) -> None:
        ok(result)
        if not re.search(r"(?i)appended", result.output):
            raise Mismatch(f"no `appended` in the output: {last_line(result.output)}")
        expect_count(session, table, lines_of(session.fixture(fixture)))

    return check


def check_csv_append(session: Session, result: Result) -> None:
    ok(result)
    expect_count(session, "customer_demographics", lines_of(session.fixture("customer_demographics.ndjson")))


def check_event(session: Session, result: Result) -> None:
    ok(result)
    has(result, "1 row appended")
    expect_count(session, "customer_events", 1, "event_id = 'fid_evt_1'")


def check_mv_append(session: Session, result: Result) -> None:
    ok(result)
    rows = session.sql("SELECT cltv, transactions, location FROM customer_cltv_mv FINAL WHERE customer_id = 'fid_mv_1'")
    if rows != [{"cltv": 12.5, "transactions": 2, "location": "Madrid"}]:
        raise Mismatch(f"customer_cltv_mv holds {rows} for fid_mv_1, expected the appended row")


def check_ls_json(session: Session, result: Result) -> None:
    names = {d["name"] for d in json_output(result).get("datasources", [])}
    if missing := sorted(set(DATASOURCES) - names):
        raise Mismatch(f"not listed: {', '.join(missing)}")


def check_datasource_data(session: Session, result: Result) -> None:
    ok(result)
    ids = [r.get("customer_id", "") for r in records(result.output)]
    if len(ids) != 3 or not all(re.fullmatch(r"(?i)\s*cust_\d+\s*", i) for i in ids):
        raise Mismatch(f"no customer rows in the table: {last_line(result.output)}")


def check_analyze(*columns: str) -> Callable[[Session, Result], None]:
    def check(session: Session, result: Result) -> None:
        ok(result)
        has(result, "SQL Schema")
        for column in columns:
            if not re.search(rf"`?{column}`? \w+", result.output.split("SQL Schema")[-1]):
                raise Mismatch(f"column `{column}` not in the SQL schema: {last_line(result.output)}")

    return check


def check_export_csv(session: Session, result: Result) -> None:
    ok(result)
    has(result, "Exported data to")
    lines = (session.work / "customers_export.csv").read_text().splitlines()
    if len(lines) != 6 or "customer_id" not in lines[0]:
        raise Mismatch(f"the CSV export has {len(lines)} lines, expected a header and 5 rows")


def check_export_ndjson(session: Session, result: Result) -> None:
    ok(result)
    has(result, "Exported data to")
    lines = (session.work / "transactions_export.ndjson").read_text().splitlines()
    if len(lines) != 3 or "transaction_amount" not in json.loads(lines[0]):
        raise Mismatch(f"the NDJSON export has {len(lines)} lines, expected 3 rows")


def golden_row() -> dict[str, Any]:
    return json.loads((ROOT / "fixtures/golden/customer_cltv/heavy_buyer.json").read_text())["data"][0]


def check_endpoint_data(session: Session, result: Result) -> None:
    ok(result)
    row = golden_row()
    has(result, row["customer_id"], str(row["cltv"]), row["first_transaction_at"])


def check_endpoint_json(session: Session, result: Result) -> None:
    data = json_output(result).get("data")
    if data != [golden_row()]:
        raise Mismatch(f"data is {data}, expected the golden heavy_buyer row")


def check_endpoint_url(session: Session, result: Result) -> None:
    ok(result)
    urls = re.findall(r"https?://\S+", result.output)
    if not urls or "/v0/pipes/customer_cltv.json" not in urls[0] or "token=" not in urls[0]:
        raise Mismatch(f"no URL of customer_cltv with a token: {last_line(result.output)}")
    answer = requests.get(urls[0].replace("q=&", ""), params={"customer_id": "cust_034"}, timeout=30)
    if answer.status_code != 200:
        raise Mismatch(f"the printed URL answers {answer.status_code}")


def check_endpoint_token(session: Session, result: Result) -> None:
    ok(result)
    token = result.output.strip().splitlines()[-1].strip() if result.output.strip() else ""
    if not token or " " in token:
        raise Mismatch(f"no token printed: {last_line(result.output)}")
    answer = session.get("/v0/pipes/customer_cltv.json", token=token, customer_id="cust_034")
    if answer.status_code != 200:
        raise Mismatch(f"the printed token cannot read customer_cltv ({answer.status_code})")
    if token == session.token:
        raise Mismatch("the printed token is the workspace admin token, expected the endpoint's READ token")


def check_endpoint_stats(session: Session, result: Result) -> None:
    pipes = json_output(result).get("pipes", [])
    mine = [p for p in pipes if p.get("name") == "customer_cltv"]
    if not mine or int(mine[0].get("requests") or 0) < 1:
        raise Mismatch(f"no request counted for customer_cltv: {pipes}")


def check_none_listed(session: Session, result: Result) -> None:
    ok(result)
    if re.search(r"(?i)error|not found", result.output):
        raise Mismatch(f"an error instead of a list: {last_line(result.output)}")
    if listed := sorted(table_names(result.output) & set(ENDPOINTS + MATERIALIZATIONS)):
        raise Mismatch(f"lists pipes of another type: {', '.join(listed)}")


def check_sql(session: Session, result: Result) -> None:
    ok(result)
    expected = str(lines_of(session.fixture("customers.ndjson")))
    if expected not in table_names(result.output):
        raise Mismatch(f"count {expected} not in the output: {last_line(result.output)}")


def token_value(session: Session, name: str) -> str | None:
    answer = session.get(f"/v0/tokens/{name}")
    return answer.json().get("token") if answer.status_code == 200 else None


def check_token_created(session: Session, result: Result) -> None:
    ok(result)
    has(result, "fid_reader' generated successfully")
    value = token_value(session, "fid_reader")
    if not value:
        raise Mismatch("GET /v0/tokens/fid_reader does not return the token")
    if session.get("/v0/pipes/customer_cltv.json", token=value, customer_id="cust_034").status_code != 200:
        raise Mismatch("the new token cannot read customer_cltv (its PIPES:READ scope)")
    if session.get("/v0/pipes/cltv_summary.json", token=value).status_code != 403:
        raise Mismatch("the new token reads cltv_summary, outside its scope")
    session.state["fid_reader"] = value


def check_token_scopes(session: Session, result: Result) -> None:
    ok(result)
    has(result, "PIPES:READ", "customer_cltv")


def check_token_copy(session: Session, result: Result) -> None:
    ok(result)
    copied = (session.work / "clipboard").read_text() if (session.work / "clipboard").exists() else ""
    if copied.strip() != session.state.get("fid_reader"):
        raise Mismatch("the clipboard does not hold fid_reader's token")


def check_token_refresh(session: Session, result: Result) -> None:
    ok(result)
    has(result, "fid_reader")
    value = token_value(session, "fid_reader")
    if not value or value == session.state.get("fid_reader"):
        raise Mismatch("fid_reader's token value did not change")
    if (
        session.get("/v0/pipes/customer_cltv.json", token=session.state["fid_reader"], customer_id="x").status_code
        != 403
    ):
        raise Mismatch("the old value of fid_reader still reads customer_cltv")


def check_token_rm(session: Session, result: Result) -> None:
    ok(result)
    has(result, "fid_reader")
    if token_value(session, "fid_reader") is not None:
        raise Mismatch("fid_reader is still there after rm")


def check_token_ls_after(session: Session, result: Result) -> None:
    lists("fid_reader", "customer_api_read")(session, result)


def check_job_ls(session: Session, result: Result) -> None:
    ok(result)
    imports = [r for r in records(result.output) if r.get("kind") == "import" and r.get("status") == "done"]
    if not imports:
        raise Mismatch(f"no done import job listed after the appends: {last_line(result.output)}")
    session.state["job"] = imports[0]["id"]


def check_job_details(session: Session, result: Result) -> None:
    ok(result)
    has(result, session.state["job"], "done")


def check_job_cancel(session: Session, result: Result) -> None:
    if result.code == 0:
        raise Mismatch("cancelling a finished job succeeded, expected Tinybird's refusal")
    if not re.search(r"(?i)cancel", result.output):
        raise Mismatch(f"the refusal does not say the job cannot be cancelled: {last_line(result.output)}")


def secrets(session: Session) -> set[str]:
    return {s["name"] for s in session.get("/v0/variables").json().get("variables", [])}


def check_secret_set(session: Session, result: Result) -> None:
    ok(result)
    has(result, "✓ Secret 'fid_secret' set")
    if "fid_secret" not in secrets(session):
        raise Mismatch("GET /v0/variables does not list fid_secret")


def check_secret_rm(session: Session, result: Result) -> None:
    ok(result)
    has(result, "✓ Secret 'fid_secret' deleted")
    if "fid_secret" in secrets(session):
        raise Mismatch("GET /v0/variables still lists fid_secret")


def check_replace(session: Session, result: Result) -> None:
    ok(result)
    expect_count(session, "customers", 2)


def check_replace_condition(session: Session, result: Result) -> None:
    """Only the rows matching the condition are replaced (by the file's one row); the others stay."""
    ok(result)
    records = [json.loads(line) for line in session.fixture("customer_transactions.ndjson").read_text().splitlines()]
    theirs = sum(1 for r in records if r["customer_id"].strip().lower() == "cust_034")
    expect_count(session, "customer_transactions", 1, "lower(trim(customer_id)) = 'cust_034'")
    expect_count(session, "customer_transactions", len(records) - theirs + 1)


def check_delete(session: Session, result: Result) -> None:
    ok(result)
    has(result, "customer_transactions")
    expect_count(session, "customer_transactions", 0, "lower(trim(customer_id)) = 'cust_001'")
    if session.count("customer_transactions") == 0:
        raise Mismatch("delete removed every row, expected only cust_001's")


def check_truncate(session: Session, result: Result) -> None:
    ok(result)
    has(result, "customer_events")
    expect_count(session, "customer_events", 0)


def check_truncate_cascade(session: Session, result: Result) -> None:
    ok(result)
    has(result, "customer_transactions", "customer_cltv_mv")
    expect_count(session, "customer_transactions", 0)
    expect_count(session, "customer_cltv_mv", 0)


def export_tests(session: Session) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tbkit.cli", "export-tests"],
        cwd=session.root,
        env=session.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise Mismatch(f"tbkit export-tests failed: {done.stderr.strip()[:160]}")


def check_test_run(session: Session, result: Result) -> None:
    ok(result)
    if not re.search(r"✓ (\d+)/\1 passed", result.output):
        raise Mismatch(f"not every test passed: {last_line(result.output)}")


def check_test_update(session: Session, result: Result) -> None:
    ok(result)
    has(result, "customer_cltv", "✓ Done!")
    if not (session.project / "tests/customer_cltv.yaml").exists():
        raise Mismatch("tests/customer_cltv.yaml is gone")


def run_dev(session: Session, args: tuple[str, ...]) -> Result:
    """`tb dev`: wait until it watches for changes, then stop it with SIGINT and expect it to exit in time."""
    process = subprocess.Popen(
        [str(session.tb_path), "--local", *args],
        cwd=session.project,
        env=session.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while "Watching for changes" not in "".join(output):
            if process.poll() is not None or time.monotonic() > deadline:
                return Result(process.poll(), "".join(output) + "\n[never reported it was watching for changes]")
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            return Result(None, "".join(output) + "\n[did not exit within 15 s of SIGINT]")
        reader.join(5)
        return Result(0, "".join(output))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def check_dev(session: Session, result: Result) -> None:
    """The build before watching completes (or has nothing to do: the project is deployed as it is)."""
    ok(result)
    if not re.search(r"✓ Build completed|No changes\. Build skipped", result.output) or "✗" in result.output:
        raise Mismatch(f"the build before watching did not complete: {last_line(result.output)}")


def deployments(session: Session) -> list[dict[str, Any]]:
    return session.get("/v1/deployments").json().get("deployments", [])


def add_probe(value: int) -> Callable[[Session], None]:
    def setup(session: Session) -> None:
        (session.project / "endpoints" / "fidelity_probe.pipe").write_text(PROBE_PIPE.format(value=value))

    return setup


def check_deployment_created(session: Session, result: Result) -> None:
    ok(result)
    has(result, "Deployment is ready")
    staging = [d for d in deployments(session) if not d.get("live") and d.get("status") == "data_ready"]
    if not staging:
        raise Mismatch("no staging deployment (data_ready, not live) after deployment create")


def check_promoted(session: Session, result: Result) -> None:
    ok(result)
    has(result, "✓ Deployment promoted")
    answer = session.get("/v0/pipes/fidelity_probe.json")
    if answer.status_code != 200 or answer.json().get("data") != [{"probe": 1}]:
        raise Mismatch(f"the promoted endpoint answers {answer.status_code}: {answer.text[:120]}")


def check_discarded(session: Session, result: Result) -> None:
    ok(result)
    has(result, "Discard process successfully started")
    answer = session.get("/v0/pipes/fidelity_probe.json")
    if answer.status_code != 200 or answer.json().get("data") != [{"probe": 1}]:
        raise Mismatch("the live deployment changed after discarding the staging one")
    if [d for d in deployments(session) if not d.get("live") and d.get("status") == "data_ready"]:
        raise Mismatch("the staging deployment is still listed after discard")


def check_deployment_ls(session: Session, result: Result) -> None:
    ok(result)
    if "Live" not in table_names(result.output):
        raise Mismatch(f"no live deployment listed: {last_line(result.output)}")


def check_info(session: Session, result: Result) -> None:
    ok(result)
    local = result.output.split("» Tinybird Local:")[-1].split("» Project:")[0]
    if "» Tinybird Local:" not in result.output or re.search(r"(?i)could not|error", local):
        raise Mismatch(f"no Tinybird Local info: {last_line(local)}")
    has(result, session.workspace()["name"])


def check_connection_ls(session: Session, result: Result) -> None:
    ok(result)
    has(result, "service")
    if re.search(r"(?i)error|not found", result.output):
        raise Mismatch(f"an error instead of a list: {last_line(result.output)}")


def check_local_start(session: Session, result: Result) -> None:
    fails_saying(re.compile(r"(?i)docker|container runtime"), "that it needs Docker")(session, result)


def check_s3(session: Session, result: Result) -> None:
    fails_saying(re.compile(r"No AWS credentials found"), "that S3 is not available")(session, result)
    answer = session.get("/v0/integrations/s3/settings")
    if answer.status_code < 400 or not NO_CONNECTORS.search(answer.text):
        raise Mismatch(f"the server's answer on S3 settings does not say why ({answer.status_code})")


def fresh_project(session: Session) -> Path:
    return session.work / "fresh" / "tinybird"


def copy_of_project(session: Session, name: str) -> Path:
    """Another copy of the project and its fixtures, in another folder: tb --local gives it its own workspace."""
    root = session.work / name
    shutil.rmtree(root, ignore_errors=True)
    return copy_project(root, session.root, leave_out=("fidelity_probe.pipe",)) / "tinybird"


def setup_fresh(session: Session) -> None:
    copy_of_project(session, "fresh")


def run_in_fresh_project(session: Session, args: tuple[str, ...]) -> Result:
    return session.tb(*args, cwd=fresh_project(session))


def check_build(session: Session, result: Result) -> None:
    """Every datafile is created and the fixtures (tinybird/fixtures/<datasource>.ndjson) are appended."""
    ok(result)
    has(result, "✓ Build completed", "endpoints/customer_cltv.pipe", "datasources/customers.datasource")
    token = session.workspace(fresh_project(session))["token"]
    answer = session.get("/v0/sql", token=token, q="SELECT count() AS c FROM customers FORMAT JSON")
    expected = lines_of(session.fixture("customers.ndjson"))
    if answer.status_code != 200 or int(answer.json()["data"][0]["c"]) != expected:
        raise Mismatch(
            f"the built workspace does not hold the {expected} customers of the fixtures: {answer.text[:300]!r}"
        )


def kafka_project(session: Session) -> Path:
    return session.work / "kafka" / "tinybird"


def setup_kafka(session: Session) -> None:
    """A copy of the project with what `tb connection create kafka` writes, and a Kafka datasource."""
    project = copy_of_project(session, "kafka")
    (project / "connections").mkdir(exist_ok=True)
    (project / "connections" / "fid_kafka.connection").write_text(KAFKA_CONNECTION)
    (project / "datasources" / "fid_kafka_events.datasource").write_text(KAFKA_DATASOURCE)


def run_in_kafka_project(session: Session, args: tuple[str, ...]) -> Result:
    return session.tb(*args, cwd=kafka_project(session))


def fake_clipboard(session: Session) -> dict[str, str]:
    """wl-copy and wl-paste on PATH, writing to and reading from a file, for pyperclip."""
    bin_dir = session.work / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    clip = session.work / "clipboard"
    for name, body in (("wl-copy", f'cat > "{clip}"'), ("wl-paste", f'cat "{clip}"')):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return {"WAYLAND_DISPLAY": "fidelity", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def token_copy_runner(session: Session, args: tuple[str, ...]) -> Result:
    return session.tb(*args, **fake_clipboard(session))


def fixture_arg(name: str) -> Callable[[Session], tuple[str, ...]]:
    return lambda s: (str(s.fixture(name)),)


def rows() -> list[Row]:
    """The matrix, in the order it runs."""
    ds, ep = "datasource", "endpoint"
    return [
        Row("deploy", "tb deploy --check", ("deploy", "--check"), works_with("Deployment is valid")),
        Row("deploy", "tb deploy", ("deploy",), works_with("is live")),
        Row(ds, "tb datasource ls", ("datasource", "ls"), lists("customers", "customer_cltv_mv")),
        Row(
            ds,
            "tb datasource append customers --file customers.ndjson",
            lambda s: ("datasource", "append", "customers", "--file", str(s.fixture("customers.ndjson"))),
            check_appended("customers", "customers.ndjson"),
            setup=write_scratch,
        ),
        Row(
            ds,
            "tb datasource append customer_transactions customer_transactions.ndjson",
            lambda s: ("datasource", "append", "customer_transactions", str(s.fixture("customer_transactions.ndjson"))),
            check_appended("customer_transactions", "customer_transactions.ndjson"),
        ),
        Row(
            ds,
            "tb datasource append customer_demographics --file customer_demographics.csv",
            lambda s: (
                "datasource",
                "append",
                "customer_demographics",
                "--file",
                str(s.work / "customer_demographics.csv"),
            ),
            check_csv_append,
        ),
        Row(
            ds,
            "tb datasource append customer_events --events '{...}'",
            ("datasource", "append", "customer_events", "--events", json.dumps(EVENT)),
            check_event,
        ),
        Row(
            ds,
            "tb datasource append customer_cltv_mv --file (SimpleAggregateFunction columns)",
            lambda s: ("datasource", "append", "customer_cltv_mv", "--file", str(s.work / "cltv_mv.ndjson")),
            check_mv_append,
        ),
        Row(ds, "tb datasource ls --format json", ("datasource", "ls", "--format", "json"), check_ls_json),
        Row(
            ds,
            "tb datasource data customers --limit 3",
            ("datasource", "data", "customers", "--limit", "3"),
            check_datasource_data,
        ),
        Row(
            ds,
            "tb datasource analyze customers.ndjson",
            lambda s: ("datasource", "analyze", str(s.fixture("customers.ndjson"))),
            check_analyze("customer_id", "lifetime_value"),
        ),
        Row(
            ds,
            "tb datasource analyze customer_demographics.csv",
            lambda s: ("datasource", "analyze", str(s.work / "customer_demographics.csv")),
            check_analyze("customer_id", "location"),
        ),
        Row(
            ds,
            "tb datasource export customers --format csv --rows 5 --target FILE",
            lambda s: (
                "datasource",
                "export",
                "customers",
                "--format",
                "csv",
                "--rows",
                "5",
                "--target",
                str(s.work / "customers_export.csv"),
            ),
            check_export_csv,
        ),
        Row(
            ds,
            "tb datasource export customer_transactions --rows 3 --target FILE",
            lambda s: (
                "datasource",
                "export",
                "customer_transactions",
                "--rows",
                "3",
                "--target",
                str(s.work / "transactions_export.ndjson"),
            ),
            check_export_ndjson,
        ),
        Row(ep, "tb endpoint ls", ("endpoint", "ls"), lists(*ENDPOINTS)),
        Row(
            ep,
            "tb endpoint data customer_cltv --customer_id cust_034",
            ("endpoint", "data", "customer_cltv", "--customer_id", "cust_034"),
            check_endpoint_data,
        ),
        Row(
            ep,
            "tb endpoint data customer_cltv --customer_id cust_034 --format json",
            ("endpoint", "data", "customer_cltv", "--customer_id", "cust_034", "--format", "json"),
            check_endpoint_json,
        ),
        Row(ep, "tb endpoint url customer_cltv", ("endpoint", "url", "customer_cltv"), check_endpoint_url),
        Row(ep, "tb endpoint token customer_cltv", ("endpoint", "token", "customer_cltv"), check_endpoint_token),
        Row(
            ep,
            "tb endpoint stats customer_cltv --format json",
            ("endpoint", "stats", "customer_cltv", "--format", "json"),
            check_endpoint_stats,
        ),
        Row("pipe", "tb pipe ls", ("pipe", "ls"), lists(*ENDPOINTS)),
        Row("materialization", "tb materialization ls", ("materialization", "ls"), lists(*MATERIALIZATIONS)),
        Row("copy", "tb copy ls", ("copy", "ls"), check_none_listed),
        Row("sink", "tb sink ls", ("sink", "ls"), check_none_listed),
        Row(
            "sql",
            'tb sql "SELECT count() AS c FROM customers"',
            ("sql", "SELECT count() AS c FROM customers"),
            check_sql,
        ),
        Row("token", "tb token ls", ("token", "ls"), lists("customer_api_read")),
        Row(
            "token",
            "tb token create static fid_reader --scope PIPES:READ --resource customer_cltv",
            ("token", "create", "static", "fid_reader", "--scope", "PIPES:READ", "--resource", "customer_cltv"),
            check_token_created,
        ),
        Row("token", "tb token ls (after create)", ("token", "ls"), check_token_ls_after),
        Row("token", "tb token scopes fid_reader", ("token", "scopes", "fid_reader"), check_token_scopes),
        Row(
            "token",
            "tb token copy fid_reader",
            ("token", "copy", "fid_reader"),
            check_token_copy,
            runner=token_copy_runner,
        ),
        Row(
            "token",
            "tb token refresh fid_reader --yes",
            ("token", "refresh", "fid_reader", "--yes"),
            check_token_refresh,
        ),
        Row("token", "tb token rm fid_reader --yes", ("token", "rm", "fid_reader", "--yes"), check_token_rm),
        Row("job", "tb job ls", ("job", "ls"), check_job_ls),
        Row(
            "job", "tb job details JOB_ID", lambda s: ("job", "details", s.state.get("job", "none")), check_job_details
        ),
        Row(
            "job",
            "tb job cancel JOB_ID (a finished import: refused)",
            lambda s: ("job", "cancel", s.state.get("job", "none")),
            check_job_cancel,
        ),
        Row("secret", "tb secret set fid_secret VALUE", ("secret", "set", "fid_secret", "s3cr3t"), check_secret_set),
        Row("secret", "tb secret ls", ("secret", "ls"), lists("fid_secret")),
        Row("secret", "tb secret rm fid_secret", ("secret", "rm", "fid_secret"), check_secret_rm),
        Row("connection", "tb connection ls", ("connection", "ls"), check_connection_ls),
        Row(
            ds,
            "tb datasource replace customers FILE",
            lambda s: ("datasource", "replace", "customers", str(s.work / "customers_two.ndjson")),
            check_replace,
        ),
        Row(
            ds,
            "tb datasource replace customer_transactions FILE --sql-condition ...",
            lambda s: (
                "datasource",
                "replace",
                "customer_transactions",
                str(s.work / "transactions_cust_034.ndjson"),
                "--sql-condition",
                "lower(trim(customer_id)) = 'cust_034'",
            ),
            check_replace_condition,
        ),
        Row(
            ds,
            "tb datasource delete customer_transactions --sql-condition ... --yes --wait",
            (
                "datasource",
                "delete",
                "customer_transactions",
                "--sql-condition",
                "lower(trim(customer_id)) = 'cust_001'",
                "--yes",
                "--wait",
            ),
            check_delete,
        ),
        Row(
            ds,
            "tb datasource truncate customer_events --yes",
            ("datasource", "truncate", "customer_events", "--yes"),
            check_truncate,
        ),
        Row(
            ds,
            "tb datasource truncate customer_transactions --yes --cascade",
            ("datasource", "truncate", "customer_transactions", "--yes", "--cascade"),
            check_truncate_cascade,
        ),
        Row(
            "build",
            "tb build (a project folder not built before)",
            ("build",),
            check_build,
            setup=setup_fresh,
            runner=run_in_fresh_project,
        ),
        Row("dev", "tb dev (ready, then SIGINT)", ("dev",), check_dev, runner=run_dev),
        Row("test", "tb test run", ("test", "run"), check_test_run, setup=export_tests),
        Row("test", "tb test update customer_cltv", ("test", "update", "customer_cltv"), check_test_update),
        Row("deployment", "tb deployment ls", ("deployment", "ls"), check_deployment_ls),
        Row(
            "deployment",
            "tb deployment create --wait (a new endpoint)",
            ("deployment", "create", "--wait"),
            check_deployment_created,
            setup=add_probe(1),
        ),
        Row("deployment", "tb deployment promote", ("deployment", "promote"), check_promoted),
        Row(
            "deployment",
            "tb deployment create --wait (the endpoint changed)",
            ("deployment", "create", "--wait"),
            check_deployment_created,
            setup=add_probe(2),
        ),
        Row("deployment", "tb deployment discard", ("deployment", "discard"), check_discarded),
        Row("info", "tb info", ("info",), check_info),
        Row(
            "local",
            "tb local start",
            ("local", "start", "--skip-new-version"),
            check_local_start,
            unsupported="needs Docker (it starts the Tinybird Local container); `tbkit serve` stands in for it",
            timeout=60,
        ),
        Row(
            ds,
            "tb datasource sample customers",
            ("datasource", "sample", "customers"),
            fails_saying(NO_CONNECTORS, "that there are no connectors"),
            unsupported="samples an S3, GCS or DynamoDB connection; the embedded server has no connectors",
        ),
        Row(
            ds,
            "tb datasource sync customers --yes",
            ("datasource", "sync", "customers", "--yes"),
            fails_saying(NO_CONNECTORS, "that there are no connectors"),
            unsupported="syncs an S3 or GCS connection; the embedded server has no connectors",
        ),
        Row(
            "connection",
            "tb connection create s3",
            ("connection", "create", "s3"),
            check_s3,
            unsupported="needs AWS credentials in the server (S3 integration); the embedded server has no connectors",
        ),
        Row(
            "connection",
            "tb build (a Kafka connection and datasource, as tb connection create kafka writes them)",
            ("build",),
            fails_saying(NO_CONNECTORS, "that there are no connectors"),
            unsupported="a Kafka datasource needs a Kafka connector; the embedded server has no connectors",
            setup=setup_kafka,
            runner=run_in_kafka_project,
        ),
    ]


def render(results: dict[str, list[Outcome] | str], matrix: list[Row], test_name: str) -> str:
    """docs/FIDELITY.md: one row per command, one column per tb version (or why the column is empty)."""
    versions = list(results)
    lines = [
        "# `tb --local` against `tbkit serve`",
        "",
        f"Written by `{test_name}` from its last run: every command below ran with the real `tb` against a fresh",
        "`tbkit serve` (its own data directory, a copy of the project, the fixtures appended by the rows above it),",
        "and its output and the server's resulting state were checked. Do not edit by hand.",
        "",
    ]
    for version in versions:
        if isinstance(results[version], str):
            lines.append(f"tb {version}: {results[version]}")
            lines.append("")
    lines += ["| Group | Command | " + " | ".join(f"tb {v}" for v in versions) + " |"]
    lines += ["|---|---|" + "---|" * len(versions)]
    for i, row in enumerate(matrix):
        cells = []
        for version in versions:
            outcome = results[version]
            cells.append("skipped (see above)" if isinstance(outcome, str) else outcome[i].cell())
        command, _, note = row.shown.replace("|", "\\|").partition(" (")
        shown = f"`{command}`" + (f" ({note}" if note else "")
        lines.append(f"| {row.group} | {shown} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
