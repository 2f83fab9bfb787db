"""A prediction table as an asset: the served one, monitored for drift, or the challenger's
shadow of it, which each partition compares with the served table."""

from collections.abc import Generator, Iterator
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
from coverage_serving.core.stopwatch import Stopwatch
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
from coverage_serving.defs.display import contract_description, result_metadata, table_metadata
from coverage_serving.defs.monitoring import monitor_descriptions, monitoring_checks
from coverage_serving.defs.names import (
    CheckName,
    features_asset_key,
    prediction_asset_key,
    version_asset_key,
)
from coverage_serving.defs.outcome import Event, report, serve_each
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
    contract = output_schema(model)
    checks = partition_check_specs(
        key,
        {
            CheckName.OUTPUT_CONTRACT.value: contract_description(
                contract, "a violation fails the partition and keeps its old rows."
            ),
            **({} if target.shadow else monitor_descriptions(model)),
        },
        partitions,
    )
    if target.shadow:
        checks.append(comparison_spec(model, key))

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
                metadata=table_metadata(contract, target.table.qualified_name),
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
    ) -> Iterator[Event | dg.AssetCheckResult | dg.AssetObservation]:
        # Loaded once for all partitions of the run, so every row of the run is scored by this
        # one version. A run requested for a version (e.g. by the registry sensor) keeps it
        # even if the alias has moved on since.
        partitions = run_partitions(context)
        # The step's own timeline around its partitions' (score_into_table's): what a partition
        # waited for is on its materialisation, the rest on the observation that ends the step.
        step = Stopwatch()
        with _nothing_scored(model, partitions):
            pin = pin_of(context.run.tags)
            loaded = load_served_model(registry.open(), model, pin, alias=target.alias)
            reference = shipped_reference(registry.tracking_uri, loaded.ref)
        step.lap("model_load")
        batch = BatchRun(model.name, loaded.ref, context.run_id, shadow=target.shadow)
        store = warehouse.open()
        run_id, plots_link = start_tracking(context, registry.tracking_uri, batch, target)
        step.lap("batch_run_start")

        def score(partition: Partition) -> Generator[Event, None, StepResult]:
            checked = _written_under(context.instance, features_key, partition, input_contract)
            step.lap("snapshot_lookup")
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
            except ServingError as err:
                if isinstance(err, DriftBlocked):
                    # Judged against the partition's kept rows: its latest materialisation.
                    yield from monitoring_checks(context, key, partition, err.outcomes)
                step.lap("failed_partitions")
                raise
            step.skip()  # the partition's own timings
            # Each partition is recorded as it is swapped in, before the checks that judge it.
            # The run's setup is on its first partition's, which waited for it.
            waited = step.take("model_load", "batch_run_start", "snapshot_lookup")
            yield dg.AssetMaterialization(
                asset_key=key,
                partition=partition.key,
                metadata=waited | result_metadata(result) | plots_link,
            )
            if target.shadow:
                batch.compared[partition] = yield from compare_partition(
                    context, store, model, target, key, partition
                )
            yield from monitoring_checks(context, key, partition, result.details["monitoring"])
            step.lap("checks")  # with the materialisation's recording
            batch.scored[partition] = result
            return result

        try:
            outcome = yield from serve_each(partitions, score)
            if target.shadow and model.promotion_gate:
                batch.verdict = verdict(batch.compared)
        finally:
            # Recorded however the loop ends, so the MLflow run it started is not left RUNNING.
            batch.failed = [partition for partition in partitions if partition not in batch.scored]
            run_id = track(context, registry.tracking_uri, batch, run_id)
            step.lap("batch_run_record")
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
        step.lap("plots")
        yield dg.AssetObservation(
            asset_key=key,
            description="What the run spent after its partitions were swapped in: their "
            "checks, its MLflow record and plots (its model load is on its first partition).",
            metadata=step.timings(),
        )
        yield from report(context, key, CheckName.OUTPUT_CONTRACT, outcome)

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
