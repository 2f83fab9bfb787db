"""One sample table and its rows, shared by the tests of every warehouse."""

from datetime import date

import pandas as pd

from coverage_serving.partition import Partition
from coverage_serving.warehouse import Column, TableSpec

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
