"""The registry sensor of a model: new registered versions become partitions of its version
asset, and the prediction table is reconciled with the served alias. Desired: the servable
version the alias points at. Actual: the version each partition holds (its latest
materialisation, or the table's lineage where this Dagster instance has no record). Exactly the
partitions that differ are rescored, pinned to the desired version, whatever happened before
(a fresh instance, a lost cursor, a daemon that was down, a rollback). A served version whose
compile outcome was reached under other compile settings (core.compiled.compile_settings) has
its version partition recorded again, which compiles it."""

import json
from dataclasses import dataclass, field

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.compiled import SETTINGS_TAG, compile_settings
from coverage_serving.core.reconcile import Held, rectangles, stale
from coverage_serving.core.served_version import HeldByGateError, Pin, served_version
from coverage_serving.core.tables import PredictionTarget, prediction_targets, served_target
from coverage_serving.defs.attempts import attempted, run_of
from coverage_serving.defs.jobs import AssetJob
from coverage_serving.defs.names import (
    model_versions_partitions,
    prediction_asset_key,
    version_asset_key,
)
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
from coverage_serving.registry import ModelRegistry, ModelVersionRef
from coverage_serving.warehouse import Warehouse

NOT_SCORED = Held(frozenset(), "not scored")
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
    model: ModelConfig,
    scoring_job: AssetJob,
    versions_job: AssetJob,
    poll_seconds: int,
    shadow_job: AssetJob | None = None,
) -> dg.SensorDefinition:
    # The job that writes each prediction table: the served one's, or the shadow's.
    jobs = {
        target.name: shadow_job if target.shadow else scoring_job
        for target in prediction_targets(model)
    }

    @dg.sensor(
        name=registry_sensor_name(model),
        minimum_interval_seconds=poll_seconds,
        # The version asset and the prediction tables have different partitions or jobs.
        jobs=[scoring_job, versions_job, *([shadow_job] if shadow_job else [])],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Polls the registry for {model.registered_model}: records new versions, and "
            f"rescores every partition of {model.output_table} that holds another version "
            f"than @{model.alias}'s"
            + (
                f", and of {model.shadow_table} than @{model.challenger.alias}'s."
                if model.challenger
                else "."
            )
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
            desired = {
                target.name: _desired_version(models, model, target)
                for target in prediction_targets(model)
            }
        except RegistryUnavailableError as err:
            # The cursor stays where it was, so nothing is missed or requested twice later.
            return dg.SkipReason(f"registry did not answer, tick skipped: {err}")

        new_versions = [v for v in versions if v not in seen.versions]
        run_requests = [
            _recording(model, versions_job, version, f"{model.name}_model:v{version}")
            for version in new_versions
        ]
        reasons = []
        for target in prediction_targets(model):
            ref, why_not = desired[target.name]
            if ref is None:
                reasons.append(why_not)
                continue
            requests, reason = _reconcile(
                context, warehouse.open(), model, target, ref.version, jobs[target.name].name
            )
            run_requests += requests
            reasons.append(reason)
        served = [ref for ref, _ in desired.values() if ref is not None]
        recompiles, found = _recompiles(context.instance, models, model, served, versions_job)
        run_requests += recompiles
        reasons += found
        reason = "; ".join(reasons)
        context.log.info(reason)
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


def _desired_version(
    models: ModelRegistry, model: ModelConfig, target: PredictionTarget
) -> tuple[ModelVersionRef | None, str]:
    """The version the target's alias points at when it may serve, else None and why not."""
    who = _label(model, target)
    try:
        return served_version(models, model, alias=target.alias), ""
    except RegistryUnavailableError:
        raise
    except RegistryError:
        return None, f"{who}: @{target.alias} is not set; nothing to reconcile"
    except HeldByGateError as err:
        return None, f"{who}: {err}"
    except (UnservableModelError, ModelLoadError) as err:
        return None, f"{who}: @{target.alias} is not servable, tables kept: {err}"


def _reconcile(
    context: dg.SensorEvaluationContext,
    warehouse: Warehouse,
    model: ModelConfig,
    target: PredictionTarget,
    desired: int,
    job_name: str,
) -> tuple[list[dg.RunRequest], str]:
    """Run requests for the partitions of the target that hold another version than
    `desired`, and what was compared."""
    who, key = _label(model, target), prediction_asset_key(model, target)
    busy = _unfinished_run(context.instance, key, job_name)
    if busy:
        return [], f"{who}: run {busy} is writing {target.table.name}; compare after it"
    try:
        held = _held(context.instance, warehouse, model, target)
    except ServingError as err:
        return [], f"{who}: warehouse did not answer, tick skipped: {err}"
    differ = stale(desired, held)
    if not differ:
        return [], f"{who}: {len(held)} partitions on v{desired} = @{target.alias}"
    pin = Pin(desired, target.alias)
    wanted = [
        (
            f"{who}: rescoring {rescoring.first.key}..{rescoring.last.key} to v{desired}",
            dg.RunRequest(
                run_key=rescoring.key(_label(model, target).replace(" ", ":"), desired, held),
                job_name=job_name,
                asset_selection=[key],
                tags={**partition_range_tags(rescoring.first, rescoring.last), **pin_tags(pin)},
            ),
        )
        for rescoring in rectangles(model.markets, differ)
    ]
    requests, stopped = attempted(context.instance, wanted)
    return requests, "; ".join(
        [
            f"{who}: {len(differ)} of {len(held)} partitions hold {_versions(held, differ)}, "
            f"not v{desired} = @{target.alias}: rescoring them in {len(requests)} run(s)",
            *stopped,
        ]
    )


def _recompiles(
    instance: dg.DagsterInstance,
    models: ModelRegistry,
    model: ModelConfig,
    served: list[ModelVersionRef],
    versions_job: AssetJob,
) -> tuple[list[dg.RunRequest], list[str]]:
    """Runs recording again the served versions (and the challenger) recorded in this instance
    whose compile outcome was reached under other settings than this deployment's, which
    compiles them; and what was found. Once per settings (the run key), a failed run tried again
    (defs.attempts); a version not recorded yet is compiled by its first record."""
    settings = compile_settings(models, model)
    recorded = instance.get_latest_storage_id_by_partition(
        version_asset_key(model), dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    due = sorted(
        {
            ref.version
            for ref in served
            if str(ref.version) in recorded and ref.tags.get(SETTINGS_TAG) != settings
        }
    )
    wanted = [
        (
            f"{model.name}: compiling v{version} again",
            _recording(
                model, versions_job, version, f"{model.name}_model:v{version}:compiled-{settings}"
            ),
        )
        for version in due
    ]
    attempts, reasons = attempted(instance, wanted)
    requests = []
    for request in attempts:
        assert request.run_key is not None
        run = run_of(instance, request.run_key)
        if run is None:
            requests.append(request)
            reasons.append(
                f"{model.name}: v{request.partition_key} was compiled under other settings: "
                "compiling it again"
            )
        elif run.status == dg.DagsterRunStatus.SUCCESS:
            reasons.append(
                f"{model.name}: v{request.partition_key} was compiled again by run "
                f"{run.run_id}, but its tag {SETTINGS_TAG} still differs: see that run's log"
            )
        # A run under way: its outcome is compared at a later tick.
    return requests, reasons


def _recording(
    model: ModelConfig, versions_job: AssetJob, version: int, run_key: str
) -> dg.RunRequest:
    """A run recording the version's partition of the version asset."""
    return dg.RunRequest(
        run_key=run_key,
        job_name=versions_job.name,
        asset_selection=[version_asset_key(model)],
        partition_key=str(version),
    )


def _label(model: ModelConfig, target: PredictionTarget) -> str:
    return f"{model.name} shadow" if target.shadow else model.name


def _unfinished_run(instance: dg.DagsterInstance, key: dg.AssetKey, job_name: str) -> str | None:
    """A run that may be writing the table now: what it writes is compared after it, so a
    table is never requested twice for one difference."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        if run.job_name == job_name or key in (run.asset_selection or ()):
            return run.run_id
    return None


def _held(
    instance: dg.DagsterInstance, warehouse: Warehouse, model: ModelConfig, target: PredictionTarget
) -> dict[Partition, Held]:
    """The version each scored partition of the target holds: from its latest materialisation
    in this instance; for partitions with no record, from the table's lineage."""
    configured = _kept(model, target)
    recorded = _recorded(instance, prediction_asset_key(model, target))
    held = {p: h for p, h in recorded.items() if p in configured}
    unrecorded = configured - set(held)
    if unrecorded:
        held |= _in_table(warehouse, target, unrecorded)
    if target.shadow:
        # A shadow partition is due wherever the served table has the partition.
        served = _held(instance, warehouse, model, served_target(model))
        held |= {p: NOT_SCORED for p in configured & set(served) if p not in held}
    return held


def _kept(model: ModelConfig, target: PredictionTarget) -> set[Partition]:
    """The partitions the sensor keeps on the target's version: all of the served table; of
    the shadow, every market of the challenger's last months (all, when not limited)."""
    configured = sorted(map(Partition.parse, model_partitions(model).get_partition_keys()))
    last = model.challenger.last_months if target.shadow and model.challenger else None
    if last is None:
        return set(configured)
    months = sorted({p.month for p in configured})[-last:]
    return {p for p in configured if p.month in months}


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
    warehouse: Warehouse, target: PredictionTarget, partitions: set[Partition]
) -> dict[Partition, Held]:
    months = sorted({partition.month for partition in partitions})
    found: dict[Partition, list[tuple[int, str]]] = {}
    for partition, (version, run_id) in warehouse.distinct_values(
        target.table, ["model_version", RUN_ID_COLUMN], months
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
