"""Time from a champion alias move to every partition of the model's prediction table carrying
the new version, with the platform running as `make dev` runs it (daemon, default sensors).

    make dev                                             # in one terminal
    .venv/bin/python benchmarks/alias_move.py store      # in another

Prints the seconds until the warehouse shows the new version everywhere, and the batch runs
MLflow recorded for it (each run loads the model once)."""

import sys
import time

import duckdb
import mlflow

from coverage_serving.config import load_serving_config
from coverage_serving.core.tables import predictions_table
from coverage_serving.core.tracking import EXPERIMENT
from coverage_serving.defs.partitions import model_partitions
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


def main(name: str) -> None:
    state = LocalState.from_env()
    model = load_serving_config().models[name]
    table = predictions_table(model).qualified_name
    partitions = len(model_partitions(model).get_partition_keys())

    version = train_demo_model(model, state.tracking_uri, model.alias)
    moved = time.monotonic()
    print(f"{model.registered_model}@{model.alias} -> version {version}")
    while time.monotonic() - moved < TIMEOUT_SECONDS:
        if versions_served(state, table) == ({version}, partitions):
            break
        time.sleep(1)
    else:
        sys.exit(f"{table} did not carry version {version} after {TIMEOUT_SECONDS}s")
    print(f"all {partitions} partitions of {table} rescored {time.monotonic() - moved:.1f}s after")

    client = mlflow.MlflowClient(state.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    time.sleep(5)  # the run records itself in MLflow after its last partition
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


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "store")
