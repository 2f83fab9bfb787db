"""A run killed (SIGKILL) while it holds its table's pool: with the real Dagster daemon the run
is failed and its slot freed within the configured bound, and the table's next run completes
by itself with exactly its rows; without the daemon, a CLI run says at once which run holds
the pool and the one command that frees it.

Runs started from a shell are `dagster asset materialize` processes on one real Dagster
instance, the killed one paused once its predictions are staged, on DuckDB and on the BigQuery
emulator (coverage_serving_tests/defs/paused_definitions.py). Under `coverage-serving dev` the
run is launched by the daemon, through the code server, like a sensor's or a backfill's."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.core.batch import refresh_features
from coverage_serving.core.tables import predictions_table
from coverage_serving.defs.jobs import scoring_job_name
from coverage_serving.defs.partitions import partition_range_tags
from coverage_serving.defs.tags import PINNED_VERSION_TAG
from coverage_serving.demo.runner import write_demo_sources
from coverage_serving.instance.pools import pool_holders
from coverage_serving.instance.processes import processes_of
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import Warehouse
from coverage_serving.warehouse.bigquery import BigQueryWarehouse
from coverage_serving.wiring import open_warehouse
from coverage_serving_tests.conftest import SMALL_CONFIG, SMALL_ROWS
from coverage_serving_tests.defs.paused_definitions import MARKER_VAR
from coverage_serving_tests.e2e.conftest import Platform
from coverage_serving_tests.processes import command, state_environment, stop, wait_for
from coverage_serving_tests.warehouse.interrupted_write import wait_to_be_killed
from coverage_serving_tests.warehouse.staging import bigquery_staging, duckdb_staging

pytestmark = pytest.mark.e2e

PARTITION = "IN|2026-01-01"
POOL = "store_predictions"


def materialize(state: LocalState, module: str, select: str, **env: str) -> subprocess.Popen:
    """`dagster asset materialize` of one partition, in a process group of its own."""
    return subprocess.Popen(
        [
            *(command("dagster"), "asset", "materialize", "-m", module),
            *("--select", select, "--partition", PARTITION),
        ],
        env={**state_environment(state, SMALL_CONFIG), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_a_run_that_stages_and_waits(
    state: LocalState, store: ModelConfig, tmp_path: Path
) -> tuple[subprocess.Popen, str]:
    """Score PARTITION of the store model until its predictions are staged; return the process,
    waiting to be killed, and its run's id."""
    # The feature snapshot it scores, written here: a step process less to wait for.
    refresh_features(open_warehouse(state), store, Partition.parse(PARTITION), "")
    # The instance's storage exists before any run, as under `make dev`.
    dg.DagsterInstance.from_config(str(state.dagster_home)).dispose()
    marker = tmp_path / "staged"
    process = materialize(
        state,
        "coverage_serving_tests.defs.paused_definitions",
        POOL,
        **{MARKER_VAR: str(marker)},
    )
    wait_for(
        "the run to stage its predictions",
        lambda: True if marker.exists() else _exited(process),
        timeout=180,
        every=0.2,
    )
    with local_instance(state) as instance:
        [run] = instance.get_runs()
    return process, run.run_id


