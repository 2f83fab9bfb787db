"""What only the DuckDB warehouse has, on a real file: its column types, its transaction's
rollback, its staging leftovers, columns altered by hand (test_contract.py runs the rest)."""

from pathlib import Path

import duckdb
import pytest

from coverage_serving.errors import WarehouseError
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving.warehouse.base import History, UnmatchedMarket
from coverage_serving.wiring import DuckDBTarget
from coverage_serving_tests.warehouse.sample import (
    DESCRIBED_AGAIN,
    HISTORY,
    JANUARY,
    TABLE,
    check_a_failed_swap_keeps_table_and_history,
    refusals_of_every_read,
    refused_write_keeps_old_rows,
    replace_with_version,
    rows,
)
from coverage_serving_tests.warehouse.staging import duckdb_staging


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"


@pytest.fixture
def warehouse(database: Path) -> DuckDBWarehouse:
    return DuckDBTarget(str(database)).open()


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
    # The descriptions of the contract, as DuckDB's comments.
    assert sql(database, "SELECT comment FROM duckdb_tables() WHERE table_name = 'scores'") == [
        ("Scores of the warehouse tests",)
    ]
    assert sql(
        database,
        "SELECT column_name, comment FROM duckdb_columns() "
        "WHERE table_name = 'scores' AND comment IS NOT NULL",
    ) == [("note", "the scorer's note")]


def test_descriptions_edited_later_reach_the_existing_table(
    warehouse: DuckDBWarehouse, database: Path
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))

    warehouse.replace_partition(DESCRIBED_AGAIN, JANUARY, rows(JANUARY))

    assert sql(database, "SELECT comment FROM duckdb_tables() WHERE table_name = 'scores'") == [
        ("Scores, described again",)
    ]
    assert sql(
        database,
        "SELECT column_name, comment FROM duckdb_columns() "
        "WHERE table_name = 'scores' AND comment IS NOT NULL",
    ) == [("score", "the new score")]


@pytest.mark.parametrize(
    ("column", "value"), [("version", "abc"), ("score", None), ("scored_at", "not a time")]
)
def test_a_failure_inside_the_transaction_keeps_the_old_rows(
    warehouse: DuckDBWarehouse, column: str, value: object
) -> None:
    bad = rows(JANUARY).astype({column: object})
    bad.loc[2, column] = value
    refused_write_keeps_old_rows(warehouse, bad, WarehouseError, "failed, old rows kept")


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


def test_a_null_market_is_unmatched(warehouse: DuckDBWarehouse, database: Path) -> None:
    # A source table loaded by hand may allow NULL markets, which no partition reads either.
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    alter(database, "ALTER TABLE serving.scores ALTER market DROP NOT NULL")
    alter(database, "UPDATE serving.scores SET market = NULL WHERE id = 'k0'")

    assert warehouse.unmatched_markets(TABLE, ["IN"], [JANUARY.month]) == [
        UnmatchedMarket(JANUARY.month, None, 1)
    ]


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


def test_the_history_table_is_the_table_plus_when_and_by_whom(
    warehouse: DuckDBWarehouse, database: Path
) -> None:
    replace_with_version(warehouse, JANUARY, 1, "run-1")
    replace_with_version(warehouse, JANUARY, 2, "run-2")

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
