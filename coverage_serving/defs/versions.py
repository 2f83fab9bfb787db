"""The registered versions of a model as an asset, one partition each, with what a reviewer
needs to decide whether it may serve."""

from collections.abc import Iterator

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.served_version import Pin, served_version
from coverage_serving.defs.names import CheckName, model_versions_partitions, version_asset_key
from coverage_serving.defs.resources import RegistryResource
from coverage_serving.errors import ServingError, UnservableModelError
from coverage_serving.registry import ModelRegistry


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
        check_specs=[dg.AssetCheckSpec(CheckName.SERVABLE.value, asset=key)],
    )
    def versions(
        context: dg.AssetExecutionContext, registry: RegistryResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        models = registry.open()
        ref = models.pinned(model.registered_model, int(context.partition_key), alias=None)
        try:
            details = models.describe(ref)
            signature = models.signature(ref)
            reason = _unservable_reason(models, model, ref.version)
        except ServingError as err:
            raise dg.Failure(description=str(err), metadata=err.metadata()) from None
        yield dg.MaterializeResult(
            metadata={
                **{k: v for k, v in details.items() if k != "metrics"},
                "aliases": ", ".join(details["aliases"]) or "none",
                "metrics": dg.MetadataValue.json(details["metrics"]),
                "signature_inputs": dg.MetadataValue.json(signature or {}),
                "servable": reason is None,
            }
        )
        yield dg.AssetCheckResult(
            check_name=CheckName.SERVABLE.value,
            passed=reason is None,
            metadata={"reason": reason or "signature matches the configured features"},
        )

    return versions


def _unservable_reason(models: ModelRegistry, model: ModelConfig, version: int) -> str | None:
    try:
        served_version(models, model, Pin(version))
    except UnservableModelError as err:
        return str(err)
    return None
