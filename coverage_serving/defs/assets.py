"""One factory turns a model's config entry into its feature and prediction assets."""

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from coverage_serving.config import ModelConfig
from coverage_serving.core.batch import StepResult, refresh_features, score_into_table
from coverage_serving.core.contracts import ContractViolation, input_schema, output_schema
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.defs.partitions import model_partitions
from coverage_serving.defs.resources import RegistryResource, WarehouseResource
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition

INPUT_CHECK = "input_contract"
OUTPUT_CHECK = "output_contract"

AssetEvent = dg.MaterializeResult | dg.AssetCheckResult


def build_model_assets(model: ModelConfig) -> list[dg.AssetsDefinition]:
    partitions = model_partitions(model)
    features_key = dg.AssetKey(model.features_table)
    predictions_key = dg.AssetKey(f"{model.name}_predictions")

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
            # Resolved once here: every row of this run is scored by this one version.
            loaded = models.load(models.resolve(model.registered_model, model.alias))
            return score_into_table(warehouse.open(), model, loaded, partition, context.run_id)

        yield from _materialize(OUTPUT_CHECK, score)

    return [features, predictions]


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
