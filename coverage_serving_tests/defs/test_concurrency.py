"""Runs at once, as `dagster asset materialize` processes on one real Dagster instance: two
runs writing the same partition take turns (the table's pool); runs writing different tables
run in parallel."""

import subprocess

import dagster as dg
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import predictions_table
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_CONFIG, SMALL_ROWS
from coverage_serving_tests.processes import command, state_environment, wait_for

pytestmark = pytest.mark.integration

PARTITION = "IN|2026-01-01"
STEPS = ("store_features", "store_predictions")


def test_two_runs_of_one_partition_take_turns_and_leave_one_version(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    # The second run starts once the first holds the predictions pool, as a sensor's run that
    # lands during a backfill does. (Two claims at the same instant are a race in Dagster's
    # sqlite storage, whose slot UPDATE does not check the slot is still free; Postgres locks
    # the row. Locally DuckDB's file lock still admits one writer: docs/failure-modes.md.)
    windows = _materialize_at_once(
        state,
        [["--select", ",".join(STEPS), "--partition", PARTITION]] * 2,
        after_claim="store_predictions",
    )
    run_ids = list(windows)
    assert len(run_ids) == 2
    first, second = sorted(windows[run_id]["store_predictions"] for run_id in run_ids)
    assert first[1] <= second[0], f"both runs scored at once: {first} {second}"
    rows = warehouse.read_partition(
        predictions_table(small_config.models["store"]), Partition.parse(PARTITION)
    )
    assert len(rows) == SMALL_ROWS["stores"] and rows["store_id"].is_unique
    assert rows["dagster_run_id"].nunique() == 1
    assert rows["dagster_run_id"].iloc[0] in run_ids


def test_runs_of_different_tables_run_in_parallel_processes(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    every_partition = "IN|2026-01-01...ID|2026-02-01"  # markets in config order
    selections = [
        ["--select", f"{name}_features,{name}_predictions", "--partition-range", every_partition]
        for name in ("store", "grid")
    ]

    windows = _materialize_at_once(state, selections)

    busy = sorted(
        (min(start for start, _ in steps.values()), max(end for _, end in steps.values()))
        for steps in windows.values()
    )
    assert len(busy) == 2 and busy[1][0] < busy[0][1], f"the runs did not overlap: {busy}"
    for name, source in (("store", "stores"), ("grid", "grid_cells")):
        table = predictions_table(small_config.models[name])
        assert len(warehouse.list_partitions(table)) == 4
        rows = warehouse.read_partition(table, Partition.parse(PARTITION))
        assert len(rows) == SMALL_ROWS[source]


def _materialize_at_once(
    state: LocalState, selections: list[list[str]], after_claim: str | None = None
) -> dict[str, dict[str, tuple[float, float]]]:
    """Start one `dagster asset materialize` process per selection, at once or, with
    `after_claim`, each once a slot of that pool is claimed; when all have succeeded, each
    run's step windows by run id."""
    environment, dagster = state_environment(state, SMALL_CONFIG), command("dagster")
    # The instance's storage exists before the runs, as under `make dev`: two processes
    # creating sqlite tables at once is a race of the test's making.
    dg.DagsterInstance.from_config(str(state.dagster_home)).dispose()
    runs = []
    for selection in selections:
        if runs and after_claim:
            _wait_for_a_claim(state, after_claim)
        runs.append(
            subprocess.Popen(
                [dagster, "asset", "materialize", "-m", "coverage_serving.definitions", *selection],
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [run.communicate(timeout=300)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0] * len(runs), "".join(
        output[-3000:] for output in outputs
    )
    with dg.DagsterInstance.from_config(str(state.dagster_home)) as instance:
        records = instance.get_run_records()
        return {
            r.dagster_run.run_id: _step_windows(instance, r.dagster_run.run_id) for r in records
        }


def _wait_for_a_claim(state: LocalState, pool: str) -> None:
    def claimed() -> bool | None:
        with dg.DagsterInstance.from_config(str(state.dagster_home)) as instance:
            info = instance.event_log_storage.get_concurrency_info(pool)
            return True if info.claimed_slots else None

    wait_for(f"a run to claim the {pool} pool", claimed, timeout=180, every=0.2)


def _step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's start and the moment its write was done (its materialisation), from the
    run's event log. The slot is freed when the step's work ends, a little before dagster
    logs the step's success, so that is not the end that matters."""
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    for event in instance.all_logs(run_id):
        step = event.step_key
        if event.dagster_event is None or step is None:
            continue
        if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            started[step] = event.timestamp
        elif event.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            ended[step] = event.timestamp
    return {step: (started[step], ended[step]) for step in started}
