"""The registry sensor of a model: new registered versions become partitions of its version
asset, and the prediction table is reconciled with the served alias. Desired: the servable
version the alias points at. Actual: the version each partition holds (its latest
materialisation, or the table's lineage where this Dagster instance has no record). Exactly the
partitions that differ are rescored, pinned to the desired version, whatever happened before
(a fresh instance, a lost cursor, a daemon that was down, a rollback)."""

import json
from dataclasses import dataclass, field

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.reconcile import Held, rectangles, stale
from coverage_serving.core.served_version import Pin, served_version
from coverage_serving.core.tables import predictions_table
from coverage_serving.defs.assets import (
    model_versions_partitions,
    predictions_asset_key,
    version_asset_key,
)
from coverage_serving.defs.jobs import AssetJob
from coverage_serving.defs.partitions import model_partitions, partition_range_tags
from coverage_serving.defs.resources import RegistryResource, WarehouseResource
from coverage_serving.defs.tags import pin_tags
from coverage_serving.errors import (
    ModelLoadError,
    RegistryError,
    RegistryUnavailableError,
    ServingError,
    UnservableModelError,
)
from coverage_serving.lineage import RUN_ID_COLUMN
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry
from coverage_serving.warehouse import Warehouse

VERSION_METADATA = "model_version"  # what a predictions materialisation records (core.batch)
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass
class RegistryCursor:
    """The versions the sensor has announced as partitions of the version asset. Rescoring
    needs no memory: it compares the registry with the tables on every tick."""

    versions: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> "RegistryCursor":
        return cls(versions=json.loads(raw).get("versions", [])) if raw else cls()

    def dump(self) -> str:
        return json.dumps({"versions": self.versions})


def registry_sensor_name(model: ModelConfig) -> str:
    return f"{model.name}_registry_sensor"


def build_registry_sensor(
    model: ModelConfig, scoring_job: AssetJob, versions_job: AssetJob, poll_seconds: int
) -> dg.SensorDefinition:
    versions_asset = version_asset_key(model)

    @dg.sensor(
        name=registry_sensor_name(model),
        minimum_interval_seconds=poll_seconds,
        # Two jobs: the version asset and the prediction table have different partitions.
        jobs=[scoring_job, versions_job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Polls the registry for {model.registered_model}: records new versions, and "
            f"rescores every partition of {model.output_table} that holds another version "
            f"than @{model.alias}'s."
        ),
    )
    def registry_sensor(
        context: dg.SensorEvaluationContext,
        registry: RegistryResource,
        warehouse: WarehouseResource,
    ) -> dg.SensorResult | dg.SkipReason:
        seen = RegistryCursor.parse(context.cursor)
        models = registry.open()
        try:
            versions = models.versions(model.registered_model)
            desired, why_none = _desired_version(models, model)
        except RegistryUnavailableError as err:
            # The cursor stays where it was, so nothing is missed or requested twice later.
            return dg.SkipReason(f"registry did not answer, tick skipped: {err}")

        new_versions = [v for v in versions if v not in seen.versions]
        recording = [
            dg.RunRequest(
                run_key=f"{model.name}_model:v{version}",
                job_name=versions_job.name,
                asset_selection=[versions_asset],
                partition_key=str(version),
            )
            for version in new_versions
        ]
        if desired is None:
            rescoring, reason = [], why_none
        else:
            rescoring, reason = _reconcile(
                context, warehouse.open(), model, desired, scoring_job.name
            )
        context.log.info(reason)
        run_requests = recording + rescoring
        return dg.SensorResult(
            run_requests=run_requests,
            skip_reason=None if run_requests else reason,
            dynamic_partitions_requests=[
                model_versions_partitions(model).build_add_request([str(v) for v in new_versions])
            ]
            if new_versions
            else [],
            cursor=RegistryCursor(versions=versions).dump(),
        )

    return registry_sensor


