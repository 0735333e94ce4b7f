"""The embedded engine on both chDB generations it runs on.

chDB 4 (the pinned version) gives every connection a session of its own, so read connections are made
read-only with `SET readonly = 2`. chDB 3.x (3.6.0 is ClickHouse 25.5, the closest to Tinybird Local's 25.3;
`make check-chdb36` runs on it) holds one session per process: there, a read carries its settings in its own
SETTINGS clause (`ReadOnlyStatements`), so a read never leaves the session read-only for the writes that
follow, and a write never runs on a read connection. These tests run on whichever chDB is installed, and run
the shared-session path on chDB 4 too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chdb
import pytest

from tbkit.engine import Engine
from tbkit.engine.connections import ReadOnlyStatements

ROOT = Path(__file__).resolve().parent.parent
CHDB36 = ROOT / ".venv-chdb36" / "bin" / "tbkit"
SLOW = "SELECT sum(sipHash64(number)) FROM numbers(20000000000)"
ENV = {**os.environ, "TB_CLI_TELEMETRY_OPTOUT": "1"}
# Every golden case of the project (`- name:` entries of fixtures/cases/*.yaml).
CASES = sum(
    line.lstrip().startswith("- name:")
    for path in (ROOT / "fixtures" / "cases").glob("*.yaml")
    for line in path.read_text().splitlines()
)


def chdb_major() -> int:
    return int(chdb.__version__.split(".")[0])


def setting(conn: Any, name: str) -> str:
    return conn.query(f"SELECT getSetting('{name}')", "TSV").bytes().decode().strip()


@pytest.fixture
def scratch(engine: Engine) -> Iterator[str]:
    """A database with one table `t` holding the rows 1, 2, 3."""
    name = f"versions_{uuid.uuid4().hex[:10]}"
    engine.execute(f"CREATE DATABASE {name}")
    engine.execute(f"CREATE TABLE {name}.t (n UInt8) ENGINE = MergeTree ORDER BY n")
    engine.execute(f"INSERT INTO {name}.t VALUES (1), (2), (3)")
    yield name
    engine.execute(f"DROP DATABASE IF EXISTS {name} SYNC")


def test_connections_share_one_session_only_before_chdb_4(engine):
    assert (engine.connections.shared is not None) == (chdb_major() < 4), chdb.__version__


def test_reads_leave_write_connections_writable(engine, scratch):
    for _ in range(3):
        assert engine.execute(f"SELECT count() FROM {scratch}.t", readonly=True, timeout=5).bytes() == b"3\n"
        engine.execute(f"INSERT INTO {scratch}.t VALUES (4)")
        engine.execute(f"ALTER TABLE {scratch}.t DELETE WHERE n = 4 SETTINGS mutations_sync = 2")
    with engine.connections.connection() as conn:
        assert setting(conn, "readonly") == "0"
        assert setting(conn, "max_execution_time") == "0"
    assert engine.execute(f"SELECT count() FROM {scratch}.t").bytes() == b"3\n"


@pytest.mark.parametrize(
    ("sql", "answer"),
    [
        ("SELECT count() FROM {db}.t", b"3\n"),
        ("WITH 2 AS k SELECT count() FROM {db}.t WHERE n >= k", b"2\n"),
        ("(SELECT max(n) FROM {db}.t)", b"3\n"),
        ("SELECT sum(n) FROM {db}.t; ", b"6\n"),
        ("SELECT sum(n) FROM {db}.t -- a comment; DROP TABLE {db}.t", b"6\n"),
        ("SELECT 'it''s', '\\\\', count() FROM {db}.t", b"it\\'s\t\\\\\t3\n"),  # TSV escapes quotes and backslashes
        ("DESCRIBE TABLE {db}.t", b"n\tUInt8\t\t\t\t\t\n"),
        ("SELECT count() FROM {db}.t SETTINGS max_threads = 1", b"3\n"),
    ],
)
def test_a_statement_level_read_answers_as_a_read_connection(engine, scratch, sql, answer):
    sql = sql.format(db=scratch)
    assert engine.execute(sql, readonly=True, timeout=5).bytes() == answer
    with engine.connections.connection() as conn:
        assert ReadOnlyStatements(conn, 5).query(sql, "TSV").bytes() == answer


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO {db}.t VALUES (9)",
        "INSERT INTO {db}.t SELECT 9",
        "DROP TABLE {db}.t",
        "TRUNCATE TABLE {db}.t",
        "ALTER TABLE {db}.t DELETE WHERE 1",
        "CREATE TABLE {db}.u (n UInt8) ENGINE = Memory",
        "CREATE TABLE {db}.u ENGINE = MergeTree ORDER BY n AS SELECT n FROM {db}.t",
        "RENAME TABLE {db}.t TO {db}.u",
        "OPTIMIZE TABLE {db}.t FINAL",
        "SET readonly = 0",
        "SELECT 1; DROP TABLE {db}.t",
        "SELECT 1;\nTRUNCATE TABLE {db}.t",
        "SELECT 1 /* ; */; DROP TABLE {db}.t",
        "/* a comment */ DROP TABLE {db}.t",
        "",
    ],
)
def test_a_statement_level_read_refuses_every_write(engine, scratch, sql):
    sql = sql.format(db=scratch)
    with engine.connections.connection() as conn:
        with pytest.raises(RuntimeError) as refused:
            ReadOnlyStatements(conn, 5).query(sql, "TSV")
        assert "Code: " in str(refused.value)
        assert setting(conn, "readonly") == "0"  # the session is as it was
    assert engine.execute(f"SELECT count() FROM {scratch}.t").bytes() == b"3\n"
    assert engine.execute(f"EXISTS TABLE {scratch}.u").bytes() == b"0\n"


def test_a_statement_level_read_is_cancelled_at_its_limit_and_the_session_keeps_none(engine):
    with engine.connections.connection() as conn:
        with pytest.raises(RuntimeError, match="Code: 159"):
            ReadOnlyStatements(conn, 0.5).query(SLOW, "TSV")
        assert setting(conn, "max_execution_time") == "0"
        assert ReadOnlyStatements(conn, None).query("SELECT 1", "TSV").bytes() == b"1\n"


def test_drop_sync_finishes_on_a_new_data_directory(tmp_path):
    """chDB 3.x waits forever on DROP ... SYNC in a new directory unless it has metadata/ when it opens."""
    code = (
        "import sys\n"
        "from tbkit.engine import Engine\n"
        "engine = Engine.open(sys.argv[1])\n"
        "engine.execute('CREATE DATABASE d')\n"
        "engine.execute('CREATE TABLE d.t (n UInt8) ENGINE = MergeTree ORDER BY n')\n"
        "engine.execute('INSERT INTO d.t VALUES (1)')\n"
        "engine.execute('DROP TABLE d.t SYNC')\n"
        "engine.execute('DROP DATABASE d SYNC')\n"
        "print(engine.execute(\"SELECT count() FROM system.databases WHERE name = 'd'\").bytes().decode())\n"
        "engine.close()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "0"


def run_check(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600, check=False)


def test_every_golden_case_passes_over_one_shared_session():
    """`tbkit check` with the engine on chDB 3.x's path (one session, statement-level read settings)."""
    code = (
        "import sys\n"
        "from tbkit.engine import connections\n"
        "connections.Connections._shares_session = lambda self, conn: True\n"
        "from tbkit.cli import main\n"
        "sys.argv = ['tbkit', 'check']\n"
        "main()\n"
    )
    result = run_check([sys.executable, "-c", code])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{CASES} passed, 0 failed" in result.stdout


@pytest.mark.skipif(not CHDB36.exists(), reason="no .venv-chdb36: `make check-chdb36` creates it")
@pytest.mark.skipif(chdb_major() < 4, reason="this process already runs on chDB 3.x")
def test_every_golden_case_passes_on_chdb_36():
    version = subprocess.run(
        [str(CHDB36.parent / "python"), "-c", "import chdb; print(chdb.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == "3.6.0"
    result = run_check([str(CHDB36), "check"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{CASES} passed, 0 failed" in result.stdout
