"""Automation end to end with the real daemon and webserver: a data scientist moves the alias
and the table follows with no one running anything; a backfill launched the way the UI
launches it succeeds."""

import time

import mlflow
import pandas as pd
import pytest

from coverage_serving.core.tables import predictions_table
from coverage_serving_tests.conftest import SMALL_ROWS
from coverage_serving_tests.e2e.conftest import POLL_SECONDS, Platform
from coverage_serving_tests.processes import wait_for

pytestmark = pytest.mark.e2e

RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
  results { runId jobName status tags { key value } } } } }"""
UNFINISHED = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context: object, model_input: pd.DataFrame) -> pd.Series:
        return pd.Series(100.0, index=model_input.index)


def runs(platform: Platform, **run_filter: object) -> list[dict]:
    found = platform.graphql(RUNS, filter=run_filter)["runsOrError"]["results"]
    for run in found:
        run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
    return found


def test_an_alias_move_rescores_every_partition_once(platform: Platform) -> None:
    store = platform.config.models["store"]
    # The sensor's first tick takes the served version as scored; the move must come after it.
    wait_for(
        "the store registry sensor's first tick",
        lambda: runs(platform, pipelineName="record_store_versions", statuses=["SUCCESS"]) or None,
        timeout=240,
    )

    version = platform.register_version(store, Constant(), alias=store.alias)
    moved = time.monotonic()

    table = predictions_table(store).qualified_name
    served = wait_for(
        f"every partition of {table} to carry version {version}",
        lambda: _all_rows_of_version(platform, table, int(version)),
        timeout=300,
    )
    print(f"alias move to all partitions rescored: {time.monotonic() - moved:.1f}s")
    by_partition = served.groupby(["market", "month"])["store_id"]
    assert set(by_partition.nunique()) == set(by_partition.size()) == {SMALL_ROWS["stores"]}

    rescoring = runs(platform, pipelineName="score_store")
    [rescored] = [r for r in rescoring if r["tags"].get("dagster/sensor_name")]
    assert (
        rescored["tags"]["dagster/run_key"]
        == f"store:v{version}:move1:IN|2026-01-01..ID|2026-02-01"
    )
    assert rescored["tags"]["coverage_serving/model_version"] == version
    wait_for("the rescoring run to finish", lambda: _all_finished(platform), timeout=120)
    launched = len(runs(platform))
    time.sleep(2 * POLL_SECONDS + 5)
    assert len(runs(platform)) == launched, "a run was launched with nothing moved"


def test_a_backfill_launched_through_graphql_succeeds(platform: Platform) -> None:
    launched = platform.graphql(
        """mutation($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename ... on LaunchBackfillSuccess { backfillId }
            ... on PythonError { message } } }""",
        params={"assetSelection": [{"path": ["grid_predictions"]}], "allPartitions": True},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def finished() -> dict | None:
        backfill = platform.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
              ... on PartitionBackfill { status numPartitions runs { runId status } } } }""",
            id=launched["backfillId"],
        )["partitionBackfillOrError"]
        return backfill if backfill["status"] not in ("REQUESTED", "CANCELING") else None

    backfill = wait_for("the grid_predictions backfill", finished, timeout=300)

    assert backfill["status"] == "COMPLETED_SUCCESS"
    assert backfill["numPartitions"] == 4
    # A single-run backfill policy on market x month partitions: dagster runs one per month.
    assert [run["status"] for run in backfill["runs"]] == ["SUCCESS", "SUCCESS"]
    grid = predictions_table(platform.config.models["grid"]).qualified_name
    scored_by = platform.read_table(f"SELECT DISTINCT dagster_run_id FROM {grid}")
    assert scored_by is not None
    assert set(scored_by["dagster_run_id"]) == {run["runId"] for run in backfill["runs"]}


def _all_rows_of_version(platform: Platform, table: str, version: int) -> pd.DataFrame | None:
    rows = platform.read_table(f"SELECT * FROM {table}")
    if rows is None or set(rows["model_version"]) != {version}:
        return None
    return rows if rows[["market", "month"]].drop_duplicates().shape[0] == 4 else None


def _all_finished(platform: Platform) -> bool | None:
    return True if not runs(platform, statuses=UNFINISHED) else None
