"""Loading the Tinybird project: resources, parameters, tokens, and errors that name the file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tbkit.errors import NotFoundError, ProjectError
from tbkit.project.datafiles import _load_datasource, load_project

ENDPOINTS = {
    "customer_segment_lookup",
    "customer_engagement_analysis",
    "customer_segments_summary",
    "cltv_summary",
    "customer_cltv",
    "cltv_by_location",
}


def test_project_has_the_four_datasources_six_endpoints_and_materializations(project):
    assert set(project.landing_datasources) == {
        "customers",
        "customer_events",
        "customer_demographics",
        "customer_transactions",
    }
    assert set(project.endpoints) == ENDPOINTS
    targets = {p.output_node.datasource for p in project.materializations.values()}
    assert targets == {
        "customers_latest_mv",
        "customer_events_by_customer_mv",
        "customer_engagement_mv",
        "customer_cltv_mv",
    }
    assert project.datasources["customers_latest_mv"].engine == "ReplacingMergeTree"
    assert project.datasources["customer_engagement_mv"].engine == "AggregatingMergeTree"
    assert project.datasources["customer_cltv_mv"].engine == "AggregatingMergeTree"


def test_customers_keeps_the_latest_record_by_timestamp(project):
    customers = project.datasources["customers"]
    assert customers.engine == "ReplacingMergeTree"
    assert customers.engine_args["ver"] == "timestamp"


def test_demographics_is_not_partitioned_by_location(project):
    args = project.datasources["customer_demographics"].engine_args
    assert "location" not in args.get("partition_key", "")
    assert "partition" in project.datasources["customer_demographics"].description.lower()


def test_every_landing_column_has_a_json_path_and_optional_event_fields_have_defaults(project):
    for datasource in project.landing_datasources.values():
        for column in datasource.columns:
            assert column.jsonpath == f"$.{column.name}", (datasource.name, column.name)
    events = project.datasources["customer_events"]
    assert {c.name for c in events.columns if not c.required} == {"event_value", "product_id", "category"}


def test_every_endpoint_parameter_is_typed_and_described(project):
    for pipe in project.endpoints.values():
        assert pipe.description
        for parameter in pipe.parameters.values():
            assert parameter.type in {"String", "DateTime", "Int32", "UInt8", "Array(String)"}, parameter
            assert parameter.description, f"{pipe.name}.{parameter.name} has no description"


def test_parameters_merge_across_nodes(project):
    lookup = project.endpoints["customer_segment_lookup"].parameters
    assert set(lookup) == {"customer_id", "as_of"}
    assert lookup["customer_id"].required is True
    assert lookup["as_of"].type == "DateTime"
    engagement = project.endpoints["customer_engagement_analysis"].parameters
    assert set(engagement) == {
        "as_of",
        "start_date",
        "end_date",
        "event_type",
        "customer_id",
        "activity_level",
        "limit",
    }
    assert engagement["limit"].default == 100
    assert engagement["event_type"].type == "Array(String)"
    assert engagement["activity_level"].enum == ["Active", "Recent", "Inactive", "Dormant"]


def test_tokens_are_scoped_to_their_resources(project):
    scopes = {(t.name, t.scope, t.resource) for t in project.tokens}
    assert {("customer_api_read", "READ", name) for name in ENDPOINTS} <= scopes
    assert ("customer_events_append", "APPEND", "customer_events") in scopes


def test_unknown_endpoint_lists_the_known_ones(project):
    with pytest.raises(NotFoundError, match="cltv_summary"):
        project.endpoint("nope")


@pytest.fixture
def broken(tmp_path: Path, layout) -> Path:
    """A copy of the project to break."""
    root = tmp_path / "tinybird"
    shutil.copytree(layout.project_dir, root, ignore=shutil.ignore_patterns("fixtures", "tests"))
    return root


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_syntax_error_names_the_file_and_line(broken: Path):
    path = broken / "datasources" / "customers.datasource"
    _replace(path, "`age` UInt8 `json:$.age`,", "`age`,")
    with pytest.raises(ProjectError) as error:
        load_project(broken)
    message = str(error.value)
    assert "customers.datasource:" in message and "type" in message
    line = int(message.split("customers.datasource:", 1)[1].split(":", 1)[0])
    assert path.read_text().splitlines()[line - 1].strip() == "`age`,"


def test_reading_an_unknown_table_names_the_node_and_its_line(broken: Path):
    path = broken / "endpoints" / "cltv_summary.pipe"
    _replace(path, "FROM customer_cltv_mv FINAL", "FROM customer_cltv_oops FINAL")
    with pytest.raises(ProjectError) as error:
        load_project(broken)
    message = str(error.value)
    assert "cltv_summary.pipe:" in message
    assert "customers_with_transactions" in message and "customer_cltv_oops" in message
    line = int(message.split("cltv_summary.pipe:", 1)[1].split(":", 1)[0])
    assert path.read_text().splitlines()[line - 1].startswith("NODE customers_with_transactions")


def test_materialization_into_an_unknown_datasource(broken: Path):
    _replace(broken / "materializations" / "customers_latest.pipe", "DATASOURCE customers_latest_mv", "DATASOURCE nope")
    with pytest.raises(ProjectError, match="unknown datasource 'nope'"):
        load_project(broken)


def test_a_name_defined_twice(broken: Path):
    shutil.copy(broken / "endpoints" / "cltv_summary.pipe", broken / "materializations" / "cltv_summary.pipe")
    with pytest.raises(ProjectError, match="defined twice"):
        load_project(broken)


def test_an_append_token_on_a_pipe_is_refused(broken: Path):
    _replace(broken / "endpoints" / "cltv_summary.pipe", 'TOKEN "customer_api_read" READ', 'TOKEN "x" APPEND')
    with pytest.raises(ProjectError, match="cltv_summary.pipe.*Only READ is allowed"):
        load_project(broken)


def test_a_missing_project_folder(tmp_path: Path):
    with pytest.raises(ProjectError, match="not found"):
        load_project(tmp_path / "missing")


@pytest.mark.parametrize(
    ("old", "new", "phrase"),
    [
        ("    {% end %}\n", "\n", "Missing {%end%}"),  # tinybird's UnClosedIfError
        ("String(\n", "String((\n", "'(' was never closed"),  # Python's SyntaxError
        ("    SELECT\n", "    {% set y = 1 / 0 %}\n    SELECT\n", "placeholder values: division by zero"),
    ],
)
def test_a_template_tinybird_cannot_parse_or_render_is_a_project_error_naming_the_file(broken: Path, old, new, phrase):
    path = broken / "endpoints" / "customer_cltv.pipe"
    _replace(path, old, new)
    with pytest.raises(ProjectError) as error:
        load_project(broken)
    assert type(error.value) is ProjectError
    assert str(error.value).startswith(f"{path}") and phrase in str(error.value)


def test_a_template_syntax_error_names_the_node_and_the_line(broken: Path):
    # tornado's ParseError escapes Tinybird's pipe parser: the adapter maps its node line to the file's line.
    path = broken / "endpoints" / "customer_cltv.pipe"
    _replace(path, "    {% end %}\n", "    {% end %}\n    {% end %}\n")
    with pytest.raises(ProjectError) as error:
        load_project(broken)
    assert type(error.value) is ProjectError
    message = str(error.value)
    assert "node 'customer_cltv_node': Extra {% end %} block" in message
    line = int(message.split("customer_cltv.pipe:", 1)[1].split(":", 1)[0])
    lines = path.read_text().splitlines()
    assert lines[line - 2 : line] == ["    {% end %}", "    {% end %}"]
    assert lines[line - 3].strip().startswith("{{ error(")


def test_sql_tinybird_cannot_parse_is_a_project_error_naming_the_file(broken: Path):
    path = broken / "endpoints" / "cltv_summary.pipe"
    _replace(path, "FROM customer_cltv_mv FINAL", "FROM customer_cltv_mv FINAL WHERE (")
    with pytest.raises(ProjectError) as error:
        load_project(broken)
    assert type(error.value) is ProjectError
    assert str(error.value).startswith(f"{path}: DB::Exception: Syntax error")


def test_a_datasource_fed_by_a_connector_is_refused_naming_the_setting_and_the_alternative(tmp_path):
    path = tmp_path / "events.datasource"
    path.write_text(
        "SCHEMA >\n    `data` String `json:$`\n\nKAFKA_CONNECTION_NAME kafka\nKAFKA_TOPIC events\nKAFKA_GROUP_ID g\n"
    )
    with pytest.raises(ProjectError) as refused:
        _load_datasource(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:4: KAFKA_CONNECTION_NAME kafka")
    assert "no Kafka, S3, GCS or DynamoDB connectors" in message and "Tinybird Cloud" in message
