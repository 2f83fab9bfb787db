"""One sample table and its rows, shared by the tests of every warehouse."""

from collections.abc import Callable
from dataclasses import replace
from datetime import date

import pandas as pd
import pytest

from coverage_serving.errors import WarehouseError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Column, TableSpec, Warehouse
from coverage_serving.warehouse.base import History, history_of

TABLE = TableSpec(
    "serving",
    "scores",
    (
        Column("id", "string"),
        Column("market", "string"),
        Column("month", "date"),
        Column("score", "float"),
        Column("note", "string", nullable=True, description="the scorer's note"),
        Column("version", "int"),
        Column("scored_at", "timestamp"),
    ),
    "Scores of the warehouse tests",
)
# TABLE as described after an edit of serving.yaml: the table's and two columns' descriptions.
DESCRIBED_AGAIN = replace(
    TABLE,
    description="Scores, described again",
    columns=tuple(
        replace(c, description={"note": None, "score": "the new score"}.get(c.name, c.description))
        for c in TABLE.columns
    ),
)
HISTORY = history_of(TABLE, "scores_history")
JANUARY = Partition("IN", date(2026, 1, 1))
FEBRUARY = Partition("IN", date(2026, 2, 1))


def rows(partition: Partition, count: int = 3, version: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"k{i}" for i in range(count)],
            "market": partition.market,
            "month": pd.Timestamp(partition.month),
            "score": [i / 2 for i in range(count)],
            "note": [None if i % 2 else f"n{i}" for i in range(count)],
            "version": version,
            "scored_at": pd.Timestamp("2026-11-23 10:00", tz="UTC"),
        }
    )


def refusals_of_every_read(warehouse: Warehouse) -> set[str]:
    """The errors of reading, listing and counting TABLE (each must raise one)."""
    refusals = set()
    for read in (
        lambda: warehouse.read_partition(TABLE, JANUARY),
        lambda: warehouse.list_partitions(TABLE),
        lambda: warehouse.unmatched_markets(TABLE, ["IN"], [JANUARY.month]),
    ):
        with pytest.raises(WarehouseError) as raised:
            read()
        refusals.add(str(raised.value))
    return refusals


SHADOW = TableSpec("serving", "scores_shadow", TABLE.columns)


def replace_with_version(
    warehouse: Warehouse,
    partition: Partition,
    version: int,
    run_id: str,
    *,
    count: int = 3,
    keep_versions: int | None = None,
) -> pd.DataFrame:
    """Replace the partition with `count` rows of `version` (a constant), keeping the replaced
    rows in HISTORY; the rows written."""
    written = rows(partition, count=count, version=version)
    warehouse.replace_partition(
        TABLE,
        partition,
        written.drop(columns="version"),
        constants={"version": version},
        history=History(HISTORY, "version", run_id, keep_versions),
    )
    return written


def held_in_history(warehouse: Warehouse, partition: Partition) -> list[tuple[int, str, int]]:
    """The partition's history as (version, the run that replaced it, rows), one entry per
    version and run, in order."""
    held = warehouse.read_partition(HISTORY, partition)
    counted = held.groupby(["version", "replaced_by_run_id"]).size()
    return [(int(version), str(run), int(n)) for (version, run), n in counted.items()]


def check_a_failed_swap_keeps_table_and_history(
    warehouse: Warehouse, replace_failing_in_the_swap: Callable[[], object]
) -> None:
    """A swap that fails after its history statements ran leaves the table and its history
    exactly as they were."""
    replace_with_version(warehouse, JANUARY, 1, "run-1")
    replace_with_version(warehouse, JANUARY, 2, "run-2")
    table, history = (warehouse.read_partition(t, JANUARY) for t in (TABLE, HISTORY))

    with pytest.raises(WarehouseError, match="old rows kept"):
        replace_failing_in_the_swap()

    pd.testing.assert_frame_equal(warehouse.read_partition(TABLE, JANUARY), table)
    pd.testing.assert_frame_equal(warehouse.read_partition(HISTORY, JANUARY), history)


def refused_write_keeps_old_rows(
    warehouse: Warehouse, new_rows: pd.DataFrame, error: type[Exception], match: str
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    before = warehouse.read_partition(TABLE, JANUARY)

    with pytest.raises(error, match=match):
        warehouse.replace_partition(TABLE, JANUARY, new_rows)

    pd.testing.assert_frame_equal(warehouse.read_partition(TABLE, JANUARY), before)


def warehouse_frame(written: pd.DataFrame) -> pd.DataFrame:
    """Rows as a warehouse reads them back: DATE as datetime64[us], TIMESTAMP in UTC."""
    return written.astype({"month": "datetime64[us]", "scored_at": "datetime64[us, UTC]"})
