"""One factory turns a model's config entry into its feature and prediction assets."""

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from coverage_serving.config import ModelConfig
from coverage_serving.core.batch import StepResult, refresh_features, score_into_table
from coverage_serving.core.contracts import (
    ContractViolation,
    check_signature,
    input_schema,
    output_schema,
)
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.defs.partitions import model_partitions
from coverage_serving.defs.resources import RegistryResource, WarehouseResource
from coverage_serving.defs.tags import PINNED_ALIAS_TAG, PINNED_VERSION_TAG
from coverage_serving.errors import ServingError, UnservableModelError
from coverage_serving.partition import Partition

INPUT_CHECK = "input_contract"
OUTPUT_CHECK = "output_contract"
SERVABLE_CHECK = "servable"

AssetEvent = dg.MaterializeResult | dg.AssetCheckResult


def build_model_assets(model: ModelConfig) -> list[dg.AssetsDefinition]:
    partitions = model_partitions(model)
    features_key, predictions_key = features_asset_key(model), predictions_asset_key(model)

    @dg.asset(
        key=features_key,
        partitions_def=partitions,
        group_name=model.name,
        description=f"Feature snapshot of {model.name!r}, checked against its input contract.",
        metadata=_table_metadata(input_schema(model), features_table(model).qualified_name),
        check_specs=[dg.AssetCheckSpec(INPUT_CHECK, asset=features_key)],
    )
    def features(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[AssetEvent]:
        partition = Partition.parse(context.partition_key)
        yield from _materialize(
            INPUT_CHECK, lambda: refresh_features(warehouse.open(), model, partition)
        )

    @dg.asset(
        key=predictions_key,
        deps=[features],
        partitions_def=partitions,
        group_name=model.name,
        description=(
            f"Predictions of {model.registered_model}@{model.alias} for every row of "
            f"{model.features_table}, with lineage."
        ),
        metadata=_table_metadata(output_schema(model), predictions_table(model).qualified_name),
        check_specs=[dg.AssetCheckSpec(OUTPUT_CHECK, asset=predictions_key)],
    )
    def predictions(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        registry: RegistryResource,
    ) -> Iterator[AssetEvent]:
        partition = Partition.parse(context.partition_key)

        def score() -> StepResult:
            models = registry.open()
            tags = context.run.tags
            # Resolved once here: every row of this run is scored by this one version. A run
            # requested for a version (e.g. by the registry sensor) keeps it even if the alias
            # has moved on since.
            ref = (
                models.pinned(
                    model.registered_model,
                    int(tags[PINNED_VERSION_TAG]),
                    tags.get(PINNED_ALIAS_TAG),
                )
                if PINNED_VERSION_TAG in tags
                else models.resolve(model.registered_model, model.alias)
            )
            loaded = models.load(ref)
            return score_into_table(warehouse.open(), model, loaded, partition, context.run_id)

        yield from _materialize(OUTPUT_CHECK, score)

    return [features, predictions]


def features_asset_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(model.features_table)


def predictions_asset_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(f"{model.name}_predictions")


def model_versions_partitions(model: ModelConfig) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{model.name}_model_versions")


def version_asset_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(f"{model.name}_model")


def build_version_asset(model: ModelConfig) -> dg.AssetsDefinition:
    """The registered versions of the model, one partition each, with what a reviewer needs."""
    key = version_asset_key(model)

    @dg.asset(
        key=key,
        partitions_def=model_versions_partitions(model),
        group_name=model.name,
        description=(
            f"Registered versions of {model.registered_model}; a version is servable when its "
            "signature takes exactly the configured features."
        ),
        check_specs=[dg.AssetCheckSpec(SERVABLE_CHECK, asset=key)],
    )
    def versions(
        context: dg.AssetExecutionContext, registry: RegistryResource
    ) -> Iterator[AssetEvent]:
        models = registry.open()
        ref = models.pinned(model.registered_model, int(context.partition_key), alias=None)
        try:
            details = models.describe(ref)
            check_signature(model, ref.version, models.signature(ref))
            reason = None
        except UnservableModelError as err:
            reason = str(err)
        except ServingError as err:
            raise dg.Failure(description=str(err), metadata=err.metadata()) from None
        yield dg.MaterializeResult(
            metadata={
                **{k: v for k, v in details.items() if k != "metrics"},
                "aliases": ", ".join(details["aliases"]) or "none",
                "metrics": dg.MetadataValue.json(details["metrics"]),
                "servable": reason is None,
            }
        )
        yield dg.AssetCheckResult(
            check_name=SERVABLE_CHECK,
            passed=reason is None,
            metadata={"reason": reason or "signature matches the configured features"},
        )

    return versions


def _materialize(check: str, step: Callable[[], StepResult]) -> Iterator[AssetEvent]:
    """Run a step; report its contract check and turn serving errors into Dagster failures."""
    try:
        result = step()
    except ContractViolation as err:
        if check.startswith(err.contract):
            yield dg.AssetCheckResult(check_name=check, passed=False, metadata=err.metadata())
        raise dg.Failure(description=str(err), metadata=err.metadata()) from err
    except ServingError as err:
        raise dg.Failure(description=str(err), metadata=err.metadata()) from err
    yield dg.MaterializeResult(metadata=_result_metadata(result))
    yield dg.AssetCheckResult(check_name=check, passed=True, metadata={"rows_checked": result.rows})


def _table_metadata(schema: pa.DataFrameSchema, table_name: str) -> dict[str, Any]:
    # dagster-pandera only offers the schema as a DagsterType; its table schema is what the UI
    # shows as columns, and these assets write through the warehouse, not an IO manager.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        dagster_type = pandera_schema_to_dagster_type(schema)
    return {
        "dagster/column_schema": dagster_type.metadata["schema"].schema,
        "dagster/table_name": table_name,
    }


def _result_metadata(result: StepResult) -> dict[str, Any]:
    details = dict(result.details)
    quantiles = details.pop("prediction_quantiles", None)
    metadata: dict[str, Any] = {"dagster/row_count": result.rows, **result.timings, **details}
    if quantiles:
        metadata["prediction_summary"] = dg.MetadataValue.md(_quantile_table(quantiles))
    return metadata


def _quantile_table(quantiles: dict[str, dict[str, float]]) -> str:
    stats = list(next(iter(quantiles.values())))
    lines = [
        "| prediction | " + " | ".join(stats) + " |",
        "|---|" + "---|" * len(stats),
        *(
            f"| {column} | " + " | ".join(f"{values[s]:.4g}" for s in stats) + " |"
            for column, values in quantiles.items()
        ),
    ]
    return "\n".join(lines)
