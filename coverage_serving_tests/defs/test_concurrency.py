"""Two runs writing the same partition at once, as two `dagster asset materialize` processes
on one real Dagster instance: the table's pool makes them take turns."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import predictions_table
from coverage_serving.partition import Partition
from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_CONFIG, SMALL_ROWS

pytestmark = pytest.mark.integration

PARTITION = "IN|2026-01-01"
STEPS = ("store_features", "store_predictions")


def test_two_runs_of_one_partition_take_turns_and_leave_one_version(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    environment = {
        **os.environ,
        HOME_VAR: str(state.home),
        "DAGSTER_HOME": str(state.dagster_home),
        "COVERAGE_SERVING_CONFIG": str(SMALL_CONFIG),
    }
    command = [
        *(str(Path(sys.executable).parent / "dagster"), "asset", "materialize"),
        *("-m", "coverage_serving.definitions", "--select", ",".join(STEPS)),
        *("--partition", PARTITION),
    ]
    # The instance's storage exists before the runs, as under `make dev`: two processes
    # creating sqlite tables at once is a race of the test's making.
    dg.DagsterInstance.from_config(str(state.dagster_home)).dispose()
    runs = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0].decode() for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    with dg.DagsterInstance.from_config(str(state.dagster_home)) as instance:
        run_ids = [record.dagster_run.run_id for record in instance.get_run_records()]
        windows = {run_id: _step_windows(instance, run_id) for run_id in run_ids}
    assert len(run_ids) == 2
    for step in STEPS:
        first, second = sorted(windows[run_id][step] for run_id in run_ids)
        assert first[1] <= second[0], f"{step} ran in both runs at once: {first} {second}"
    rows = warehouse.read_partition(
        predictions_table(small_config.models["store"]), Partition.parse(PARTITION)
    )
    assert len(rows) == SMALL_ROWS["stores"] and rows["store_id"].is_unique
    assert rows["dagster_run_id"].nunique() == 1
    assert rows["dagster_run_id"].iloc[0] in run_ids


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
