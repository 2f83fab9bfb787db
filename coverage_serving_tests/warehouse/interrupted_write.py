"""A partition replace that stops at a chosen point and waits to be killed (SIGKILL).

Run as `python -m coverage_serving_tests.warehouse.interrupted_write <phase> <marker>` with the
warehouse selected by the environment (COVERAGE_SERVING_HOME for DuckDB, BIGQUERY_* for the
emulator). It replaces JANUARY of the sample table with version-2 rows, keeping the replaced
rows in its history, and, at `phase`, touches `marker` and sleeps: the parent kills it there.

Phases: `deleted` (DuckDB: inside the transaction, after the replaced rows were copied to
history and deleted from the table),
`staged` (BigQuery: new rows loaded into the staging table, before the swap), `swapping`
(BigQuery: the swap transaction sent, its result not yet awaited).
"""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving.warehouse.bigquery import BigQueryWarehouse
from coverage_serving.wiring import open_warehouse
from coverage_serving_tests.warehouse.sample import JANUARY, TABLE, replace_with_version

NEW_ROWS = 50_000


def wait_to_be_killed(marker: Path) -> None:
    marker.touch()
    time.sleep(600)


class PausingConnection:
    """A DuckDB connection that stops right after the DELETE from the sample table (the last
    statement before the INSERT of the new rows)."""

    def __init__(self, connection: Any, marker: Path) -> None:
        self._connection = connection
        self._marker = marker

    def execute(self, sql: str, *args: Any) -> Any:
        result = self._connection.execute(sql, *args)
        if sql.startswith(f'DELETE FROM "{TABLE.schema}"."{TABLE.name}" '):
            wait_to_be_killed(self._marker)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def pausing_duckdb(warehouse: DuckDBWarehouse, marker: Path) -> DuckDBWarehouse:
    connect = warehouse._open

    @contextmanager
    def pausing() -> Iterator[Any]:
        with connect() as connection:
            yield PausingConnection(connection, marker)

    return DuckDBWarehouse(pausing)


def pausing_bigquery(warehouse: BigQueryWarehouse, phase: str, marker: Path) -> None:
    swap = warehouse._swap

    def staged_then_wait(client: Any, *args: Any) -> None:
        if phase == "staged":
            wait_to_be_killed(marker)
        original_query = client.query

        def query_then_wait(*query_args: Any, **kwargs: Any) -> Any:
            job = original_query(*query_args, **kwargs)
            wait_to_be_killed(marker)
            return job

        client.query = query_then_wait
        swap(client, *args)

    warehouse._swap = staged_then_wait  # type: ignore[method-assign]


def main(phase: str, marker: Path) -> None:
    warehouse = open_warehouse(LocalState.from_env())
    if isinstance(warehouse, DuckDBWarehouse):
        warehouse = pausing_duckdb(warehouse, marker)
    else:
        assert isinstance(warehouse, BigQueryWarehouse)
        pausing_bigquery(warehouse, phase, marker)
    replace_with_version(warehouse, JANUARY, 2, "killed-run", count=NEW_ROWS)
    raise SystemExit("the write finished: it was meant to be killed first")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
