"""The DuckDB warehouse on a real file: typed tables, atomic partition replace, refusals."""

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from coverage_serving.errors import EmptyPartitionError, WarehouseError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Column, DuckDBWarehouse, TableSpec
from coverage_serving.warehouse.base import History, UnmatchedMarket
from coverage_serving_tests.warehouse.sample import (
    FEBRUARY,
    HISTORY,
    JANUARY,
    TABLE,
    check_a_failed_swap_keeps_table_and_history,
    check_comparison,
    check_constants,
    check_distinct_values,
    check_history_is_pruned_to_the_last_versions,
    check_history_keeps_each_replaced_version_once,
    check_history_needs_the_new_version,
    check_latest_row,
    check_unmatched_markets,
    refusals_of_every_read,
    replace_with_version,
    rows,
)
from coverage_serving_tests.warehouse.staging import duckdb_staging


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def warehouse(database: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(DuckDBResource(database=str(database)).get_connection)


def sql(database: Path, query: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(query).fetchall()


def test_a_new_table_gets_typed_columns(warehouse: DuckDBWarehouse, database: Path) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))

    columns = sql(
        database,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'serving' AND table_name = 'scores' ORDER BY ordinal_position",
    )
    assert columns == [
        ("id", "VARCHAR", "NO"),
        ("market", "VARCHAR", "NO"),
        ("month", "DATE", "NO"),
        ("score", "DOUBLE", "NO"),
        ("note", "VARCHAR", "YES"),
        ("version", "BIGINT", "NO"),
        ("scored_at", "TIMESTAMP WITH TIME ZONE", "NO"),
    ]


def test_a_partition_round_trips(warehouse: DuckDBWarehouse) -> None:
    written = rows(JANUARY)
    assert warehouse.replace_partition(TABLE, JANUARY, written) == 3

    read = warehouse.read_partition(TABLE, JANUARY)

    assert read["id"].tolist() == ["k0", "k1", "k2"]
    assert read["note"].tolist()[:2] == ["n0", None]
    assert pd.to_datetime(read["month"]).dt.date.tolist() == [JANUARY.month] * 3
    assert read["scored_at"].tolist() == written["scored_at"].tolist()
    assert read["score"].tolist() == [0.0, 0.5, 1.0]


def test_replacing_a_partition_twice_leaves_only_the_new_rows(
    warehouse: DuckDBWarehouse,
) -> None:
    warehouse.replace_partition(TABLE, FEBRUARY, rows(FEBRUARY))
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=3, version=1))
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=2, version=2))

    january = warehouse.read_partition(TABLE, JANUARY)
    assert january["version"].tolist() == [2, 2]
    assert len(warehouse.read_partition(TABLE, FEBRUARY)) == 3


def test_partitions_are_listed_in_order(warehouse: DuckDBWarehouse) -> None:
    assert warehouse.list_partitions(TABLE) == []
    other_market = Partition("ID", date(2026, 2, 1))
    for partition in (FEBRUARY, other_market, JANUARY):
        warehouse.replace_partition(TABLE, partition, rows(partition))

    assert warehouse.list_partitions(TABLE) == [other_market, JANUARY, FEBRUARY]