def kill(process: subprocess.Popen, state: LocalState, run_id: str) -> None:
    """SIGKILL the run's process group, as an OOM kill or a lost machine would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with local_instance(state) as instance:
        # The group's other processes die a moment after its leader.
        wait_for(
            "every process of the killed run to be gone",
            lambda: True if processes_of(instance, run_id).gone else None,
            timeout=30,
            every=0.2,
        )
        # What the issue found: the run stays STARTED and keeps its table's slot.
        assert _run(instance, run_id).status == dg.DagsterRunStatus.STARTED
        assert [holder.run.run_id for holder in pool_holders(instance, [POOL])] == [run_id]


def _exited(run: subprocess.Popen) -> None:
    if run.poll() is not None:
        pytest.fail(f"the run exited before staging:\n{run.communicate()[0].decode()[-3000:]}")


def local_instance(state: LocalState) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(state.dagster_home))


@pytest.fixture
def daemon(state: LocalState, tmp_path: Path) -> Iterator[None]:
    """The real Dagster daemon on the state's instance, as `make dev` runs it; no code location
    is needed for run monitoring, so none is loaded (no sensor launches runs meanwhile)."""
    with (tmp_path / "daemon.log").open("w") as log:
        process = subprocess.Popen(
            [command("dagster-daemon"), "run", "--empty-workspace"],
            env=state_environment(state, SMALL_CONFIG),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            stop(process, signal.SIGTERM, timeout=30)


@pytest.fixture(params=["duckdb", "bigquery"])
def each_warehouse(request: pytest.FixtureRequest, state: LocalState) -> Warehouse:
    """The warehouse the runs write, sources loaded: the state's DuckDB file, or the emulator."""
    if request.param == "bigquery":
        request.getfixturevalue("bigquery_env")
    opened = open_warehouse(state)
    if request.param == "bigquery":
        small_config: ServingConfig = request.getfixturevalue("small_config")
        write_demo_sources(opened, small_config, SMALL_ROWS)
    return opened


@pytest.mark.usefixtures("daemon")
def test_the_daemon_fails_a_killed_run_and_the_next_run_completes_with_its_rows(
    state: LocalState, each_warehouse: Warehouse, small_config: ServingConfig, tmp_path: Path
) -> None:
    warehouse = each_warehouse
    store = small_config.models["store"]
    process, killed_id = start_a_run_that_stages_and_waits(state, store, tmp_path)
    kill(process, state, killed_id)
    killed_at = time.monotonic()  # its processes just gone
    table = predictions_table(store)
    if isinstance(warehouse, BigQueryWarehouse):
        [left_behind] = bigquery_staging(warehouse, table)
    else:
        assert list(duckdb_staging(state.warehouse_path).values()) == [SMALL_ROWS["stores"]]

    # Started at once: it waits on the pool until the daemon frees it, with no hand step.
    next_run = materialize(state, "coverage_serving.definitions", POOL)

    with local_instance(state) as instance:
        failed_and_freed(instance, killed_id, killed_at)
    output = next_run.communicate(timeout=180)[0].decode()

    assert next_run.returncode == 0, output[-3000:]
    with local_instance(state) as instance:
        [next_id] = [run.run_id for run in instance.get_runs() if run.run_id != killed_id]
        assert _run(instance, next_id).status == dg.DagsterRunStatus.SUCCESS
    rows = warehouse.read_partition(table, Partition.parse(PARTITION))
    assert len(rows) == SMALL_ROWS["stores"] and rows["store_id"].is_unique
    assert set(rows["dagster_run_id"]) == {next_id}  # exactly the new rows, none staged before
    if isinstance(warehouse, BigQueryWarehouse):
        assert left_behind.expires is not None  # left to expire, never read
    else:
        assert duckdb_staging(state.warehouse_path) == {}  # dropped by the next write


def test_a_cli_run_blocked_by_a_dead_run_names_it_and_the_command_that_frees_it(
    state: LocalState, small_config: ServingConfig, tmp_path: Path
) -> None:
    process, run_id = start_a_run_that_stages_and_waits(
        state, small_config.models["store"], tmp_path
    )
    alive = coverage_serving(state, "release-run", run_id)
    kill(process, state, run_id)

    started = time.monotonic()
    demo = coverage_serving(state, "demo")
    refused_after = _since(started)
    released = coverage_serving(state, "release-run", run_id)

    assert alive.returncode == 2 and f"run {run_id} still has a process alive" in alive.stderr
    assert demo.returncode == 2, demo.stdout + demo.stderr
    assert f"pool 'store_predictions' is held by run {run_id} (STARTED" in demo.stderr
    assert f"Free it with: coverage-serving release-run {run_id}" in demo.stderr
    assert refused_after < 60  # at once: the time to start the command, no wait on the pool
    assert released.returncode == 0, released.stderr
    assert released.stdout.strip() == (
        f"run {run_id} was STARTED with no process alive: marked failed; "
        "freed its slots in store_predictions"
    )
    with local_instance(state) as instance:
        assert _run(instance, run_id).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance, [POOL]) == []


