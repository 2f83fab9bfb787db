"""The BigQuery warehouse against the local emulator (`make emulator` installs it): start-up
time, writing and rewriting a 100k-row partition, and reading it back. Prints its figures.

    .venv/bin/python benchmarks/bigquery_writes.py

The emulator is DuckDB behind BigQuery's APIs on this machine: the figures say what the
platform's BigQuery path costs here, not what BigQuery costs.
"""

import os
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from coverage_serving.demo.emulator import running_emulator
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import Column, TableSpec
from coverage_serving.warehouse.bigquery import BigQueryWarehouse
from coverage_serving.wiring import open_warehouse

ROWS = 100_000
TABLE = TableSpec(
    "serving",
    "bench_scores",
    (
        Column("cell_id", "string"),
        Column("market", "string"),
        Column("month", "date"),
        Column("score", "float"),
        Column("model_version", "int"),
        Column("scored_at", "timestamp"),
    ),
)
PARTITION = Partition("IN", date(2026, 1, 1))


def rows(version: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_id": [f"IN-{i:08d}" for i in range(ROWS)],
            "market": PARTITION.market,
            "month": pd.Timestamp(PARTITION.month),
            "score": np.random.default_rng(version).random(ROWS),
            "model_version": version,
            "scored_at": pd.Timestamp.now(tz="UTC"),
        }
    )


T = TypeVar("T")


def timed(label: str, action: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = action()
    print(f"{label}: {time.perf_counter() - started:.2f}s", flush=True)
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="coverage-serving-bq-bench-") as scratch:
        started = time.perf_counter()
        with running_emulator(Path(scratch)) as emulator:
            print(f"emulator answering after {time.perf_counter() - started:.2f}s")
            os.environ.update(emulator.environment("bench"))
            warehouse = open_warehouse(LocalState(Path(scratch)))
            assert isinstance(warehouse, BigQueryWarehouse)
            first, second = rows(1), rows(2)
            for label, frame in [("write (new table)", first), ("rewrite", second)]:
                timed(
                    f"{label}, {ROWS:,} rows",
                    lambda frame=frame: warehouse.replace_partition(
                        TABLE, PARTITION, frame, keys=["cell_id"]
                    ),
                )
            read = timed(
                f"read {ROWS:,} rows (Storage Read)",
                lambda: warehouse.read_partition(TABLE, PARTITION),
            )
            assert len(read) == ROWS and set(read["model_version"]) == {2}


if __name__ == "__main__":
    main()
