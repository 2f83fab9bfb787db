"""The registry sensor of a model: new versions become partitions of its version asset, and a
move of the served alias rescores every partition of its prediction table with that version,
in one run."""

import json
from dataclasses import asdict, dataclass, field

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.contracts import check_signature
from coverage_serving.defs.assets import (
    model_versions_partitions,
    predictions_asset_key,
    version_asset_key,
)
from coverage_serving.defs.jobs import AssetJob
from coverage_serving.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, all_partitions_tags
from coverage_serving.defs.resources import RegistryResource
from coverage_serving.defs.tags import PINNED_ALIAS_TAG, PINNED_VERSION_TAG
from coverage_serving.errors import (
    ModelLoadError,
    RegistryError,
    RegistryUnavailableError,
    UnservableModelError,
)
from coverage_serving.registry import ModelRegistry


@dataclass
class RegistryCursor:
    """What the sensor has seen: the versions it announced, the version it last served and how
    many alias moves it has rescored."""

    versions: list[int] = field(default_factory=list)
    served: int | None = None
    moves: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "RegistryCursor":
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def registry_sensor_name(model: ModelConfig) -> str:
    return f"{model.name}_registry_sensor"


def rescoring_run_key(
    model: ModelConfig, version: int, move: int, range_tags: dict[str, str]
) -> str:
    # One run key per (model, version, alias move, partitions): dagster never launches a key
    # twice for a sensor, so ticks, restarts and old cursors do not rescore a move again, while
    # moving the alias back to an older version (a rollback) is a new move that rescores.
    partitions = f"{range_tags[RANGE_START_TAG]}..{range_tags[RANGE_END_TAG]}"
    return f"{model.name}:v{version}:move{move}:{partitions}"


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
            f"Polls the registry for {model.registered_model}: records new versions and, when "
            f"@{model.alias} moves, rescores every partition of {model.output_table} with it."
        ),
    )
    def registry_sensor(
        context: dg.SensorEvaluationContext, registry: RegistryResource
    ) -> dg.SensorResult | dg.SkipReason:
        seen = RegistryCursor.parse(context.cursor)
        models = registry.open()
        try:
            versions = models.versions(model.registered_model)
            served = _served_version(models, model)
        except RegistryUnavailableError as err:
            # The cursor stays where it was, so nothing is missed or requested twice later.
            return dg.SkipReason(f"registry did not answer, tick skipped: {err}")

        new_versions = [v for v in versions if v not in seen.versions]
        run_requests = [
            dg.RunRequest(
                run_key=f"{model.name}_model:v{version}",
                job_name=versions_job.name,
                asset_selection=[versions_asset],
                partition_key=str(version),
            )
            for version in new_versions
        ]
        # The first tick takes the served version as already scored: batch runs and backfills
        # fill the tables; the sensor reacts to moves it sees happen.
        moves = seen.moves
        if context.cursor is not None and served is not None and served != seen.served:
            moves += 1
            run_requests += _rescore_requests(
                context, models, model, served, moves, scoring_job.name
            )
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[
                model_versions_partitions(model).build_add_request([str(v) for v in new_versions])
            ]
            if new_versions
            else [],
            cursor=RegistryCursor(versions=versions, served=served, moves=moves).dump(),
        )

    return registry_sensor


def _served_version(models: ModelRegistry, model: ModelConfig) -> int | None:
    """The version the alias points at, or None while the alias is not set."""
    try:
        return models.resolve(model.registered_model, model.alias).version
    except RegistryUnavailableError:
        raise
    except RegistryError:
        return None


def _rescore_requests(
    context: dg.SensorEvaluationContext,
    models: ModelRegistry,
    model: ModelConfig,
    version: int,
    move: int,
    job_name: str,
) -> list[dg.RunRequest]:
    ref = models.pinned(model.registered_model, version, model.alias)
    try:
        check_signature(model, version, models.signature(ref))
    except (UnservableModelError, ModelLoadError) as err:
        context.log.warning(f"not rescoring with {ref.name} version {version}: {err}")
        return []
    # One run over every partition (a partition range, as a single-run backfill uses): one
    # process start and one model load for the whole table.
    range_tags = all_partitions_tags(model)
    return [
        dg.RunRequest(
            run_key=rescoring_run_key(model, version, move, range_tags),
            job_name=job_name,
            asset_selection=[predictions_asset_key(model)],
            tags={**range_tags, PINNED_VERSION_TAG: str(version), PINNED_ALIAS_TAG: model.alias},
        )
    ]
