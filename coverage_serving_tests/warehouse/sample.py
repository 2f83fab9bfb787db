"""One sample table and its rows, shared by the tests of every warehouse."""

from datetime import date

import pandas as pd
import pytest

from coverage_serving.errors import WarehouseError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Column, TableSpec, Warehouse

TABLE = TableSpec(
    "serving",
    "scores",
    (
        Column("id", "string"),
        Column("market", "string"),
        Column("month", "date"),
        Column("score", "float"),
        Column("note", "string", nullable=True),
        Column("version", "int"),
        Column("scored_at", "timestamp"),
    ),
)
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


def check_latest_row(warehouse: Warehouse) -> None:
    """latest_row finds a key's row in its latest month, nothing for an unknown key or market
    (a hostile value is a bound parameter), and refuses a key name that is not a column."""
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, version=1))
    warehouse.replace_partition(TABLE, FEBRUARY, rows(FEBRUARY, version=2))

    found = warehouse.latest_row(TABLE, "IN", {"id": "k1"})

    assert found[["id", "version"]].to_dict("records") == [{"id": "k1", "version": 2}]
    assert found["month"].iloc[0] == pd.Timestamp(FEBRUARY.month)
    assert warehouse.latest_row(TABLE, "IN", {"id": "k1' OR '1'='1"}).empty
    assert warehouse.latest_row(TABLE, "ID", {"id": "k1"}).empty
    with pytest.raises(WarehouseError, match="no key column"):
        warehouse.latest_row(TABLE, "IN", {"id = id; --": "k1"})