def _desired_version(models: ModelRegistry, model: ModelConfig) -> tuple[int | None, str]:
    """The version the alias points at when it may serve, else None and why not."""
    try:
        return served_version(models, model).version, ""
    except RegistryUnavailableError:
        raise
    except RegistryError:
        return None, f"{model.name}: @{model.alias} is not set; nothing to reconcile"
    except (UnservableModelError, ModelLoadError) as err:
        return None, f"{model.name}: @{model.alias} is not servable, tables kept: {err}"


def _reconcile(
    context: dg.SensorEvaluationContext,
    warehouse: Warehouse,
    model: ModelConfig,
    desired: int,
    job_name: str,
) -> tuple[list[dg.RunRequest], str]:
    """Run requests for the partitions that hold another version than `desired`, and what
    was compared."""
    busy = _unfinished_run(context.instance, model, job_name)
    if busy:
        return [], f"{model.name}: run {busy} is writing {model.output_table}; compare after it"
    try:
        held = _held(context.instance, warehouse, model)
    except ServingError as err:
        return [], f"{model.name}: warehouse did not answer, tick skipped: {err}"
    differ = stale(desired, held)
    if not differ:
        return [], f"{model.name}: {len(held)} partitions on v{desired} = @{model.alias}"
    pin = Pin(desired, model.alias)
    requests = [
        dg.RunRequest(
            run_key=rescoring.key(model.name, desired, held),
            job_name=job_name,
            asset_selection=[predictions_asset_key(model)],
            tags={**partition_range_tags(rescoring.first, rescoring.last), **pin_tags(pin)},
        )
        for rescoring in rectangles(model.markets, differ)
    ]
    return requests, (
        f"{model.name}: {len(differ)} of {len(held)} partitions hold {_versions(held, differ)}, "
        f"not v{desired} = @{model.alias}: rescoring them in {len(requests)} run(s)"
    )


def _unfinished_run(instance: dg.DagsterInstance, model: ModelConfig, job_name: str) -> str | None:
    """A run that may be writing the prediction table now: what it writes is compared after
    it, so a table is never requested twice for one difference."""
    key = predictions_asset_key(model)
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        if run.job_name == job_name or key in (run.asset_selection or ()):
            return run.run_id
    return None


def _held(
    instance: dg.DagsterInstance, warehouse: Warehouse, model: ModelConfig
) -> dict[Partition, Held]:
    """The version each scored partition of the config holds: from its latest
    materialisation in this instance; for partitions with no record, from the table's
    lineage."""
    configured = set(map(Partition.parse, model_partitions(model).get_partition_keys()))
    recorded = _recorded(instance, predictions_asset_key(model))
    held = {p: h for p, h in recorded.items() if p in configured}
    unrecorded = configured - set(held)
    if unrecorded:
        held |= _in_table(warehouse, model, unrecorded)
    return held


def _recorded(instance: dg.DagsterInstance, asset: dg.AssetKey) -> dict[Partition, Held]:
    latest = instance.get_latest_storage_id_by_partition(
        asset, dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, storage_ids=list(latest.values())),
        limit=len(latest),
    ).records
    held = {}
    for record in records:
        materialization = record.asset_materialization
        version = materialization.metadata.get(VERSION_METADATA) if materialization else None
        if materialization and materialization.partition and version is not None:
            held[Partition.parse(materialization.partition)] = Held(
                frozenset({int(version.value)}), f"event {record.storage_id}"
            )
    return held


def _in_table(
    warehouse: Warehouse, model: ModelConfig, partitions: set[Partition]
) -> dict[Partition, Held]:
    months = sorted({partition.month for partition in partitions})
    found: dict[Partition, list[tuple[int, str]]] = {}
    for partition, (version, run_id) in warehouse.distinct_values(
        predictions_table(model), ["model_version", RUN_ID_COLUMN], months
    ):
        if partition in partitions:
            found.setdefault(partition, []).append((int(version), str(run_id)))
    return {
        partition: Held(
            frozenset(version for version, _ in rows),
            "runs " + ",".join(sorted({run_id for _, run_id in rows})),
        )
        for partition, rows in found.items()
    }


def _versions(held: dict[Partition, Held], partitions: list[Partition]) -> str:
    versions = sorted({v for partition in partitions for v in held[partition].versions})
    return ", ".join(f"v{v}" for v in versions)
