"""The registered versions of a model as an asset, one partition each, with what a reviewer
needs to decide whether it may serve."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.compiled import compile_version, latest_feature_rows
from coverage_serving.core.served_version import Pin, load_served_model, served_version
from coverage_serving.defs.names import CheckName, model_versions_partitions, version_asset_key
from coverage_serving.defs.resources import RegistryResource, WarehouseResource
from coverage_serving.errors import ServingError, UnservableModelError
from coverage_serving.registry import ModelRegistry
from coverage_serving.warehouse import Warehouse


def build_version_asset(model: ModelConfig) -> dg.AssetsDefinition:
    """The registered versions of the model, one partition each, with what a reviewer needs."""
    key = version_asset_key(model)

    @dg.asset(
        key=key,
        partitions_def=model_versions_partitions(model),
        group_name=model.name,
        description=(
            f"Registered versions of {model.registered_model}; a version is servable when its "
            "signature takes exactly the configured features. A servable LightGBM version is "
            "compiled here, once, and scored with the compiled form where it predicted exactly "
            "like the model on the latest feature partition (`compiled_*` figures)."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                CheckName.SERVABLE.value,
                asset=key,
                description="The version's signature takes exactly the features and types "
                "configured in serving.yaml, so it may be served.",
            )
        ],
    )
    def versions(
        context: dg.AssetExecutionContext,
        registry: RegistryResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        models = registry.open()
        ref = models.pinned(model.registered_model, int(context.partition_key), alias=None)
        try:
            details = models.describe(ref)
            signature = models.signature(ref)
            reason = _unservable_reason(models, model, ref.version)
            compiling = (
                _compiled_figures(models, warehouse.open(), model, ref.version)
                if reason is None
                else {}
            )
        except ServingError as err:
            raise dg.Failure(description=str(err), metadata=err.metadata()) from None
        yield dg.MaterializeResult(
            metadata={
                **{k: v for k, v in details.items() if k != "metrics"},
                "model_id": details["model_id"] or "none (logged before MLflow 3)",
                "aliases": ", ".join(details["aliases"]) or "none",
                # One number each, so the asset's Plots tab draws them over the versions.
                **{
                    f"metric_{name}": dg.MetadataValue.float(value)
                    for name, value in details["metrics"].items()
                },
                "signature_inputs": dg.MetadataValue.json(signature or {}),
                "servable": reason is None,
                **compiling,
            }
        )
        yield dg.AssetCheckResult(
            check_name=CheckName.SERVABLE.value,
            passed=reason is None,
            metadata={"reason": reason or "signature matches the configured features"},
        )

    return versions


def _compiled_figures(
    models: ModelRegistry, store: Warehouse, model: ModelConfig, version: int
) -> dict[str, Any]:
    """Compile the version (core.compiled) and say how it went: whatever happens, the version
    stays servable with its own predict."""
    partition, sample = latest_feature_rows(store, model)
    loaded = load_served_model(models, model, Pin(version))
    report = compile_version(models, model, loaded, partition, sample)
    return {
        f"compiled_{name}" if name != "outcome" else "compiled": value
        for name, value in report.figures().items()
    }


def _unservable_reason(models: ModelRegistry, model: ModelConfig, version: int) -> str | None:
    try:
        served_version(models, model, Pin(version))
    except UnservableModelError as err:
        return str(err)
    return None