class WaitsToBeKilled(mlflow.pyfunc.PythonModel):
    """A version whose predict marks a file and waits: its run holds the table's slot until it
    is killed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def predict(self, context: object, model_input: pd.DataFrame) -> pd.Series:
        wait_to_be_killed(Path(self.marker))
        raise AssertionError("this version was meant to be killed while predicting")


def test_under_make_dev_a_run_whose_processes_died_is_failed_and_its_slot_freed(
    platform: Platform, tmp_path: Path
) -> None:
    store = platform.config.models["store"]
    marker = tmp_path / "predicting"
    waiting = platform.register_version(store, WaitsToBeKilled(str(marker)))
    partition = Partition.parse(PARTITION)
    one_partition = partition_range_tags(partition, partition)
    killed_id = platform.launch(
        scoring_job_name(store), {**one_partition, PINNED_VERSION_TAG: waiting}
    )
    wait_for("the run to predict", lambda: True if marker.exists() else None, timeout=240)

    with local_instance(platform.state) as instance:
        assert [h.run.run_id for h in pool_holders(instance, [POOL])] == [killed_id]
        # Its run worker and step processes, launched by the daemon through the code server.
        for pid in processes_of(instance, killed_id).alive:
            os.kill(pid, signal.SIGKILL)
        failed_and_freed(instance, killed_id, time.monotonic())
        next_id = platform.launch(scoring_job_name(store), one_partition)
        wait_for(
            "the next run of the partition to finish",
            lambda: True if _run(instance, next_id).is_finished else None,
            timeout=240,
        )
        assert _run(instance, next_id).status == dg.DagsterRunStatus.SUCCESS

    rows = wait_for(
        "the table to be readable",  # a sensor reading it holds the file a moment
        lambda: platform.read_table(
            f"SELECT * FROM {predictions_table(store).qualified_name} "
            f"WHERE market = '{partition.market}' AND month = DATE '{partition.month}'"
        ),
        timeout=60,
    )
    assert len(rows) == SMALL_ROWS["stores"] and rows["store_id"].is_unique
    assert set(rows["dagster_run_id"]) == {next_id}


def failed_and_freed(instance: dg.DagsterInstance, run_id: str, killed_at: float) -> None:
    """Wait until the killed run is failed and its slot freed, within the bound its instance's
    run monitoring gives: the daemon polls every poll_interval_seconds, fails the run at one
    poll (or the code server at once) and frees its slots at a later one."""
    failed_after = wait_for(
        "the killed run to be failed",
        lambda: _since(killed_at) if _run(instance, run_id).is_finished else None,
        timeout=120,
        every=0.5,
    )
    freed_after = wait_for(
        "the killed run's slot to be freed",
        lambda: None if _holds(instance, run_id) else _since(killed_at),
        timeout=120,
        every=0.5,
    )
    print(f"killed run failed after {failed_after:.1f}s, its slot freed after {freed_after:.1f}s")
    settings = instance.run_monitoring_settings
    bound = 2 * settings["poll_interval_seconds"] + settings["free_slots_after_run_end_seconds"]
    assert freed_after < bound + 15, (freed_after, bound)  # 15: a daemon iteration on a busy CI
    assert _run(instance, run_id).status == dg.DagsterRunStatus.FAILURE


def coverage_serving(state: LocalState, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command("coverage-serving"), *args],
        env=state_environment(state, SMALL_CONFIG),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run


def _holds(instance: dg.DagsterInstance, run_id: str) -> bool:
    return run_id in instance.event_log_storage.get_concurrency_info(POOL).active_run_ids


def _since(moment: float) -> float:
    return time.monotonic() - moment
