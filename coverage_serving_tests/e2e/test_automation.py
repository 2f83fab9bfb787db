"""Automation end to end with the real daemon and webserver: a data scientist moved the alias
before the daemon first started, and the table follows with no one running anything; a
backfill launched the way the UI launches it succeeds."""

import time

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
TICKS = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { ticks(limit: 10) { timestamp status skipReason } } } } }"""


def runs(platform: Platform, **run_filter: object) -> list[dict]:
    found = platform.graphql(RUNS, filter=run_filter)["runsOrError"]["results"]
    for run in found:
        run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
    return found


def registry_sensor_ticks(platform: Platform, model: str) -> list[dict]:
    found = platform.graphql(
        TICKS,
        selector={
            "repositoryLocationName": "coverage_serving",
            "repositoryName": "__repository__",
            "sensorName": f"{model}_registry_sensor",
        },
    )["sensorOrError"]
    return found["sensorState"]["ticks"]


def test_an_alias_moved_before_the_daemon_started_is_reconciled_once(platform: Platform) -> None:
    store = platform.config.models["store"]
    version = platform.promoted_store_version
    table = predictions_table(store).qualified_name

    served = wait_for(
        f"every partition of {table} to carry version {version}",
        lambda: _all_rows_of_version(platform, table, version),
        timeout=300,
    )
    print(f"daemon start to all partitions reconciled: {time.monotonic() - platform.started:.1f}s")
    by_partition = served.groupby(["market", "month"])["store_id"]
    assert set(by_partition.nunique()) == set(by_partition.size()) == {SMALL_ROWS["stores"]}

    [rescored] = [
        r
        for r in runs(platform, pipelineName="score_store")
        if r["tags"].get("dagster/sensor_name") == "store_registry_sensor"
    ]
    assert rescored["tags"]["dagster/run_key"].startswith(
        f"store:v{version}:IN|2026-01-01..ID|2026-02-01:"
    )
    assert rescored["tags"]["coverage_serving/model_version"] == str(version)
    wait_for("the rescoring run to finish", lambda: _all_finished(platform), timeout=120)
    settled = time.time()
    launched = len(runs(platform))
    # Two more registry ticks after the table settled: neither may request anything.
    later = wait_for(
        "two registry sensor ticks after the rescoring",
        lambda: _ticks_after(platform, "store", settled, count=2),
        timeout=20 * POLL_SECONDS,
    )
    assert len(runs(platform)) == launched, "a run was launched with nothing moved"
    assert [(t["status"], t["skipReason"]) for t in later] == [
        ("SKIPPED", f"store: 4 partitions on v{version} = @champion")
    ] * 2


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
    scored_by = wait_for(
        f"{grid} to be readable",
        lambda: platform.read_table(f"SELECT DISTINCT dagster_run_id FROM {grid}"),
        timeout=60,
    )
    assert set(scored_by["dagster_run_id"]) == {run["runId"] for run in backfill["runs"]}


def _all_rows_of_version(platform: Platform, table: str, version: int) -> pd.DataFrame | None:
    rows = platform.read_table(f"SELECT * FROM {table}")
    if rows is None or set(rows["model_version"]) != {version}:
        return None
    return rows if rows[["market", "month"]].drop_duplicates().shape[0] == 4 else None


def _ticks_after(platform: Platform, model: str, after: float, count: int) -> list[dict] | None:
    """The sensor's first `count` finished ticks that started after `after`, once there are."""
    finished = [
        tick
        for tick in reversed(registry_sensor_ticks(platform, model))
        if tick["timestamp"] > after and tick["status"] != "STARTED"
    ]
    return finished[:count] if len(finished) >= count else None


def _all_finished(platform: Platform) -> bool | None:
    return True if not runs(platform, statuses=UNFINISHED) else None
