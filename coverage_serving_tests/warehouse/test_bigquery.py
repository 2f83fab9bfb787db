"""What only the BigQuery warehouse has, against the local-bigquery emulator: its table
definitions, Storage Read beside REST, injected failures of its swap, and the SQL it sends,
pinned, since the emulator accepts DATE comparisons that BigQuery rejects (test_contract.py
runs the rest)."""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pandas as pd
import pytest
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from coverage_serving.demo.emulator import Emulator
from coverage_serving.errors import WarehouseError
from coverage_serving.settings import LocalState
from coverage_serving.warehouse.base import History
from coverage_serving.warehouse.bigquery import (
    BigQueryClients,
    BigQueryWarehouse,
    bigquery_schema,
    latest_row_sql,
    partition_parameters,
    replace_partition_sql,
    select_partition_sql,
)
from coverage_serving.warehouse.history import archive_for
from coverage_serving.wiring import open_warehouse, warehouse_target
from coverage_serving_tests.warehouse.sample import (
    DESCRIBED_AGAIN,
    HISTORY,
    JANUARY,
    TABLE,
    check_a_failed_swap_keeps_table_and_history,
    refusals_of_every_read,
    replace_with_version,
    rows,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def warehouse(bigquery_env: str, tmp_path: Path) -> BigQueryWarehouse:
    opened = open_warehouse(LocalState(tmp_path))
    assert isinstance(opened, BigQueryWarehouse)
    return opened


@pytest.fixture
def rest_client(bigquery_emulator: Emulator) -> bigquery.Client:
    return bigquery.Client(
        project=bigquery_emulator.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": bigquery_emulator.api_endpoint},
    )


def rest_only(warehouse: BigQueryWarehouse, rest_client: bigquery.Client) -> BigQueryWarehouse:
    """The same tables with the Storage Read API unavailable."""

    @contextmanager
    def connect() -> Iterator[BigQueryClients]:
        yield BigQueryClients(rest=rest_client, storage=None)

    return BigQueryWarehouse(connect, rest_client.project, warehouse.dataset)


def test_the_table_is_created_from_the_contract(
    warehouse: BigQueryWarehouse, rest_client: bigquery.Client
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))

    table = rest_client.get_table(warehouse.table_id(TABLE))

    assert [(f.name, f.field_type, f.mode) for f in table.schema] == [
        ("id", "STRING", "REQUIRED"),
        ("market", "STRING", "REQUIRED"),
        ("month", "DATE", "REQUIRED"),
        ("score", "FLOAT", "REQUIRED"),
        ("note", "STRING", "NULLABLE"),
        ("version", "INTEGER", "REQUIRED"),
        ("scored_at", "TIMESTAMP", "REQUIRED"),
    ]
    assert table.time_partitioning.type_ == "MONTH"
    assert table.time_partitioning.field == "month"
    assert table.clustering_fields == ["market"]
    # The contract's descriptions, in BigQuery's catalog (the emulator keeps them too).
    assert table.description == "Scores of the warehouse tests"
    assert {f.name: f.description for f in table.schema if f.description} == {
        "note": "the scorer's note"
    }


def test_descriptions_edited_later_reach_the_existing_table(
    warehouse: BigQueryWarehouse, rest_client: bigquery.Client
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))

    warehouse.replace_partition(DESCRIBED_AGAIN, JANUARY, rows(JANUARY))

    table = rest_client.get_table(warehouse.table_id(TABLE))
    assert table.description == "Scores, described again"
    assert {f.name: f.description for f in table.schema if f.description} == {
        "score": "the new score"
    }
    assert table.time_partitioning.field == "month"  # the rest of the definition kept