def refused_write_keeps_old_rows(
    warehouse: DuckDBWarehouse, new_rows: pd.DataFrame, error: type[Exception], match: str
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    before = warehouse.read_partition(TABLE, JANUARY)

    with pytest.raises(error, match=match):
        warehouse.replace_partition(TABLE, JANUARY, new_rows)

    pd.testing.assert_frame_equal(warehouse.read_partition(TABLE, JANUARY), before)


def test_an_empty_write_is_refused(warehouse: DuckDBWarehouse) -> None:
    refused_write_keeps_old_rows(
        warehouse, rows(JANUARY).iloc[:0], EmptyPartitionError, "with no rows: the old rows"
    )


def test_rows_of_another_partition_are_refused(warehouse: DuckDBWarehouse) -> None:
    stray = pd.concat([rows(JANUARY), rows(FEBRUARY).iloc[:1]], ignore_index=True)
    refused_write_keeps_old_rows(
        warehouse, stray, WarehouseError, r"1 rows .* do not belong to partition IN\|2026-01-01"
    )


def test_rows_lacking_a_column_are_refused(warehouse: DuckDBWarehouse) -> None:
    refused_write_keeps_old_rows(
        warehouse, rows(JANUARY).drop(columns="score"), WarehouseError, r"lack columns \['score'\]"
    )


@pytest.mark.parametrize(
    ("column", "value"), [("version", "abc"), ("score", None), ("scored_at", "not a time")]
)
def test_a_failure_inside_the_transaction_keeps_the_old_rows(
    warehouse: DuckDBWarehouse, column: str, value: object
) -> None:
    bad = rows(JANUARY).astype({column: object})
    bad.loc[2, column] = value
    refused_write_keeps_old_rows(warehouse, bad, WarehouseError, "failed, old rows kept")


def test_reading_a_missing_table_names_it(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseError, match=r"table serving.scores does not exist"):
        warehouse.read_partition(TABLE, JANUARY)


def test_reading_a_table_without_a_column_names_it(warehouse: DuckDBWarehouse) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    wider = TableSpec(TABLE.schema, TABLE.name, (*TABLE.columns, Column("extra", "float")))

    with pytest.raises(WarehouseError, match=r"serving.scores has no column\(s\) \['extra'\]"):
        warehouse.read_partition(wider, JANUARY)


def alter(database: Path, statement: str) -> None:
    with duckdb.connect(str(database)) as con:
        con.execute(statement)


HELD_AS = (
    "table serving.scores has no column(s) ['id']; 'id' exists as {!r} (column names must "
    "match the config exactly)"
)
MONTH_AS = (
    "table serving.scores: column 'month' is {}, expected DATE (the first day of the month; "
    "store it as DATE, e.g. CAST(month AS DATE))"
)


@pytest.mark.parametrize(
    ("alteration", "complaint"),
    [
        ('RENAME COLUMN id TO "Id"', HELD_AS.format("Id")),
        ('RENAME COLUMN id TO "ID"', HELD_AS.format("ID")),
        ('RENAME COLUMN id TO "id "', HELD_AS.format("id ")),
        ('RENAME COLUMN id TO " id"', HELD_AS.format(" id")),
        ("ALTER month TYPE TIMESTAMP", MONTH_AS.format("TIMESTAMP")),
        ("ALTER month TYPE TIMESTAMPTZ", MONTH_AS.format("TIMESTAMP WITH TIME ZONE")),
    ],
)
def test_a_column_unlike_the_contract_is_named_as_it_exists(
    warehouse: DuckDBWarehouse, database: Path, alteration: str, complaint: str
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    alter(database, f"ALTER TABLE serving.scores {alteration}")

    assert refusals_of_every_read(warehouse) == {complaint}


def test_a_table_whose_columns_drifted_is_not_written(
    warehouse: DuckDBWarehouse, database: Path
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    drifted = TableSpec(TABLE.schema, TABLE.name, TABLE.columns[:-1])

    with pytest.raises(WarehouseError, match="migrate or drop the table"):
        warehouse.replace_partition(drifted, FEBRUARY, rows(FEBRUARY).drop(columns="scored_at"))

    assert sql(database, "SELECT count(*) FROM serving.scores") == [(3,)]


def test_a_write_drops_the_staging_its_table_left_behind_and_no_other(
    warehouse: DuckDBWarehouse, database: Path
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    others = {
        "serving_scores_extra_0123456789ab",  # of another table, whose name starts alike
        "features_scores_0123456789ab",  # of a table of the same name in another schema
    }
    with duckdb.connect(str(database)) as con:  # as killed writes leave them: with rows
        for name in {"serving_scores_0123456789ab", *others}:
            con.execute(f'CREATE TABLE staging."{name}" AS SELECT * FROM serving.scores')

    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=2, version=2))

    assert set(duckdb_staging(database)) == others
    january = warehouse.read_partition(TABLE, JANUARY)
    assert len(january) == 2 and set(january["version"]) == {2}


def test_a_hostile_market_value_is_only_data(warehouse: DuckDBWarehouse, database: Path) -> None:
    hostile = Partition("IN'; DROP TABLE serving.scores; --", date(2026, 1, 1))
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))

    warehouse.replace_partition(TABLE, hostile, rows(hostile))

    assert warehouse.list_partitions(TABLE) == [JANUARY, hostile]
    assert len(warehouse.read_partition(TABLE, hostile)) == 3


