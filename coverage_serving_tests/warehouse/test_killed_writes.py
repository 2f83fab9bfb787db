"""A process killed with SIGKILL in the middle of a partition replace leaves the old rows and
the history as they were, and the staging it leaves behind is never read: on a real DuckDB file
(the next write of the table drops it) and on the BigQuery emulator (it expires)."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving.warehouse import Warehouse
from coverage_serving.warehouse.bigquery import STAGING_LIFETIME, BigQueryWarehouse
from coverage_serving.wiring import open_warehouse
from coverage_serving_tests.warehouse.interrupted_write import NEW_ROWS
from coverage_serving_tests.warehouse.sample import (
    FEBRUARY,
    JANUARY,
    TABLE,
    held_in_history,
    replace_with_version,
    rows,
)
from coverage_serving_tests.warehouse.staging import bigquery_staging, duckdb_staging

pytestmark = pytest.mark.integration

OLD_ROWS = 40


def kill_during_replace(phase: str, home: Path, tmp_path: Path) -> None:
    """Start the interrupted write, wait until it reaches `phase`, and SIGKILL it."""
    marker = tmp_path / f"{phase}.reached"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coverage_serving_tests.warehouse.interrupted_write",
            phase,
            str(marker),
        ],
        env={**os.environ, HOME_VAR: str(home)},
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, f"the write exited ({child.returncode}) before {phase}"
        assert time.monotonic() < deadline, f"the write did not reach {phase}"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


# Each partition held version 0, then version 1: its history holds version 0.
OLD_HISTORY = [(0, "run-1", OLD_ROWS)]


def write_old_rows(warehouse: Warehouse) -> None:
    for partition in (JANUARY, FEBRUARY):
        replace_with_version(warehouse, partition, 0, "run-0", count=OLD_ROWS)
        replace_with_version(warehouse, partition, 1, "run-1", count=OLD_ROWS)


def assert_old_rows_intact(warehouse: Warehouse) -> None:
    for partition in (JANUARY, FEBRUARY):
        kept = warehouse.read_partition(TABLE, partition)
        assert len(kept) == OLD_ROWS and set(kept["version"]) == {1}, partition
        assert held_in_history(warehouse, partition) == OLD_HISTORY, partition


def test_a_killed_duckdb_replace_keeps_the_old_rows(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "home")
    state.create()
    warehouse = open_warehouse(state)
    write_old_rows(warehouse)

    kill_during_replace("deleted", state.home, tmp_path)

    assert_old_rows_intact(warehouse)  # DuckDB's WAL recovery drops the open transaction
    assert list(duckdb_staging(state.warehouse_path).values()) == [NEW_ROWS]  # left behind
    replace_with_version(warehouse, JANUARY, 3, "run-3", count=5)  # and the file stays writable
    january = warehouse.read_partition(TABLE, JANUARY)
    assert len(january) == 5 and set(january["version"]) == {3}
    assert held_in_history(warehouse, JANUARY) == [*OLD_HISTORY, (1, "run-3", OLD_ROWS)]
    assert duckdb_staging(state.warehouse_path) == {}  # the next write dropped it, unread


@pytest.fixture
def bigquery_with_old_rows(bigquery_env: str, tmp_path: Path) -> BigQueryWarehouse:
    warehouse = open_warehouse(LocalState(tmp_path))
    assert isinstance(warehouse, BigQueryWarehouse)
    write_old_rows(warehouse)
    return warehouse


def test_a_bigquery_replace_killed_after_staging_keeps_the_old_rows(
    bigquery_with_old_rows: BigQueryWarehouse, tmp_path: Path
) -> None:
    warehouse = bigquery_with_old_rows
    kill_during_replace("staged", tmp_path, tmp_path)

    assert_old_rows_intact(warehouse)
    [left_behind] = bigquery_staging(warehouse, TABLE)
    assert left_behind.num_rows == NEW_ROWS
    assert left_behind.expires is not None
    assert left_behind.expires - datetime.now(UTC) <= STAGING_LIFETIME  # it expires by itself
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=5, version=3))
    january = warehouse.read_partition(TABLE, JANUARY)
    assert len(january) == 5 and set(january["version"]) == {3}  # the leftover is never read


def test_a_bigquery_replace_killed_during_the_swap_leaves_old_or_new_rows(
    bigquery_with_old_rows: BigQueryWarehouse, tmp_path: Path
) -> None:
    warehouse = bigquery_with_old_rows
    kill_during_replace("swapping", tmp_path, tmp_path)

    # The transaction was sent: it commits or not as a whole, with or without its client.
    january = warehouse.read_partition(TABLE, JANUARY)
    history = held_in_history(warehouse, JANUARY)
    assert (len(january), set(january["version"]), history) in [
        (OLD_ROWS, {1}, OLD_HISTORY),
        (NEW_ROWS, {2}, [*OLD_HISTORY, (1, "killed-run", OLD_ROWS)]),
    ]
    assert january["id"].is_unique
    february = warehouse.read_partition(TABLE, FEBRUARY)
    assert len(february) == OLD_ROWS and set(february["version"]) == {1}
    assert held_in_history(warehouse, FEBRUARY) == OLD_HISTORY
