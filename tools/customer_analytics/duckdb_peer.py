"""The six endpoints computed in DuckDB, in-process, over the same NDJSON: the benchmark's peer.

A plain DuckDB user's setup: the four files loaded into native tables (sorted by customer and time), rows
validated with the same rules the engine applies (a row with a missing required value or a value that does
not fit its type is left out), and every endpoint answered from those base tables with SQL that has the same
semantics as the `.pipe` files: normalized IDs, latest customer record, events at or before `as_of`,
inclusive windows, calendar-day differences, rounding to cents, the same thresholds and total order.
DuckDB is a bench-only dependency (`pip install '.[bench]'`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tbkit.errors import TbkitError

_VALIDATED = {
    "customers": (
        "SELECT customer_id, name, email, CASE WHEN regexp_full_match(age, '[0-9]+') THEN TRY_CAST(age AS UTINYINT) END AS age, gender, location, "
        "TRY_CAST(signup_date AS TIMESTAMP) AS signup_date, TRY_CAST(lifetime_value AS DOUBLE) AS lifetime_value, "
        "TRY_CAST(timestamp AS TIMESTAMP) AS timestamp FROM raw",
        "customer_id, name, email, age, gender, location, signup_date, lifetime_value, timestamp",
        "lower(trim(customer_id)), timestamp",
    ),
    "customer_events": (
        "SELECT event_id, customer_id, event_type, "
        "CASE WHEN event_value IS NULL THEN 0 ELSE TRY_CAST(event_value AS DOUBLE) END AS event_value, "
        "coalesce(product_id, '') AS product_id, coalesce(category, '') AS category, "
        "TRY_CAST(timestamp AS TIMESTAMP) AS timestamp FROM raw",
        "event_id, customer_id, event_type, event_value, timestamp",
        "timestamp",
    ),
    "customer_transactions": (
        "SELECT customer_id, TRY_CAST(transaction_date AS TIMESTAMP) AS transaction_date, "
        "TRY_CAST(transaction_amount AS DOUBLE) AS transaction_amount FROM raw",
        "customer_id, transaction_date, transaction_amount",
        "lower(trim(customer_id)), transaction_date",
    ),
    "customer_demographics": (
        "SELECT customer_id, CASE WHEN regexp_full_match(age, '[0-9]+') THEN TRY_CAST(age AS UTINYINT) END AS age, "
        "location FROM raw",
        "customer_id, age, location",
        "lower(trim(customer_id))",
    ),
}
_COLUMNS = {
    "customers": [
        "customer_id",
        "name",
        "email",
        "age",
        "gender",
        "location",
        "signup_date",
        "lifetime_value",
        "timestamp",
    ],
    "customer_events": ["event_id", "customer_id", "event_type", "event_value", "product_id", "category", "timestamp"],
    "customer_transactions": ["customer_id", "transaction_date", "transaction_amount"],
    "customer_demographics": ["customer_id", "age", "location"],
}


def _time_literal(value: str | None) -> str:
    return "now()::TIMESTAMP" if value is None else f"TIMESTAMP '{value}'"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DuckDBPeer:
    """The six endpoints in DuckDB over the same files (a `tbkit.datagen.Peer`)."""

    name = "DuckDB"

    def __init__(self, threads: int = 2):
        try:
            import duckdb
        except ImportError:
            raise TbkitError("DuckDB is not installed: pip install '.[bench]' (it is a bench-only extra)") from None
        self.version = duckdb.__version__
        self.conn = duckdb.connect()
        self.conn.execute(f"SET threads = {threads}")
        self.conn.execute("SET enable_progress_bar = false")

    def load(self, files: Mapping[str, Path]) -> dict[str, int]:
        """Load each file into a validated, sorted table; the rows kept per datasource."""
        loaded = {}
        for name, path in files.items():
            select, required, order = _VALIDATED[name]
            # One row per line, then JSON per line: read_json's ignore_errors can drop a valid row next to a
            # broken one, which would not be the same rows as the engine keeps. A line that is not JSON becomes
            # NULL before any JSON function sees it: the optimizer pushes and reorders filters, and the JSON
            # functions raise on invalid input.
            values = ", ".join(f"json_extract_string(doc, '$.{c}') AS {c}" for c in _COLUMNS[name])
            self.conn.execute(
                f"CREATE OR REPLACE TEMP VIEW raw AS SELECT {values} FROM (SELECT CASE WHEN json_valid(line) THEN line END AS doc "
                f"FROM read_csv('{path}', columns = {{'line': 'VARCHAR'}}, header = false, delim = '\x01', quote = '', "
                "escape = '', auto_detect = false, max_line_size = 16777216)) WHERE json_type(doc) = 'OBJECT'"
            )
            condition = " AND ".join(f"{c} IS NOT NULL" for c in required.split(", "))
            self.conn.execute(
                f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM ({select}) WHERE {condition} ORDER BY {order}"
            )
            loaded[name] = self.conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        return loaded

    def query(self, endpoint: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """The endpoint's rows for these parameters, as dicts."""
        sql = getattr(self, f"_{endpoint}")(params)
        cursor = self.conn.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _customer_segment_lookup(self, p: dict[str, str]) -> str:
        as_of, key = _time_literal(p.get("as_of")), f"lower(trim({_text(p['customer_id'])}))"
        return f"""
WITH profile AS (
    SELECT lower(trim(customer_id)) AS customer_id,
           arg_max({{'name': name, 'email': email, 'age': age, 'gender': gender, 'location': location,
                    'signup_date': signup_date, 'lifetime_value': lifetime_value}}, timestamp) AS r
    FROM customers WHERE lower(trim(customer_id)) = {key} GROUP BY 1
), activity AS (
    SELECT count(*) AS total_events, count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           coalesce(sum(event_value) FILTER (WHERE event_type = 'purchase'), 0) AS purchase_value,
           max(timestamp) AS last_event_at
    FROM customer_events WHERE lower(trim(customer_id)) = {key} AND timestamp <= {as_of}
)
SELECT customer_id, r.name, r.email, r.age, r.gender, r.location, strftime(r.signup_date, '%Y-%m-%d %H:%M:%S') AS signup_date,
       round(r.lifetime_value, 2) AS lifetime_value, date_diff('day', r.signup_date::DATE, ({as_of})::DATE) AS tenure_days,
       CASE WHEN r.lifetime_value >= 1000 THEN 'VIP' WHEN r.lifetime_value >= 500 THEN 'High Value'
            WHEN r.lifetime_value >= 100 THEN 'Medium Value' ELSE 'Low Value' END AS value_segment,
       CASE WHEN tenure_days >= 730 THEN 'Loyal' WHEN tenure_days >= 180 THEN 'Established' ELSE 'New' END AS loyalty_segment,
       total_events, purchases, round(purchase_value, 2) AS purchase_value,
       strftime(last_event_at, '%Y-%m-%d %H:%M:%S') AS last_event_at,
       date_diff('day', last_event_at::DATE, ({as_of})::DATE) AS days_since_last_event,
       CASE WHEN days_since_last_event IS NULL THEN 'Dormant' WHEN days_since_last_event <= 7 THEN 'Active'
            WHEN days_since_last_event <= 30 THEN 'Recent' WHEN days_since_last_event <= 90 THEN 'Inactive'
            ELSE 'Dormant' END AS activity_level
FROM profile, activity WHERE r.signup_date <= {as_of}"""

    def _customer_engagement_analysis(self, p: dict[str, str]) -> str:
        as_of = _time_literal(p.get("as_of"))
        start = _time_literal(p["start_date"]) if p.get("start_date") else "TIMESTAMP '1970-01-01 00:00:00'"
        end = f"least({_time_literal(p['end_date'])}, {as_of})" if p.get("end_date") else as_of
        filters = [f"timestamp >= {start}", f"timestamp <= {end}"]
        if p.get("event_type"):
            types = ", ".join(_text(t) for t in p["event_type"].split(","))
            filters.append(f"event_type IN ({types})")
        if p.get("customer_id"):
            filters.append(f"lower(trim(customer_id)) = lower(trim({_text(p['customer_id'])}))")
        level = f"WHERE activity_level = {_text(p['activity_level'])}" if p.get("activity_level") else ""
        return f"""
SELECT * FROM (
    SELECT lower(trim(customer_id)) AS customer_id, count(*) AS total_events, count(DISTINCT event_type) AS distinct_event_types,
           round(sum(event_value), 2) AS total_event_value, strftime(min(timestamp), '%Y-%m-%d %H:%M:%S') AS first_event_at,
           max(timestamp) AS last_at, strftime(last_at, '%Y-%m-%d %H:%M:%S') AS last_event_at,
           date_diff('day', last_at::DATE, ({as_of})::DATE) AS days_since_last_event,
           CASE WHEN days_since_last_event <= 7 THEN 'Active' WHEN days_since_last_event <= 30 THEN 'Recent'
                WHEN days_since_last_event <= 90 THEN 'Inactive' ELSE 'Dormant' END AS activity_level
    FROM customer_events WHERE {" AND ".join(filters)} GROUP BY 1
) {level}
ORDER BY total_events DESC, last_at DESC, customer_id LIMIT {int(p.get("limit", 100))}"""

    def _customer_segments_summary(self, p: dict[str, str]) -> str:
        as_of = _time_literal(p.get("as_of"))
        filters = [f"r.signup_date <= {as_of}"]
        if p.get("location"):
            filters.append(f"lower(trim(r.location)) = lower(trim({_text(p['location'])}))")
        if p.get("min_age"):
            filters.append(f"r.age >= {int(p['min_age'])}")
        if p.get("max_age"):
            filters.append(f"r.age <= {int(p['max_age'])}")
        return f"""
WITH current AS (
    SELECT arg_max({{'age': age, 'location': location, 'signup_date': signup_date, 'lifetime_value': lifetime_value}},
                   timestamp) AS r
    FROM customers GROUP BY lower(trim(customer_id))
)
SELECT CASE WHEN r.lifetime_value >= 1000 THEN 'VIP' WHEN r.lifetime_value >= 500 THEN 'High Value'
            WHEN r.lifetime_value >= 100 THEN 'Medium Value' ELSE 'Low Value' END AS value_segment,
       CASE WHEN date_diff('day', r.signup_date::DATE, ({as_of})::DATE) >= 730 THEN 'Loyal'
            WHEN date_diff('day', r.signup_date::DATE, ({as_of})::DATE) >= 180 THEN 'Established' ELSE 'New' END AS loyalty_segment,
       count(*) AS customers, round(avg(r.lifetime_value), 2) AS avg_lifetime_value,
       round(sum(r.lifetime_value), 2) AS total_lifetime_value
FROM current WHERE {" AND ".join(filters)}
GROUP BY 1, 2
ORDER BY list_position(['VIP', 'High Value', 'Medium Value', 'Low Value'], value_segment),
         list_position(['Loyal', 'Established', 'New'], loyalty_segment)"""

    def _cltv_summary(self, p: dict[str, str]) -> str:
        return """
SELECT round(coalesce(avg(cltv), 0), 2) AS average_cltv, count(*) AS customers, coalesce(sum(n), 0) AS transactions,
       round(coalesce(sum(cltv), 0), 2) AS total_revenue
FROM (SELECT sum(transaction_amount) AS cltv, count(*) AS n FROM customer_transactions GROUP BY lower(trim(customer_id)))"""

    def _customer_cltv(self, p: dict[str, str]) -> str:
        key = f"lower(trim({_text(p['customer_id'])}))"
        return f"""
SELECT lower(trim(customer_id)) AS customer_id, round(sum(transaction_amount), 2) AS cltv, count(*) AS transactions,
       strftime(min(transaction_date), '%Y-%m-%d %H:%M:%S') AS first_transaction_at,
       strftime(max(transaction_date), '%Y-%m-%d %H:%M:%S') AS last_transaction_at
FROM customer_transactions WHERE lower(trim(customer_id)) = {key} GROUP BY 1"""

    def _cltv_by_location(self, p: dict[str, str]) -> str:
        return """
WITH locations AS (
    SELECT lower(trim(customer_id)) AS k, min(location) AS location FROM customer_demographics GROUP BY 1
), values AS (
    SELECT lower(trim(customer_id)) AS k, sum(transaction_amount) AS cltv FROM customer_transactions GROUP BY 1
)
SELECT location, count(*) AS customers, round(avg(cltv), 2) AS average_cltv, round(sum(cltv), 2) AS total_cltv
FROM locations JOIN values USING (k) GROUP BY location ORDER BY average_cltv DESC, location"""

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.conn.close()
