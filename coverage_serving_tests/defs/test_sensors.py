"""The registry sensor against a real sqlite registry: what it requests and where its cursor
moves, tick by tick."""

import json

import dagster as dg
import mlflow
import pytest

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.definitions import build_definitions
from coverage_serving.defs.resources import RegistryResource
from coverage_serving.defs.sensors import registry_sensor_name
from coverage_serving.defs.tags import PINNED_ALIAS_TAG, PINNED_VERSION_TAG
from coverage_serving.demo.emulator import free_port
from coverage_serving.settings import LocalState
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration

# The small config's store partitions, IN and ID x 2026-01 and 2026-02, as one range.
ALL_PARTITIONS = {
    "dagster/asset_partition_range_start": "IN|2026-01-01",
    "dagster/asset_partition_range_end": "ID|2026-02-01",
}


def tick(
    config: ServingConfig,
    state: LocalState,
    cursor: str | None,
    tracking_uri: str | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One evaluation of the store model's registry sensor."""
    name = registry_sensor_name(config.models["store"])
    [sensor] = [s for s in build_definitions(config, state).sensors or [] if s.name == name]
    registry = RegistryResource(
        tracking_uri=tracking_uri or state.tracking_uri, allow_pickled_models=True
    )
    return sensor(dg.build_sensor_context(cursor=cursor, resources={"registry": registry}))


def requested(
    result: dg.SensorResult | dg.SkipReason,
) -> list[tuple[str | None, str | None, str | None]]:
    assert isinstance(result, dg.SensorResult)
    return sorted(
        ((r.job_name, r.partition_key, r.run_key) for r in result.run_requests or []),
        key=str,
    )


def cursor_of(result: dg.SensorResult | dg.SkipReason) -> dict:
    assert isinstance(result, dg.SensorResult) and result.cursor
    return json.loads(result.cursor)


@pytest.fixture
def store(small_config: ServingConfig) -> ModelConfig:
    return small_config.models["store"]


def test_the_first_tick_records_versions_without_rescoring(
    small_config: ServingConfig, state: LocalState
) -> None:
    result = tick(small_config, state, cursor=None)

    assert requested(result) == [("record_store_versions", "1", "store_model:v1")]
    [added] = result.dynamic_partitions_requests
    assert (added.partitions_def_name, list(added.partition_keys)) == (
        "store_model_versions",
        ["1"],
    )
    assert cursor_of(result) == {"versions": [1], "served": 1, "moves": 0}


def test_a_model_not_yet_registered_requests_nothing(
    small_config: ServingConfig, state: LocalState
) -> None:
    store = small_config.models["store"].model_copy(update={"registered_model": "not_there"})
    unregistered = small_config.model_copy(
        update={"models": {**small_config.models, "store": store}}
    )

    result = tick(unregistered, state, cursor=None)

    assert requested(result) == []
    assert cursor_of(result) == {"versions": [], "served": None, "moves": 0}


def test_a_version_without_an_alias_move_is_only_recorded(
    small_config: ServingConfig, state: LocalState, store: ModelConfig
) -> None:
    register_version(store, state, Constant(), alias=None)

    result = tick(small_config, state, cursor=json.dumps({"versions": [1], "served": 1}))

    assert requested(result) == [("record_store_versions", "2", "store_model:v2")]
    assert cursor_of(result) == {"versions": [1, 2], "served": 1, "moves": 0}


def test_an_alias_move_rescores_every_partition_in_one_run_pinned_to_the_version(
    small_config: ServingConfig, state: LocalState, store: ModelConfig
) -> None:
    register_version(store, state, Constant(), alias="champion")

    result = tick(small_config, state, cursor=json.dumps({"versions": [1], "served": 1}))

    assert requested(result) == [
        ("record_store_versions", "2", "store_model:v2"),
        ("score_store", None, "store:v2:move1:IN|2026-01-01..ID|2026-02-01"),
    ]
    assert isinstance(result, dg.SensorResult)
    [scoring] = [r for r in result.run_requests or [] if r.job_name == "score_store"]
    assert scoring.asset_selection == [dg.AssetKey("store_predictions")]
    assert scoring.tags == {
        **ALL_PARTITIONS,
        PINNED_VERSION_TAG: "2",
        PINNED_ALIAS_TAG: "champion",
    }
    assert cursor_of(result) == {"versions": [1, 2], "served": 2, "moves": 1}


def test_moving_the_alias_back_rescores_with_the_older_version(
    small_config: ServingConfig, state: LocalState, store: ModelConfig
) -> None:
    register_version(store, state, Constant(), alias=None)
    mlflow.MlflowClient(state.tracking_uri).set_registered_model_alias(
        store.registered_model, "champion", "1"
    )
    after_first_move = json.dumps({"versions": [1, 2], "served": 2, "moves": 1})

    result = tick(small_config, state, cursor=after_first_move)

    assert requested(result) == [
        ("score_store", None, "store:v1:move2:IN|2026-01-01..ID|2026-02-01"),
    ]
    assert isinstance(result, dg.SensorResult)
    [rollback] = result.run_requests or []
    assert rollback.tags[PINNED_VERSION_TAG] == "1"
    assert cursor_of(result) == {"versions": [1, 2], "served": 1, "moves": 2}


def test_no_change_requests_nothing(small_config: ServingConfig, state: LocalState) -> None:
    unchanged = json.dumps({"versions": [1], "served": 1})

    result = tick(small_config, state, cursor=unchanged)

    assert requested(result) == []
    assert cursor_of(result) == {"versions": [1], "served": 1, "moves": 0}


def test_a_restart_with_an_old_cursor_repeats_the_same_run_keys(
    small_config: ServingConfig, state: LocalState, store: ModelConfig
) -> None:
    old = json.dumps({"versions": [1], "served": 1})
    register_version(store, state, Constant(), alias="champion")
    first = tick(small_config, state, cursor=old)

    again = tick(small_config, state, cursor=old)

    # Dagster launches a run key once per sensor: the repeat launches nothing new.
    assert requested(again) == requested(first)


def test_an_unservable_version_is_recorded_but_never_scored(
    small_config: ServingConfig, state: LocalState, store: ModelConfig
) -> None:
    register_version(store, state, Constant(), alias="champion", drop_features=("months_open",))

    result = tick(small_config, state, cursor=json.dumps({"versions": [1], "served": 1}))

    assert requested(result) == [("record_store_versions", "2", "store_model:v2")]
    assert cursor_of(result)["served"] == 2


def test_an_unreachable_registry_skips_the_tick_and_keeps_the_cursor(
    small_config: ServingConfig, state: LocalState
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"

    result = tick(small_config, state, cursor='{"versions": [1], "served": 1}', tracking_uri=closed)

    assert isinstance(result, dg.SkipReason)
    assert "registry did not answer, tick skipped" in (result.skip_message or "")
    assert "retried 3 time(s)" in (result.skip_message or "")  # the config's bounded retries