def test_a_failure_between_staging_and_swap_keeps_the_old_rows(
    warehouse: BigQueryWarehouse, rest_client: bigquery.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, version=1))

    def broken_swap(*args: object) -> None:
        raise google_errors.InternalServerError("injected: the swap never ran")

    monkeypatch.setattr(BigQueryWarehouse, "_swap", broken_swap)
    with pytest.raises(WarehouseError, match="old rows kept: injected"):
        warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, version=2))

    assert set(warehouse.read_partition(TABLE, JANUARY)["version"]) == {1}
    dataset = warehouse.table_id(TABLE).rsplit(".", 1)[0]
    assert [t.table_id for t in rest_client.list_tables(dataset)] == [TABLE.name]


def insert_from_a_missing_staging_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the swap's INSERT read a staging table that is not there: every statement before
    it runs."""
    monkeypatch.setattr(
        "coverage_serving.warehouse.bigquery.replace_partition_sql",
        lambda target, staging, *columns: replace_partition_sql(
            target, f"{staging}_gone", *columns
        ),
    )


def test_a_failing_swap_statement_rolls_back(
    warehouse: BigQueryWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, version=1))
    # The DELETE runs, then the INSERT reads a table that is not there: the transaction must
    # undo the DELETE.
    insert_from_a_missing_staging_table(monkeypatch)

    with pytest.raises(WarehouseError, match="old rows kept"):
        warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, version=2))

    assert set(warehouse.read_partition(TABLE, JANUARY)["version"]) == {1}


def test_storage_read_and_rest_give_the_same_frame(
    warehouse: BigQueryWarehouse, rest_client: bigquery.Client
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=2000))

    by_storage = warehouse.read_partition(TABLE, JANUARY)
    by_rest = rest_only(warehouse, rest_client).read_partition(TABLE, JANUARY)

    pd.testing.assert_frame_equal(
        by_storage.sort_values("id", ignore_index=True),
        by_rest.sort_values("id", ignore_index=True),
    )


def test_partition_sql_compares_dates_with_a_bound_date() -> None:
    assert select_partition_sql("p.d.t", ["id", "month"]) == (
        "SELECT `id`, `month` FROM `p.d.t` WHERE market = @market AND month = @month"
    )
    assert replace_partition_sql("p.d.t", "p.d.t__staging", ["id", "month"]) == (
        "BEGIN TRANSACTION;\n"
        "DELETE FROM `p.d.t` WHERE market = @market AND month = @month;\n"
        "INSERT INTO `p.d.t` (`id`, `month`) SELECT `id`, `month` FROM `p.d.t__staging`;\n"
        "COMMIT TRANSACTION;"
    )


def test_constants_are_bound_parameters_of_the_swap() -> None:
    sql = replace_partition_sql("p.d.t", "p.d.t__s", ["id", "month"], ["model", "scored_at"])
    assert "INSERT INTO `p.d.t` (`id`, `month`, `model`, `scored_at`) " in sql
    assert "SELECT `id`, `month`, @constant_0, @constant_1 FROM `p.d.t__s`;" in sql


def test_partition_values_are_bound_as_string_and_date() -> None:
    parameters = partition_parameters(JANUARY).query_parameters
    assert [(p.name, p.type_, p.value) for p in parameters] == [
        ("market", "STRING", "IN"),
        ("month", "DATE", JANUARY.month),
    ]


def test_bigquery_needs_its_project_and_dataset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COVERAGE_SERVING_WAREHOUSE", "bigquery")
    monkeypatch.delenv("BIGQUERY_PROJECT", raising=False)

    with pytest.raises(ValueError, match="needs BIGQUERY_PROJECT to be set"):
        warehouse_target(LocalState(tmp_path))


def test_latest_row_sql_binds_market_and_key_values() -> None:
    assert latest_row_sql("p.d.t", ["id", "month"], ["id"]) == (
        "SELECT `id`, `month` FROM `p.d.t` WHERE market = @market AND `id` = @key_0 "
        "ORDER BY month DESC LIMIT 1"
    )


def test_a_column_in_another_case_and_a_timestamp_month_are_named(
    warehouse: BigQueryWarehouse, rest_client: bigquery.Client
) -> None:
    # BigQuery resolves `id` to a column `Id` in queries (the emulator returns it as `Id`), and
    # the emulator compares a TIMESTAMP month with a DATE that real BigQuery refuses: both are
    # refused by name before any query.
    held = {"id": ("Id", "STRING"), "month": ("month", "TIMESTAMP")}
    schema = [
        bigquery.SchemaField(*held.get(f.name, (f.name, f.field_type)), mode=f.mode)
        for f in bigquery_schema(TABLE.columns)
    ]
    table_id = warehouse.table_id(TABLE)
    rest_client.create_dataset(table_id.rsplit(".", 1)[0], exists_ok=True)
    rest_client.create_table(bigquery.Table(table_id, schema=schema))

    assert refusals_of_every_read(warehouse) == {
        f"table {table_id} has no column(s) ['id']; 'id' exists as 'Id' (column names must "
        f"match the config exactly); table {table_id}: column 'month' is TIMESTAMP, expected "
        "DATE (the first day of the month; store it as DATE, e.g. CAST(month AS DATE))"
    }


def test_a_failed_swap_keeps_table_and_history(
    warehouse: BigQueryWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace_failing_in_the_swap() -> None:
        # The history statements and the DELETE run, then the INSERT fails: the transaction
        # must undo all of them.
        with monkeypatch.context() as failing:
            insert_from_a_missing_staging_table(failing)
            replace_with_version(warehouse, JANUARY, 3, "run-3")

    check_a_failed_swap_keeps_table_and_history(warehouse, replace_failing_in_the_swap)


def test_the_history_table_is_partitioned_and_clustered_like_the_table(
    warehouse: BigQueryWarehouse, rest_client: bigquery.Client
) -> None:
    replace_with_version(warehouse, JANUARY, 1, "run-1")

    table = rest_client.get_table(warehouse.table_id(HISTORY))

    assert [(f.name, f.field_type) for f in table.schema][-2:] == [
        ("replaced_at", "TIMESTAMP"),
        ("replaced_by_run_id", "STRING"),
    ]
    assert [f.name for f in table.schema][:-2] == TABLE.column_names
    assert (table.time_partitioning.type_, table.time_partitioning.field) == ("MONTH", "month")
    assert table.clustering_fields == ["market"]


def test_history_statements_run_first_in_the_swap_transaction() -> None:
    sql = replace_partition_sql("p.d.t", "p.d.s", ["id"], ["version"], ["DELETE a", "INSERT b"])
    assert sql.startswith("BEGIN TRANSACTION;\nDELETE a;\nINSERT b;\nDELETE FROM `p.d.t` ")
    assert sql.endswith("COMMIT TRANSACTION;")


def test_history_statements_bind_partition_version_and_run() -> None:
    def unreachable() -> AbstractContextManager[BigQueryClients]:
        raise AssertionError("building the statements sends no query")

    warehouse = BigQueryWarehouse(unreachable, "p", "d")
    history = History(HISTORY, "version", "run-2", keep_versions=1)

    archive = archive_for(warehouse._dialect, TABLE, {"version": 2}, history)

    columns = ", ".join(f"`{c}`" for c in TABLE.column_names)
    in_partition = "market = @market AND month = @month"
    assert archive.statements[1] == (
        f"INSERT INTO `p.d_serving.scores_history` ({columns}, `replaced_at`, "
        f"`replaced_by_run_id`) SELECT {columns}, CURRENT_TIMESTAMP, @replaced_by "
        f"FROM `p.d_serving.scores` WHERE {in_partition} AND `version` <> @version"
    )
    assert all(in_partition in statement for statement in archive.statements)
    assert archive.parameters == {
        "version": ("int", 2),
        "replaced_by": ("string", "run-2"),
        "keep": ("int", 1),
    }
