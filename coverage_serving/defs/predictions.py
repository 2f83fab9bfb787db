"""A prediction table as an asset: the served one, monitored for drift, or the challenger's
shadow of it, which each partition compares with the served table."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.batch import StepResult, score_into_table
from coverage_serving.core.compare import verdict
from coverage_serving.core.contracts import output_schema
from coverage_serving.core.monitoring import DriftBlocked, ProfileStore
from coverage_serving.core.plots import draw_comparisons, draw_run_plots
from coverage_serving.core.reference import shipped_reference, shipped_references
from coverage_serving.core.served_version import load_served_model
from coverage_serving.core.tables import PredictionTarget
from coverage_serving.core.tracking import BatchRun
from coverage_serving.defs.batch_record import (
    COMPARISON_ARTIFACTS,
    PLOTS_ARTIFACTS,
    log_plots,
    start_tracking,
    track,
)
from coverage_serving.defs.checks import partition_check_specs
from coverage_serving.defs.comparison import compare_partition, comparison_spec, comparison_summary
from coverage_serving.defs.display import result_metadata, table_metadata
from coverage_serving.defs.monitoring import log_monitoring, monitor_descriptions
from coverage_serving.defs.names import (
    CheckName,
    features_asset_key,
    prediction_asset_key,
    version_asset_key,
)
from coverage_serving.defs.outcome import AssetEvent, report, serve_each
from coverage_serving.defs.partitions import model_partitions, run_partitions
from coverage_serving.defs.resources import RegistryResource, WarehouseResource
from coverage_serving.defs.tags import CODE_VERSION_TAG, pin_of
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition


def build_predictions_asset(
    model: ModelConfig, target: PredictionTarget, input_contract: str
) -> dg.AssetsDefinition:
    """The prediction table `target`, scored from the features written under `input_contract`."""
    key = prediction_asset_key(model, target)
    features_key = features_asset_key(model)
    partitions = model_partitions(model)
    checks = [dg.AssetCheckSpec(CheckName.OUTPUT_CONTRACT.value, asset=key)]
    if target.shadow:
        checks.append(comparison_spec(model, key))
    else:
        checks += partition_check_specs(key, monitor_descriptions(model), partitions)

    # A multi_asset with can_subset: its per-partition checks are logged, not yielded
    # (defs/checks.py says why).
    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[
            dg.AssetSpec(
                key,
                # Each partition holds the predictions of one version, chosen per run (the
                # alias's, or a pin); any registered version may be it, so every version is
                # upstream. Which one made a partition is in its materialisation's
                # `model_version`.
                deps=[
                    features_key,
                    dg.AssetDep(
                        version_asset_key(model), partition_mapping=dg.AllPartitionMapping()
                    ),
                ],
                # Each partition is recorded as it is swapped in (below), so a run that fails on
                # one partition still shows which others it rescored.
                skippable=True,
                group_name=model.name,
                description=(
                    f"Predictions of {model.registered_model}@{target.alias} for every row of "
                    f"{model.features_table}, with lineage"
                    + (f", compared with {model.output_table}." if target.shadow else ".")
                ),
                metadata=table_metadata(output_schema(model), target.table.qualified_name),
            )
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=key.to_user_string(),
        can_subset=True,
        check_specs=checks,
    )
    def predictions(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        registry: RegistryResource,
    ) -> Iterator[AssetEvent]:
        # Loaded once for all partitions of the run, so every row of the run is scored by this
        # one version. A run requested for a version (e.g. by the registry sensor) keeps it
        # even if the alias has moved on since.
        partitions = run_partitions(context)
        with _nothing_scored(model, partitions):
            pin = pin_of(context.run.tags)
            loaded = load_served_model(registry.open(), model, pin, alias=target.alias)
            reference = shipped_reference(registry.tracking_uri, loaded.ref)
        batch = BatchRun(model.name, loaded.ref, context.run_id, shadow=target.shadow)
        store = warehouse.open()
        run_id, plots_link = start_tracking(context, registry.tracking_uri, batch, target)

        def score(partition: Partition) -> StepResult:
            checked = _written_under(context.instance, features_key, partition, input_contract)
            try:
                result = score_into_table(
                    store,
                    model,
                    loaded,
                    partition,
                    context.run_id,
                    snapshot_checked=checked,
                    target=target,
                    shipped_reference=reference,
                )
            except DriftBlocked as err:
                log_monitoring(context, key, partition, err.outcomes)
                raise
            if target.shadow:
                batch.compared[partition] = compare_partition(
                    context, store, model, target, key, partition
                )
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=key,
                    partition=partition.key,
                    metadata=result_metadata(result) | plots_link,
                )
            )
            log_monitoring(context, key, partition, result.details["monitoring"])
            batch.scored[partition] = result
            return result

        try:
            outcome = serve_each(partitions, score)
            if target.shadow and model.promotion_gate:
                batch.verdict = verdict(batch.compared)
        finally:
            # Recorded however the loop ends, so the MLflow run it started is not left RUNNING.
            batch.failed = [partition for partition in partitions if partition not in batch.scored]
            run_id = track(context, registry.tracking_uri, batch, run_id)
        if target.shadow:
            yield comparison_summary(key, batch.compared)
        if run_id is not None and target.shadow:
            log_plots(
                context,
                registry.tracking_uri,
                run_id,
                COMPARISON_ARTIFACTS,
                lambda directory: draw_comparisons(model, batch.compared, directory),
            )
        elif run_id is not None:
            references = shipped_references(registry.open(), model.registered_model)
            profiles = ProfileStore(store, model)
            log_plots(
                context,
                registry.tracking_uri,
                run_id,
                PLOTS_ARTIFACTS,
                lambda directory: draw_run_plots(profiles, batch.scored, references, directory),
            )
        yield from report(CheckName.OUTPUT_CONTRACT, outcome)

    return predictions


def _written_under(
    instance: dg.DagsterInstance, asset: dg.AssetKey, partition: Partition, code_version: str
) -> bool:
    """Whether the partition's latest snapshot was written by this code version, i.e. passed
    the input contract in force now. A snapshot written any other way is checked again."""
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition.key]), limit=1
    ).records
    materialization = found[0].asset_materialization if found else None
    return materialization is not None and (
        materialization.tags.get(CODE_VERSION_TAG) == code_version
    )


@contextmanager
def _nothing_scored(model: ModelConfig, partitions: list[Partition]) -> Iterator[None]:
    """What the run needs before its first partition (the served model, its reference) fails
    the run naming the model and every partition, none of them scored."""
    try:
        yield
    except ServingError as err:
        keys = ", ".join(partition.key for partition in partitions)
        raise dg.Failure(
            description=f"model {model.name!r}, partition(s) {keys}: nothing was scored: {err}",
            metadata={**err.metadata(), "model": model.name, "partitions": keys},
        ) from err
