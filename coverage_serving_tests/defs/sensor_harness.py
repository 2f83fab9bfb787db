"""The store model's registry sensor evaluated tick by tick against a real registry, a real
DuckDB warehouse and a Dagster instance, and what its results say."""

import json
from dataclasses import dataclass
from typing import Any

import dagster as dg

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.definitions import build_definitions, resources_for_deployment
from coverage_serving.defs.resources import RegistryResource
from coverage_serving.defs.sensors import registry_sensor_name
from coverage_serving.settings import LocalState

ALL = "IN|2026-01-01..ID|2026-02-01"  # the small config's store partitions, IN, ID x Jan, Feb
Tick = dg.SensorResult | dg.SkipReason


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

    def score(self, job_name: str = "score_store", **run: Any) -> dg.ExecuteInProcessResult:
        """Run the job in the sensor's instance, as the daemon would."""
        job = self.definitions(self.config).resolve_job_def(job_name)
        result = job.execute_in_process(instance=self.instance, **run)
        assert result.success
        return result

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Run what a tick requested, as the daemon would."""
        assert request.job_name is not None
        return self.score(
            request.job_name, tags=request.tags, asset_selection=request.asset_selection
        )

    def definitions(self, config: ServingConfig) -> dg.Definitions:
        return build_definitions(config, self.state)


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