def test_constant_columns_are_added_at_the_swap(warehouse: DuckDBWarehouse) -> None:
    check_constants(warehouse)


def test_latest_row_is_the_keys_row_of_its_latest_month(warehouse: DuckDBWarehouse) -> None:
    check_latest_row(warehouse)


def test_distinct_values_are_per_partition_of_asked_months(warehouse: DuckDBWarehouse) -> None:
    check_distinct_values(warehouse)


def test_unmatched_markets_are_counted_per_month_and_value(warehouse: DuckDBWarehouse) -> None:
    check_unmatched_markets(warehouse)


def test_a_null_market_is_unmatched(warehouse: DuckDBWarehouse, database: Path) -> None:
    # A source table loaded by hand may allow NULL markets, which no partition reads either.
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    alter(database, "ALTER TABLE serving.scores ALTER market DROP NOT NULL")
    alter(database, "UPDATE serving.scores SET market = NULL WHERE id = 'k0'")

    assert warehouse.unmatched_markets(TABLE, ["IN"], [JANUARY.month]) == [
        UnmatchedMarket(JANUARY.month, None, 1)
    ]


def test_a_comparison_of_two_tables_equals_a_hand_computation(warehouse: DuckDBWarehouse) -> None:
    check_comparison(warehouse)


def test_history_keeps_each_replaced_version_once(warehouse: DuckDBWarehouse) -> None:
    check_history_keeps_each_replaced_version_once(warehouse)


def test_history_is_pruned_to_the_last_versions(warehouse: DuckDBWarehouse) -> None:
    check_history_is_pruned_to_the_last_versions(warehouse)


def test_a_failed_swap_keeps_table_and_history(warehouse: DuckDBWarehouse) -> None:
    # The INSERT of the new rows fails on a constant that is no timestamp: after the history
    # statements and the DELETE ran in the transaction.
    constants = {"version": 3, "scored_at": "not a time"}
    check_a_failed_swap_keeps_table_and_history(
        warehouse,
        lambda: warehouse.replace_partition(
            TABLE,
            JANUARY,
            rows(JANUARY).drop(columns=list(constants)),
            constants=constants,
            history=History(HISTORY, "version", "run-3"),
        ),
    )


def test_history_needs_the_new_version(warehouse: DuckDBWarehouse) -> None:
    check_history_needs_the_new_version(warehouse)


def test_the_history_table_is_the_table_plus_when_and_by_whom(
    warehouse: DuckDBWarehouse, database: Path
) -> None:
    check_history_keeps_each_replaced_version_once(warehouse)

    columns = sql(
        database,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'serving' AND table_name = 'scores_history' "
        "ORDER BY ordinal_position",
    )
    assert columns[-2:] == [
        ("replaced_at", "TIMESTAMP WITH TIME ZONE"),
        ("replaced_by_run_id", "VARCHAR"),
    ]
    assert [name for name, _ in columns[:-2]] == TABLE.column_names


def test_a_history_table_whose_columns_drifted_is_not_written(
    warehouse: DuckDBWarehouse, database: Path
) -> None:
    replace_with_version(warehouse, JANUARY, 1, "run-1")
    alter(database, "ALTER TABLE serving.scores_history DROP COLUMN replaced_by_run_id")

    with pytest.raises(WarehouseError, match=r"serving\.scores_history has columns .* migrate"):
        replace_with_version(warehouse, JANUARY, 2, "run-2")

    assert set(warehouse.read_partition(TABLE, JANUARY)["version"]) == {1}
