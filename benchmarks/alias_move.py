"""Time from a champion alias move to every partition of the model's prediction table carrying
the new version, with the platform running as `make dev` runs it (daemon, default sensors).

    make dev                                             # in one terminal
    .venv/bin/python benchmarks/alias_move.py store      # in another

    .venv/bin/python benchmarks/alias_move.py store --before-daemon

The second form moves the alias while nothing runs, then starts `coverage-serving dev` itself
(on free ports) and times from that start: the registry sensor's first tick must reconcile.
Prints the seconds until the warehouse shows the new version everywhere, and the batch runs
MLflow recorded for it (each run loads the model once)."""

import argparse
import os
import signal
import subprocess
import sys
import time

import duckdb
import mlflow

from coverage_serving.config import load_serving_config
from coverage_serving.core.tables import predictions_table
from coverage_serving.core.tracking import EXPERIMENT
from coverage_serving.defs.partitions import model_partitions
from coverage_serving.demo.emulator import free_port
from coverage_serving.demo.models import train_demo_model
from coverage_serving.settings import LocalState

TIMEOUT_SECONDS = 600


def versions_served(state: LocalState, table: str) -> tuple[set[int], int] | None:
    """Model versions in the table and its partition count; None while a run holds the lock."""
    try:
        with duckdb.connect(str(state.warehouse_path), read_only=True) as connection:
            rows = connection.execute(
                f"SELECT DISTINCT model_version, market, month FROM {table}"
            ).fetchall()
    except duckdb.IOException:
        return None
    return {row[0] for row in rows}, len({row[1:] for row in rows})


def main(name: str, before_daemon: bool) -> None:
    state = LocalState.from_env()
    model = load_serving_config().models[name]
    table = predictions_table(model).qualified_name
    partitions = len(model_partitions(model).get_partition_keys())

    version = train_demo_model(model, state.tracking_uri, model.alias)
    print(f"{model.registered_model}@{model.alias} -> version {version}")
    dev = _start_dev() if before_daemon else None
    started = time.monotonic()
    try:
        while time.monotonic() - started < TIMEOUT_SECONDS:
            if versions_served(state, table) == ({version}, partitions):
                break
            time.sleep(1)
        else:
            sys.exit(f"{table} did not carry version {version} after {TIMEOUT_SECONDS}s")
        since = "the daemon started" if dev else "the move"
        print(
            f"all {partitions} partitions of {table} rescored {time.monotonic() - started:.1f}s "
            f"after {since}"
        )
        time.sleep(5)  # the run records itself in MLflow after its last partition
    finally:
        if dev is not None:
            os.killpg(dev.pid, signal.SIGTERM)
            dev.wait(timeout=90)

    client = mlflow.MlflowClient(state.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.model_name = '{model.registered_model}' and tags.model_version = '{version}'",
    )
    print(f"batch runs (= model loads): {len(runs)}")
    for run in runs:
        metrics = run.data.metrics
        print(
            f"  {run.info.run_name}: {run.info.status}, {metrics['partitions_scored']:.0f} "
            f"partitions, {metrics['rows']:,.0f} rows, {metrics['duration_seconds']:.1f}s in run"
        )


def _start_dev() -> subprocess.Popen:
    command = [sys.executable, "-m", "coverage_serving.cli", "dev"]
    ports = [f"--dagster-port={free_port()}", f"--mlflow-port={free_port()}"]
    return subprocess.Popen(
        [*command, *ports],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="store")
    parser.add_argument("--before-daemon", action="store_true")
    arguments = parser.parse_args()
    main(arguments.model, arguments.before_daemon)
