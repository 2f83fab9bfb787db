"""The registry sensor against a real sqlite registry, a real DuckDB warehouse and a Dagster
instance: what it requests, what it says and where its cursor moves, tick by tick."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import pytest

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.definitions import build_definitions, resources_for_deployment
from coverage_serving.defs.partitions import all_partitions_tags
from coverage_serving.defs.resources import RegistryResource
from coverage_serving.defs.sensors import registry_sensor_name
from coverage_serving.defs.tags import PINNED_ALIAS_TAG, PINNED_VERSION_TAG
from coverage_serving.demo.emulator import free_port
from coverage_serving.settings import LocalState
from coverage_serving_tests.conftest import private_copy
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration

ALL = "IN|2026-01-01..ID|2026-02-01"  # the small config's store partitions, IN, ID x Jan, Feb
Tick = dg.SensorResult | dg.SkipReason


@pytest.fixture(scope="module")
def scored_home(
    trained_home: Path, small_config: ServingConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Every store partition scored with version 1, recorded in an instance of its own (as
    after `make demo` with another DAGSTER_HOME): the sensors' instances have no record."""
    state = LocalState(tmp_path_factory.mktemp("scored") / "home")
    shutil.copytree(trained_home, state.home)
    store = small_config.models["store"]
    with dg.DagsterInstance.ephemeral() as elsewhere:
        scored = build_definitions(small_config, state).resolve_job_def("score_store")
        assert scored.execute_in_process(
            tags=all_partitions_tags(store), instance=elsewhere
        ).success
    return state.home


@dataclass(frozen=True)
class StoreSensor:
    """The store model's registry sensor over a state scored with version 1, evaluated in a
    Dagster instance with no record of that scoring."""

    config: ServingConfig
    state: LocalState
    instance: dg.DagsterInstance

    @property
    def store(self) -> ModelConfig:
        return self.config.models["store"]

    def tick(
        self,
        cursor: str | None = None,
        tracking_uri: str | None = None,
        config: ServingConfig | None = None,
    ) -> Tick:
        config = config or self.config
        name = registry_sensor_name(self.store)
        [sensor] = [s for s in self.definitions(config).sensors or [] if s.name == name]
        resources = {
            "warehouse": resources_for_deployment(config, self.state)["warehouse"],
            "registry": RegistryResource(
                tracking_uri=tracking_uri or self.state.tracking_uri, allow_pickled_models=True
            ),
        }
        with dg.build_sensor_context(
            cursor=cursor, resources=resources, instance=self.instance
        ) as context:
            return sensor(context)

    def score(self, **run: Any) -> None:
        """Run score_store in the sensor's instance, as the daemon would."""
        job = self.definitions(self.config).resolve_job_def("score_store")
        assert job.execute_in_process(instance=self.instance, **run).success

    def definitions(self, config: ServingConfig) -> dg.Definitions:
        return build_definitions(config, self.state)


@pytest.fixture
def sensor(
    scored_home: Path,
    small_config: ServingConfig,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> StoreSensor:
    return StoreSensor(small_config, private_copy(scored_home, tmp_path, monkeypatch), instance)


def requested(result: Tick) -> list[tuple[str | None, str | None, str | None]]:
    assert isinstance(result, dg.SensorResult)
    return sorted(
        ((r.job_name, r.partition_key, r.run_key) for r in result.run_requests or []), key=str
    )


def rescorings(result: Tick) -> list[dg.RunRequest]:
    assert isinstance(result, dg.SensorResult)
    return [r for r in result.run_requests or [] if r.job_name == "score_store"]


def ranges(result: Tick) -> list[str]:
    return [
        f"{r.tags['dagster/asset_partition_range_start']}.."
        f"{r.tags['dagster/asset_partition_range_end']}"
        for r in rescorings(result)
    ]


def cursor_of(result: Tick) -> dict:
    assert isinstance(result, dg.SensorResult) and result.cursor
    return json.loads(result.cursor)


def reason(result: Tick) -> str:
    skip = result.skip_reason if isinstance(result, dg.SensorResult) else result
    assert skip is not None
    return skip.skip_message or ""


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


def test_an_unservable_alias_target_is_recorded_and_never_scored(sensor: StoreSensor) -> None:
    register_version(
        sensor.store, sensor.state, Constant(), alias="champion", drop_features=("months_open",)
    )

    result = sensor.tick(cursor=json.dumps({"versions": [1]}))

    assert requested(result) == [("record_store_versions", "2", "store_model:v2")]
    assert cursor_of(result) == {"versions": [1, 2]}


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
