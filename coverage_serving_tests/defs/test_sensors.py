"""The registry sensor against a real sqlite registry, a real DuckDB warehouse and a Dagster
instance: what it requests, what it says and where its cursor moves, tick by tick."""

import json

import dagster as dg
import mlflow
import pytest

from coverage_serving.core.compiled import SETTINGS_TAG, compile_settings
from coverage_serving.defs.attempts import MAX_ATTEMPTS, RUN_KEY_TAG
from coverage_serving.defs.tags import PINNED_ALIAS_TAG, PINNED_VERSION_TAG
from coverage_serving.demo.emulator import free_port
from coverage_serving.registry import ModelRegistry, registry_client
from coverage_serving_tests.defs.sensor_harness import (
    ALL,
    StoreSensor,
    cursor_of,
    ranges,
    reason,
    requested,
    rescorings,
)
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration


def test_a_fresh_instance_reconciles_a_move_made_before_it_started(sensor: StoreSensor) -> None:
    version = register_version(sensor.store, sensor.state, Constant(), alias="champion")

    result = sensor.tick()

    [rescoring] = rescorings(result)
    assert rescoring.run_key and rescoring.run_key.startswith(f"store:v{version}:{ALL}:")
    assert rescoring.asset_selection == [dg.AssetKey("store_predictions")]
    assert rescoring.tags[PINNED_VERSION_TAG] == str(version)
    assert rescoring.tags[PINNED_ALIAS_TAG] == "champion"
    assert ranges(result) == [ALL]
    recorded = [r for r in result.run_requests or [] if r.job_name == "record_store_versions"]
    assert [r.partition_key for r in recorded] == ["1", str(version)]
    assert cursor_of(result) == {"versions": [1, version]}


def test_partitions_already_on_the_desired_version_are_not_rescored(sensor: StoreSensor) -> None:
    register_version(sensor.store, sensor.state, Constant(), alias="champion")
    # A person rescored IN|2026-01-01 with version 2 already, in this instance.
    sensor.score(partition_key="IN|2026-01-01")

    result = sensor.tick(cursor=json.dumps({"versions": [1, 2]}))

    # The three others: ID in January, both markets in February.
    assert ranges(result) == ["ID|2026-01-01..ID|2026-01-01", "IN|2026-02-01..ID|2026-02-01"]
    assert {r.tags[PINNED_VERSION_TAG] for r in rescorings(result)} == {"2"}


def test_nothing_to_do_requests_nothing_and_says_what_it_compared(sensor: StoreSensor) -> None:
    result = sensor.tick(cursor=json.dumps({"versions": [1]}))

    assert requested(result) == []
    assert reason(result) == "store: 4 partitions on v1 = @champion"
    assert cursor_of(result) == {"versions": [1]}


def test_the_same_difference_gives_the_same_run_keys_tick_after_tick(sensor: StoreSensor) -> None:
    register_version(sensor.store, sensor.state, Constant(), alias="champion")

    first = sensor.tick()
    again = sensor.tick(cursor=first.cursor)  # type: ignore[union-attr]
    restarted = sensor.tick()  # a lost cursor

    # Dagster launches a run key once per sensor: the repeats launch nothing new.
    assert [r.run_key for r in rescorings(again)] == [r.run_key for r in rescorings(first)]
    assert [r.run_key for r in rescorings(restarted)] == [r.run_key for r in rescorings(first)]


def test_a_rollback_after_a_rescoring_rescores_with_the_older_version_under_a_new_key(
    sensor: StoreSensor,
) -> None:
    register_version(sensor.store, sensor.state, Constant(), alias="champion")
    before = sensor.tick()
    [v2] = rescorings(before)
    sensor.score(tags=v2.tags, asset_selection=v2.asset_selection)
    settled = sensor.tick(cursor=json.dumps({"versions": [1, 2]}))
    assert reason(settled) == "store: 4 partitions on v2 = @champion"

    mlflow.MlflowClient(sensor.state.tracking_uri).set_registered_model_alias(
        sensor.store.registered_model, "champion", "1"
    )
    rollback = sensor.tick(cursor=json.dumps({"versions": [1, 2]}))

    [v1] = rescorings(rollback)
    assert v1.tags[PINNED_VERSION_TAG] == "1" and ranges(rollback) == [ALL]
    assert v1.run_key and v1.run_key.startswith(f"store:v1:{ALL}:")
    assert v1.run_key.split(":")[-1] != (v2.run_key or "").split(":")[-1]


