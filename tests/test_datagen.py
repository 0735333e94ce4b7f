"""Our data generator (tools/customer_analytics): deterministic, the requested sizes, realistic shapes, and
malformed rows the embedded engine quarantines exactly as the report counts them; and the hook tbkit calls."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from customer_analytics import datagen
from customer_analytics.datagen import AS_OF_TEXT, DATASOURCES, SCALES, GenerationReport, generate, generate_scale
from customer_analytics.workload import WORKLOAD
from tbkit.datagen import GeneratedData, load_workload
from tbkit.engine import Workspace
from tbkit.errors import ParameterError
from tbkit.query import Reader

CUSTOMERS = 2000
SEED = 7


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GenerationReport:
    """One small dataset, shared read-only by the tests of this module."""
    return generate(tmp_path_factory.mktemp("datagen"), CUSTOMERS, seed=SEED)


def _lines(report: GenerationReport, datasource: str) -> list[str]:
    return Path(report.files[datasource].path).read_text(encoding="utf-8").splitlines()


def _rows(report: GenerationReport, datasource: str) -> list[dict]:
    """The lines that parse as JSON objects (malformed rows of other kinds included)."""
    rows = []
    for line in _lines(report, datasource):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _key(row: dict) -> str | None:
    value = row.get("customer_id")
    return value.strip().lower() if isinstance(value, str) else None


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_arguments_write_byte_identical_files(tmp_path: Path, generated: GenerationReport) -> None:
    again = generate(tmp_path / "again", CUSTOMERS, seed=SEED)
    other = generate(tmp_path / "other", CUSTOMERS, seed=SEED + 1)

    assert _digests(tmp_path / "again") == _digests(Path(generated.out_dir))
    assert {n: (f.rows, f.malformed, f.bytes) for n, f in again.files.items()} == {
        n: (f.rows, f.malformed, f.bytes) for n, f in generated.files.items()
    }
    assert _digests(tmp_path / "other") != _digests(tmp_path / "again")
    assert other.files["customer_events"].rows == again.files["customer_events"].rows


def test_parallel_workers_write_the_same_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "one", 1200, seed=3)
    generate(tmp_path / "two", 1200, seed=3, workers=2)

    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


def test_files_have_the_requested_number_of_rows(generated: GenerationReport) -> None:
    files = generated.files
    assert set(files) == set(DATASOURCES)
    assert files["customer_events"].rows == CUSTOMERS * 10
    assert files["customer_transactions"].rows == CUSTOMERS * 5
    assert files["customer_demographics"].rows == CUSTOMERS
    # Every customer once, plus about 5% re-sent.
    assert CUSTOMERS * 1.03 < files["customers"].rows < CUSTOMERS * 1.07
    for name, report in files.items():
        assert report.rows == len(_lines(generated, name))
        assert report.bytes == Path(report.path).stat().st_size
        assert report.malformed == sum(report.malformed_by_kind.values())
    assert generated.rows == sum(f.rows for f in files.values())


def test_malformed_rows_are_a_small_counted_share_of_every_kind(generated: GenerationReport) -> None:
    total = sum(f.malformed for f in generated.files.values())
    assert 0.0004 * generated.rows < total < 0.002 * generated.rows
    kinds = Counter()
    for report in generated.files.values():
        kinds.update(report.malformed_by_kind)
    assert set(kinds) == {"invalid_json", "wrong_type", "missing_field", "out_of_range"}
    for name in DATASOURCES:
        parsed = sum(1 for line in _lines(generated, name) if _parses(line))
        assert generated.files[name].rows - parsed == generated.files[name].malformed_by_kind.get("invalid_json", 0)


def _parses(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_every_share_of_malformed_rows_is_exact(tmp_path: Path) -> None:
    none = generate(tmp_path / "none", 300, malformed_share=0)
    every = generate(tmp_path / "every", 300, malformed_share=1)

    assert all(f.malformed == 0 for f in none.files.values())
    assert all(f.malformed == f.rows for f in every.files.values())


def test_activity_happens_after_signup_and_up_to_as_of(generated: GenerationReport) -> None:
    signups = {_key(r): r["signup_date"] for r in _rows(generated, "customers") if _key(r) and "signup_date" in r}
    moments = [(_key(r), r.get("timestamp")) for r in _rows(generated, "customer_events")]
    moments += [(_key(r), r.get("transaction_date")) for r in _rows(generated, "customer_transactions")]
    checked = 0
    for key, moment in moments:
        # Malformed rows may lack the ID or the date, or carry month 13.
        if key in signups and isinstance(moment, str) and moment[5:7] != "13":
            assert signups[key] < moment <= AS_OF_TEXT
            checked += 1
    assert checked > 0.99 * len(moments)
    years = Counter(moment[:4] for _, moment in moments if isinstance(moment, str))
    # Spread over about three years, denser towards as_of.
    assert min(years) == "2022"
    assert years["2025"] * 2 > years["2024"] > years["2023"]


def test_resent_customers_come_later_in_the_file_with_a_newer_record(generated: GenerationReport) -> None:
    seen: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for position, row in enumerate(_rows(generated, "customers")):
        if _key(row) and "timestamp" in row and isinstance(row.get("lifetime_value"), float):
            seen[_key(row)].append((position, row))
    resent = [rows for rows in seen.values() if len(rows) == 2]

    assert 0.03 * CUSTOMERS < len(resent) < 0.07 * CUSTOMERS
    for (first_at, first), (second_at, second) in resent:
        assert second_at > first_at
        assert second["timestamp"] > first["timestamp"]
        assert second["lifetime_value"] != first["lifetime_value"]
        assert second["signup_date"] == first["signup_date"]


def test_customer_ids_are_spelled_several_ways_in_every_file(generated: GenerationReport) -> None:
    canonical = {datagen.customer_id(n, CUSTOMERS) for n in range(1, CUSTOMERS + 1)}
    assert generated.first_customer_id == "cust_0000001"
    assert generated.last_customer_id == f"cust_{CUSTOMERS:07d}"
    assert generated.customer_id_format.format(42) == "cust_0000042"
    assert set(generated.sample_customer_ids) <= canonical
    for name in DATASOURCES:
        sent = [r["customer_id"] for r in _rows(generated, name) if isinstance(r.get("customer_id"), str)]
        assert {value.strip().lower() for value in sent} <= canonical
        spellings = Counter(
            "canonical" if v == v.strip().lower() else "padded" if v != v.strip() else "cased" for v in sent
        )
        assert 0.8 < spellings["canonical"] / len(sent) < 0.97, name
        assert spellings["padded"] and spellings["cased"], name


def test_activity_is_skewed_across_customers(generated: GenerationReport) -> None:
    per_customer = Counter(_key(r) for r in _rows(generated, "customer_events") if _key(r))
    counts = sorted(per_customer.values(), reverse=True)
    top_one_percent = sum(counts[: CUSTOMERS // 100])

    assert top_one_percent > 0.15 * sum(counts)
    assert counts[len(counts) // 2] < 10
    assert len(per_customer) < CUSTOMERS  # some customers have no events at all
    heaviest_id, heaviest_events = generated.heaviest_customers[0]
    # The report counts every row, malformed ones included.
    assert heaviest_events >= counts[0]
    assert per_customer[heaviest_id] > 0.99 * heaviest_events


def test_event_types_carry_only_their_own_fields(generated: GenerationReport) -> None:
    shapes = defaultdict(set)
    for row in _rows(generated, "customer_events"):
        shapes[row.get("event_type")].add(frozenset(row) - {"event_id", "customer_id", "event_type", "timestamp"})
    # Malformed rows may add a bad event_value; valid ones never carry keys of another type.
    assert frozenset() in shapes["login"] and frozenset() in shapes["page_view"]
    assert frozenset({"product_id", "category"}) in shapes["add_to_cart"]
    assert frozenset({"event_value", "product_id", "category"}) in shapes["purchase"]
    for kind in ("login", "page_view"):
        assert shapes[kind] <= {frozenset(), frozenset({"event_value"})}


def test_profiles_have_realistic_values(generated: GenerationReport) -> None:
    rows = [r for r in _rows(generated, "customers") if isinstance(r.get("lifetime_value"), float)]
    values = sorted(r["lifetime_value"] for r in rows)
    ages = [r["age"] for r in rows if isinstance(r.get("age"), int) and r["age"] not in (300, -4)]

    assert min(ages) >= 18 and max(ages) <= 80
    assert 25 <= len({r.get("location") for r in rows}) <= 35
    assert {r.get("gender") for r in rows} >= {"female", "male", "non_binary"}
    assert sum(v < 500 for v in values) > 0.8 * len(values)
    assert values[-1] > 20 * values[len(values) // 2]
    amounts = sorted(
        r["transaction_amount"]
        for r in _rows(generated, "customer_transactions")
        if isinstance(r.get("transaction_amount"), int | float)
    )
    assert amounts[-1] > 20 * amounts[len(amounts) // 2]
    demographics = {_key(r): (r.get("age"), r.get("location")) for r in _rows(generated, "customer_demographics")}
    profile = {_key(r): (r.get("age"), r.get("location")) for r in rows}
    agreeing = sum(1 for key, value in demographics.items() if profile.get(key) == value)
    assert agreeing > 0.99 * len(demographics)


def test_engine_quarantines_exactly_the_malformed_rows(workspace: Workspace, generated: GenerationReport) -> None:
    for name in DATASOURCES:
        result = workspace.append(name, Path(generated.files[name].path))
        report = generated.files[name]
        assert (result.successful_rows, result.quarantined_rows) == (report.valid, report.malformed), name

    summary = Reader(workspace).endpoint("cltv_summary")["data"][0]
    assert summary["customers"] == generated.customers_with_transactions
    assert summary["transactions"] == generated.files["customer_transactions"].valid
    segments = Reader(workspace).endpoint("customer_segments_summary", {"as_of": AS_OF_TEXT})["data"]
    assert sum(s["customers"] for s in segments) == generated.customers_with_profile
    assert {s["loyalty_segment"] for s in segments} == {"Loyal", "Established", "New"}
    engagement = Reader(workspace).endpoint("customer_engagement_analysis", {"as_of": AS_OF_TEXT, "limit": 10000})
    assert engagement["rows"] == generated.customers_with_events
    assert {r["activity_level"] for r in engagement["data"]} == {"Active", "Recent", "Inactive", "Dormant"}
    by_location = Reader(workspace).endpoint("cltv_by_location")["data"]
    assert 25 <= len(by_location) <= 35


def test_named_scales() -> None:
    assert SCALES["S"].rows() == {
        "customers": 10_000,
        "customer_events": 100_000,
        "customer_transactions": 50_000,
        "customer_demographics": 10_000,
    }
    assert SCALES["M"].customers == 100_000 and SCALES["M"].rows()["customer_events"] == 1_000_000
    assert SCALES["L"].rows() == {
        "customers": 1_000_000,
        "customer_events": 10_000_000,
        "customer_transactions": 5_000_000,
        "customer_demographics": 1_000_000,
    }


@pytest.mark.parametrize(
    "arguments",
    [
        {"customers": 0},
        {"customers": 10, "events_per_customer": -1},
        {"customers": 10, "malformed_share": 1.5},
        {"customers": 10, "workers": 0},
    ],
)
def test_invalid_arguments_are_parameter_errors(tmp_path: Path, arguments: dict) -> None:
    with pytest.raises(ParameterError):
        generate(tmp_path, **arguments)


def test_unknown_scale_is_a_parameter_error(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="use one of S, M, L"):
        generate_scale(tmp_path, "XL")


def test_the_hook_reports_what_the_generator_wrote_in_tbkit_terms(tmp_path: Path) -> None:
    """A row of tbkit's sizes is a customer; the report is tbkit's GeneratedData, our details under `details`."""
    data = WORKLOAD.generate(tmp_path, 300, 3, 2)
    report = generate(tmp_path / "direct", 300, seed=3)

    assert isinstance(data, GeneratedData) and (data.size, data.seed) == (300, 3)
    assert list(data.files) == list(DATASOURCES) == list(WORKLOAD.datasources)
    for name, file in data.files.items():
        assert (file.rows, file.malformed, file.bytes) == (
            report.files[name].rows,
            report.files[name].malformed,
            report.files[name].bytes,
        )
        assert (tmp_path / f"{name}.ndjson").read_bytes() == Path(report.files[name].path).read_bytes()
    assert data.details["customers_with_events"] == report.customers_with_events
    assert data.details["malformed_by_kind"]["customer_events"] == report.files["customer_events"].malformed_by_kind
    assert WORKLOAD.scales == {"S": 10_000, "M": 100_000, "L": 1_000_000}


def test_the_configured_hook_is_ours_and_fits_the_protocol(layout) -> None:
    from tbkit.project.config import find_config

    config = find_config(layout.project_dir)
    assert config.workload == "customer_analytics.workload:WORKLOAD" and config.path.name == "pyproject.toml"
    loaded = load_workload(config, "a test")
    assert loaded.implementation is WORKLOAD and loaded.datasources == DATASOURCES
    assert loaded.endpoints == ("customer_segment_lookup", "customer_cltv", *loaded.endpoints[2:])
    assert {"customer_id"} == set(loaded.parameters(100, 0).default("customer_cltv"))