def test_a_failed_rescoring_is_requested_again_under_a_new_key_up_to_three_times(
    sensor: StoreSensor,
) -> None:
    register_version(sensor.store, sensor.state, Constant(), alias="champion")
    cursor = json.dumps({"versions": [1, 2]})
    keys, failed = [], []
    for _ in range(MAX_ATTEMPTS):
        [rescoring] = rescorings(sensor.tick(cursor=cursor))
        keys.append(rescoring.run_key)
        # Its run failed (killed, say): Dagster would not launch the same key again.
        run = dg.DagsterRun(
            job_name="score_store",
            run_id=f"{len(keys)}" * 32,
            status=dg.DagsterRunStatus.FAILURE,
            tags={RUN_KEY_TAG: rescoring.run_key or ""},
        )
        failed.append(sensor.instance.add_run(run).run_id)

    given_up = sensor.tick(cursor=cursor)

    assert keys == [keys[0], f"{keys[0]}:retry1", f"{keys[0]}:retry2"]
    assert rescorings(given_up) == []
    assert reason(given_up).endswith(
        f"store: rescoring {ALL} to v2 failed 3 times (runs {', '.join(failed)}), not tried "
        "again: see their logs, then re-execute the last one"
    )


def test_an_unservable_alias_target_is_recorded_and_never_scored(sensor: StoreSensor) -> None:
    register_version(
        sensor.store, sensor.state, Constant(), alias="champion", drop_features=("months_open",)
    )

    result = sensor.tick(cursor=json.dumps({"versions": [1]}))

    assert requested(result) == [("record_store_versions", "2", "store_model:v2")]
    assert cursor_of(result) == {"versions": [1, 2]}


def test_a_served_version_compiled_under_other_settings_is_compiled_again_once(
    sensor: StoreSensor,
) -> None:
    sensor.instance.add_dynamic_partitions("store_model_versions", ["1"])
    sensor.score("record_store_versions", partition_key="1")  # under this deployment's settings
    assert requested(sensor.tick(cursor=json.dumps({"versions": [1]}))) == []
    # An earlier release, or `compiled: off`, reached v1's outcome under other settings.
    client = registry_client(sensor.state.tracking_uri)
    client.set_model_version_tag(sensor.store.registered_model, "1", SETTINGS_TAG, "earlier")

    result = sensor.tick(cursor=json.dumps({"versions": [1]}))

    settings = compile_settings(ModelRegistry(sensor.state.tracking_uri, True), sensor.store)
    assert requested(result) == [
        ("record_store_versions", "1", f"store_model:v1:compiled-{settings}")
    ]
    sensor.score("record_store_versions", partition_key="1")
    assert requested(sensor.tick(cursor=json.dumps({"versions": [1]}))) == []


def test_a_recompile_that_ran_but_left_the_settings_differing_is_named_not_requested(
    sensor: StoreSensor,
) -> None:
    sensor.instance.add_dynamic_partitions("store_model_versions", ["1"])
    sensor.score("record_store_versions", partition_key="1")
    client = registry_client(sensor.state.tracking_uri)
    client.set_model_version_tag(sensor.store.registered_model, "1", SETTINGS_TAG, "earlier")
    [request] = sensor.tick(cursor=json.dumps({"versions": [1]})).run_requests or []
    # Its run succeeded, yet the tag still differs (MLflow refused it, say).
    done = sensor.instance.add_run(
        dg.DagsterRun(
            job_name="record_store_versions",
            run_id="b" * 32,
            status=dg.DagsterRunStatus.SUCCESS,
            tags={RUN_KEY_TAG: request.run_key or ""},
        )
    )

    result = sensor.tick(cursor=json.dumps({"versions": [1]}))

    assert requested(result) == []
    assert f"v1 was compiled again by run {done.run_id}, but its tag" in reason(result)


def test_no_rescoring_is_requested_while_a_run_writes_the_table(sensor: StoreSensor) -> None:
    register_version(sensor.store, sensor.state, Constant(), alias="champion")
    writing = sensor.instance.add_run(
        dg.DagsterRun(job_name="score_store", run_id="a" * 32, status=dg.DagsterRunStatus.STARTED)
    )

    result = sensor.tick(cursor=json.dumps({"versions": [1, 2]}))

    assert requested(result) == []
    assert reason(result) == (
        f"store: run {writing.run_id} is writing store_predictions; compare after it"
    )


def test_a_model_not_yet_registered_requests_nothing(sensor: StoreSensor) -> None:
    store = sensor.store.model_copy(update={"registered_model": "not_there"})
    unregistered = sensor.config.model_copy(
        update={"models": {**sensor.config.models, "store": store}}
    )

    result = sensor.tick(config=unregistered)

    assert requested(result) == []
    assert reason(result) == "store: @champion is not set; nothing to reconcile"
    assert cursor_of(result) == {"versions": []}


def test_an_unreachable_registry_skips_the_tick_and_keeps_the_cursor(sensor: StoreSensor) -> None:
    closed = f"http://127.0.0.1:{free_port()}"

    result = sensor.tick('{"versions": [1]}', tracking_uri=closed)

    assert isinstance(result, dg.SkipReason)  # no new cursor: it stays
    assert "registry did not answer, tick skipped" in reason(result)
    assert "retried 3 time(s)" in reason(result)  # the config's bounded retries
