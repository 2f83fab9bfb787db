"""One factory turns a model's config entry into its feature and prediction assets."""

import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from coverage_serving.config import InvalidRows, ModelConfig, MonitorCheck, UnmatchedMarkets
from coverage_serving.core.batch import StepResult, refresh_features, score_into_table
from coverage_serving.core.compare import verdict
from coverage_serving.core.compiled import compile_version, latest_feature_rows
from coverage_serving.core.contracts import (
    ContractViolation,
    TooManyRejectedRows,
    contract_version,
    input_schema,
    output_schema,
)
from coverage_serving.core.monitoring import (
    DriftBlocked,
    Outcome,
    ProfileStore,
    Severity,
    most_drifted,
)
from coverage_serving.core.plots import MAX_DISTRIBUTIONS, draw_comparisons, draw_run_plots
from coverage_serving.core.reference import (
    REFERENCE_ARTIFACT,
    shipped_reference,
    shipped_references,
)
from coverage_serving.core.served_version import Pin, load_served_model, served_version
from coverage_serving.core.tables import (
    PredictionTarget,
    features_table,
    prediction_targets,
    rejected_table,
    served_target,
)
from coverage_serving.core.tracking import (
    EXPERIMENT,
    BatchRun,
    artifacts_location,
    log_artifacts,
    record_batch_run,
    start_batch_run,
)
from coverage_serving.core.unmatched import ByMonth, UnmatchedMarketRows, summary, total_rows
from coverage_serving.defs.checks import log_partition_check, partition_check_specs
from coverage_serving.defs.comparison import compare_partition, comparison_spec, comparison_summary
from coverage_serving.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, model_partitions
from coverage_serving.defs.resources import RegistryResource, WarehouseResource
from coverage_serving.defs.tags import CODE_VERSION_TAG, pin_of
from coverage_serving.errors import ServingError, UnservableModelError
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry, redact
from coverage_serving.warehouse import Warehouse

INPUT_CHECK = "input_contract"
OUTPUT_CHECK = "output_contract"
SERVABLE_CHECK = "servable"
REJECTED_CHECK = "rejected_rows"
UNMATCHED_CHECK = "unmatched_markets"
MOST_DRIFTED = 10  # rows of the materialisation's table of the most drifted columns
PLOTS_ARTIFACTS = "drift"  # the batch run's folder of drift plots in MLflow
COMPARISON_ARTIFACTS = "comparison"  # a shadow run's folder of challenger vs served plots

AssetEvent = dg.MaterializeResult | dg.AssetCheckResult

# BackfillPolicy is beta in dagster 1.13; it is what makes a backfill one run, so we use it
# knowingly and keep its warning out of every definitions load.
warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)


def build_model_assets(model: ModelConfig) -> list[dg.AssetsDefinition]:
    partitions = model_partitions(model)
    features_key = features_asset_key(model)
    quarantine = model.invalid_rows == InvalidRows.QUARANTINE
    # The snapshot's code version is its input contract: Dagster records it on every
    # partition written and shows partitions written under an older contract as changed.
    input_contract_schema = input_schema(model)
    input_contract = contract_version(input_contract_schema)

    @dg.asset(
        key=features_key,
        partitions_def=partitions,
        # A backfill of many partitions is one run: one process start, not one per partition.
        backfill_policy=dg.BackfillPolicy.single_run(),
        # Runs writing one table take turns where the instance limits pools (docs/deploying.md).
        pool=features_key.to_user_string(),
        code_version=input_contract,
        group_name=model.name,
        description=f"Feature snapshot of {model.name!r}, checked against its input contract.",
        metadata=_table_metadata(input_contract_schema, features_table(model).qualified_name),
        check_specs=[
            dg.AssetCheckSpec(INPUT_CHECK, asset=features_key),
            _unmatched_markets_spec(model, features_key),
            *([_rejected_rows_spec(model, features_key)] if quarantine else []),
        ],
    )
    def features(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[AssetEvent]:
        store = warehouse.open()
        outcome = _serve_each(
            _run_partitions(context),
            lambda partition: refresh_features(store, model, partition, context.run_id),
        )
        # Features must yield their output, or dagster skips the predictions of the same run;
        # so one materialisation covers the run's partitions, with each one's rows in it.
        if not outcome.failed:
            yield dg.MaterializeResult(metadata=_run_metadata(outcome.done))
        yield _unmatched_markets_check(model, outcome)
        if quarantine:
            yield _rejected_rows_check(model, outcome)
        yield from _report(INPUT_CHECK, outcome)

    return [
        features,
        *(
            build_predictions_asset(model, target, features_key, input_contract)
            for target in prediction_targets(model)
        ),
    ]


def build_predictions_asset(
    model: ModelConfig, target: PredictionTarget, features_key: dg.AssetKey, input_contract: str
) -> dg.AssetsDefinition:
    """The prediction table `target`: the served one, monitored for drift, or the challenger's
    shadow of it, which each partition compares with the served table."""
    key = prediction_asset_key(model, target)
    partitions = model_partitions(model)
    checks = [dg.AssetCheckSpec(OUTPUT_CHECK, asset=key)]
    if target.shadow:
        checks.append(comparison_spec(model, key))
    else:
        checks += partition_check_specs(key, _monitor_descriptions(model), partitions)

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
                metadata=_table_metadata(output_schema(model), target.table.qualified_name),
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
        partitions = _run_partitions(context)
        with _nothing_scored(model, partitions):
            pin = pin_of(context.run.tags)
            loaded = load_served_model(registry.open(), model, pin, alias=target.alias)
            reference = shipped_reference(registry.tracking_uri, loaded.ref)
        batch = BatchRun(model.name, loaded.ref, context.run_id, shadow=target.shadow)
        store = warehouse.open()
        run_id, plots_link = _start_tracking(context, registry.tracking_uri, batch, target)

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
                _log_monitoring(context, key, partition, err.outcomes)
                raise
            if target.shadow:
                batch.compared[partition] = compare_partition(
                    context, store, model, target, key, partition
                )
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=key,
                    partition=partition.key,
                    metadata=_result_metadata(result) | plots_link,
                )
            )
            _log_monitoring(context, key, partition, result.details["monitoring"])
            batch.scored[partition] = result
            return result

        try:
            outcome = _serve_each(partitions, score)
            if target.shadow and model.promotion_gate:
                batch.verdict = verdict(batch.compared)
        finally:
            # Recorded however the loop ends, so the MLflow run it started is not left RUNNING.
            batch.failed = [partition for partition in partitions if partition not in batch.scored]
            run_id = _track(context, registry.tracking_uri, batch, run_id)
        if target.shadow:
            yield comparison_summary(key, batch.compared)
        if run_id is not None and target.shadow:
            _log_plots(
                context,
                registry.tracking_uri,
                run_id,
                COMPARISON_ARTIFACTS,
                lambda directory: draw_comparisons(model, batch.compared, directory),
            )
        elif run_id is not None:
            references = shipped_references(registry.open(), model.registered_model)
            profiles = ProfileStore(store, model)
            _log_plots(
                context,
                registry.tracking_uri,
                run_id,
                PLOTS_ARTIFACTS,
                lambda directory: draw_run_plots(profiles, batch.scored, references, directory),
            )
        yield from _report(OUTPUT_CHECK, outcome)

    return predictions


def features_asset_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(model.features_table)


def predictions_asset_key(model: ModelConfig) -> dg.AssetKey:
    return prediction_asset_key(model, served_target(model))


def prediction_asset_key(model: ModelConfig, target: PredictionTarget) -> dg.AssetKey:
    return dg.AssetKey(f"{model.name}_{target.name}")


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
            "signature takes exactly the configured features. A servable LightGBM version is "
            "compiled here, once, and scored with the compiled form where it predicted exactly "
            "like the model on the latest feature partition (`compiled_*` figures)."
        ),
        check_specs=[dg.AssetCheckSpec(SERVABLE_CHECK, asset=key)],
    )
    def versions(
        context: dg.AssetExecutionContext,
        registry: RegistryResource,
        warehouse: WarehouseResource,
    ) -> Iterator[AssetEvent]:
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
                "aliases": ", ".join(details["aliases"]) or "none",
                "metrics": dg.MetadataValue.json(details["metrics"]),
                "signature_inputs": dg.MetadataValue.json(signature or {}),
                "servable": reason is None,
                **compiling,
            }
        )
        yield dg.AssetCheckResult(
            check_name=SERVABLE_CHECK,
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


def _run_partitions(context: dg.AssetExecutionContext) -> list[Partition]:
    keys = context.partition_keys
    if not keys:
        # Dagster accepts a range whose ends are out of partition order and selects nothing.
        tags = context.run.tags
        raise dg.Failure(
            description=f"the run's partition range {tags.get(RANGE_START_TAG)}..."
            f"{tags.get(RANGE_END_TAG)} selects no partition (ends out of order?): "
            "nothing was done"
        )
    return [Partition.parse(key) for key in keys]


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


_MONITOR_DESCRIPTIONS = {
    MonitorCheck.FEATURE_DRIFT_PREVIOUS_MONTH: "Drift of each feature from the same market's "
    "previous month: PSI (numeric), L-infinity distance of category shares (string).",
    MonitorCheck.FEATURE_DRIFT_REFERENCE: "Drift of each feature from the version's reference "
    f"(its training profile, {REFERENCE_ARTIFACT}, else the first month it scored here).",
    MonitorCheck.PREDICTION_DRIFT_PREVIOUS_MONTH: "PSI of each prediction column against the "
    "same market's previous month.",
    MonitorCheck.PREDICTION_DRIFT_REFERENCE: "PSI of each prediction column against the "
    "version's reference.",
    MonitorCheck.ROW_COUNT_CHANGE: "Relative change of the partition's row count from the same "
    "market's previous month.",
}


def _monitor_descriptions(model: ModelConfig) -> dict[str, str]:
    limits = model.monitoring
    thresholds = (
        f" Thresholds (monitoring: in serving.yaml): PSI {limits.psi.warn}/{limits.psi.error}, "
        f"category distance {limits.category_distance.warn}/{limits.category_distance.error}, "
        f"row count change {limits.row_count_change.warn}/{limits.row_count_change.error} "
        "(warn/error)."
    )
    return {
        str(check): description
        + thresholds
        + (" Blocking: an error keeps the old rows." if check in limits.blocking else "")
        for check, description in _MONITOR_DESCRIPTIONS.items()
    }


_SEVERITY = {Severity.WARN: dg.AssetCheckSeverity.WARN, Severity.ERROR: dg.AssetCheckSeverity.ERROR}


def _log_monitoring(
    context: dg.AssetExecutionContext,
    asset: dg.AssetKey,
    partition: Partition,
    outcomes: list[Outcome],
) -> None:
    for outcome in outcomes:
        log_partition_check(
            context,
            asset,
            str(outcome.check),
            partition.key,
            passed=outcome.passed,
            severity=_SEVERITY[outcome.severity or Severity.WARN],
            description=outcome.sentence,
            metadata={
                "baseline": outcome.baseline,
                **({"value": outcome.value} if outcome.value is not None else {}),
                **({"warn_threshold": outcome.threshold} if outcome.threshold is not None else {}),
                **({"columns": _drift_table(most_drifted([outcome]))} if outcome.drifts else {}),
            },
        )


def _drift_table(rows: list[tuple[str, Any, float]]) -> dg.TableMetadataValue:
    """The compared columns, most drifted first: what a person reads to see what moved."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "column": drift.column,
                    "metric": drift.metric,
                    "value": round(drift.value, 6),
                    "times_warn_threshold": round(ratio, 3),
                    "unknown_category_rate": drift.unknown_rate
                    if drift.unknown_rate is not None
                    else 0.0,
                    "baseline": baseline,
                }
            )
            for baseline, drift, ratio in rows
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                dg.TableColumn("metric", "string"),
                dg.TableColumn("value", "float"),
                dg.TableColumn("times_warn_threshold", "float"),
                dg.TableColumn("unknown_category_rate", "float"),
                dg.TableColumn("baseline", "string"),
            ]
        ),
    )


def _start_tracking(
    context: dg.AssetExecutionContext, tracking_uri: str, batch: BatchRun, target: PredictionTarget
) -> tuple[str | None, dict[str, Any]]:
    """The MLflow run the batch is recorded in, and the link to its drift plots that each
    served partition's materialisation carries (a shadow is not profiled: no plots)."""
    try:
        run_id = start_batch_run(tracking_uri, batch)
        location = artifacts_location(tracking_uri, run_id)
    except Exception as err:  # the record is tried again at the end; scoring goes on
        context.log.warning(f"batch run not started in MLflow: {redact(str(err))}")
        return None, {}
    if target.shadow:
        return run_id, {}
    if location.startswith(("http://", "https://")):
        return run_id, {"drift_plots": dg.MetadataValue.url(location)}
    return run_id, {"drift_plots": dg.MetadataValue.path(str(Path(location) / PLOTS_ARTIFACTS))}


def _track(
    context: dg.AssetExecutionContext, tracking_uri: str, batch: BatchRun, run_id: str | None
) -> str | None:
    try:
        run_id = record_batch_run(tracking_uri, batch, run_id)
    except Exception as err:  # the tables are right; a lost record must not fail the run
        context.log.warning(f"batch run not recorded in MLflow: {redact(str(err))}")
        return None
    context.log.info(f"recorded as MLflow run {run_id} in experiment {EXPERIMENT!r}")
    return run_id


def _log_plots(
    context: dg.AssetExecutionContext,
    tracking_uri: str,
    run_id: str,
    folder: str,
    draw: Callable[[Path], list[Path]],
) -> None:
    """Draw the run's plots (core.plots) into its MLflow run, under `folder`."""
    try:
        with tempfile.TemporaryDirectory(prefix="coverage-serving-plots-") as scratch:
            drawn = draw(Path(scratch))
            log_artifacts(tracking_uri, run_id, Path(scratch), folder)
    except Exception as err:  # a picture must not fail a run whose tables are right
        context.log.warning(f"plots not logged to MLflow run {run_id}: {redact(str(err))}")
        return
    context.log.info(
        f"{len(drawn)} plots logged to MLflow run {run_id} under {folder!r} (at most "
        f"{MAX_DISTRIBUTIONS} partitions drawn)"
    )


@dataclass
class _Outcome:
    done: dict[Partition, StepResult] = field(default_factory=dict)
    failed: dict[Partition, ServingError] = field(default_factory=dict)


def _serve_each(partitions: list[Partition], step: Callable[[Partition], StepResult]) -> _Outcome:
    """Run the step for every partition; one bad partition does not stop the others."""
    outcome = _Outcome()
    for partition in partitions:
        try:
            outcome.done[partition] = step(partition)
        except ServingError as err:
            outcome.failed[partition] = err
    return outcome


def _rejected_rows_spec(model: ModelConfig, asset: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        REJECTED_CHECK,
        asset=asset,
        description=(
            f"Invalid input rows quarantined in {rejected_table(model).qualified_name}; fails "
            f"when a partition has more than {model.max_rejected_fraction:.1%} of them."
        ),
    )


def _rejected_rows_check(model: ModelConfig, outcome: _Outcome) -> dg.AssetCheckResult:
    too_many = {
        partition: err
        for partition, err in outcome.failed.items()
        if isinstance(err, TooManyRejectedRows)
    }
    rejected = {
        partition.key: result.details["rejected_rows"] for partition, result in outcome.done.items()
    } | {partition.key: err.rejected_rows for partition, err in too_many.items()}
    return dg.AssetCheckResult(
        check_name=REJECTED_CHECK,
        passed=not too_many,
        metadata={
            "rejected_rows": sum(rejected.values()),
            "rejected_by_partition": dg.MetadataValue.json(rejected),
            "max_rejected_fraction": model.max_rejected_fraction,
            "rejected_table": rejected_table(model).qualified_name,
            **(
                {"over_limit": ", ".join(partition.key for partition in too_many)}
                if too_many
                else {}
            ),
        },
    )


def _unmatched_markets_spec(model: ModelConfig, asset: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        UNMATCHED_CHECK,
        asset=asset,
        description=(
            f"Rows of source.{model.source_table} whose market is none of "
            f"{', '.join(model.markets)} (e.g. 'IN ' or 'in'), which no partition reads, counted "
            f"per month; with unmatched_markets: {model.unmatched_markets}, "
            f"{_UNMATCHED_OUTCOME[model.unmatched_markets]}."
        ),
    )


_UNMATCHED_OUTCOME = {
    UnmatchedMarkets.WARN: "a warning",
    UnmatchedMarkets.FAIL: "the partitions of their month fail and are not written",
}
_UNMATCHED_SEVERITY = {
    UnmatchedMarkets.WARN: dg.AssetCheckSeverity.WARN,
    UnmatchedMarkets.FAIL: dg.AssetCheckSeverity.ERROR,
}


def _unmatched_markets_check(model: ModelConfig, outcome: _Outcome) -> dg.AssetCheckResult:
    """The unmatched rows of the run's months, each month once (its partitions share it)."""
    counts: ByMonth = {}
    for result in outcome.done.values():
        counts |= result.details.get("unmatched_markets", {})
    for err in outcome.failed.values():
        if isinstance(err, UnmatchedMarketRows):
            counts |= err.by_month
    counts, rows = dict(sorted(counts.items())), total_rows(counts)
    return dg.AssetCheckResult(
        check_name=UNMATCHED_CHECK,
        passed=rows == 0,
        severity=_UNMATCHED_SEVERITY[model.unmatched_markets],
        description=summary(model, counts) if rows else None,
        metadata={
            "unmatched_rows": rows,
            "unmatched_by_month": dg.MetadataValue.json(counts),
            "markets": ", ".join(model.markets),
            "policy": str(model.unmatched_markets),
        },
    )


def _report(check: str, outcome: _Outcome) -> Iterator[dg.AssetCheckResult]:
    """Report the run's contract check, then fail the run naming every partition that failed."""
    violations = {
        partition: err
        for partition, err in outcome.failed.items()
        if isinstance(err, ContractViolation | TooManyRejectedRows)
        and check.startswith(err.contract)
    }
    yield dg.AssetCheckResult(
        check_name=check,
        passed=not violations,
        metadata={
            "rows_checked": sum(result.rows for result in outcome.done.values()),
            **(_failure_metadata(violations) if violations else {}),
        },
    )
    if outcome.failed:
        raise dg.Failure(
            description="; ".join(_naming_partition(p, err) for p, err in outcome.failed.items()),
            metadata=_failure_metadata(outcome.failed),
        )


def _naming_partition(partition: Partition, err: ServingError) -> str:
    # Errors from the model or the warehouse know the model but not always the partition.
    message = str(err)
    return message if partition.key in message else f"partition {partition}: {message}"


def _failure_metadata(failed: dict[Partition, ServingError]) -> dict[str, Any]:
    if len(failed) == 1:
        [(partition, err)] = failed.items()
        return {"partition": partition.key, **err.metadata()}
    return {
        "failed_partitions": ", ".join(partition.key for partition in failed),
        "errors": dg.MetadataValue.json(
            {partition.key: err.metadata() for partition, err in failed.items()}
        ),
    }


def _run_metadata(done: dict[Partition, StepResult]) -> dict[str, Any]:
    if len(done) == 1:
        return _result_metadata(next(iter(done.values())))
    return {
        "partitions_in_run": len(done),
        "rows_in_run": sum(result.rows for result in done.values()),
        "rows_by_partition": dg.MetadataValue.json(
            {partition.key: result.rows for partition, result in done.items()}
        ),
    }


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
    outcomes = details.pop("monitoring", None)
    metadata: dict[str, Any] = {"dagster/row_count": result.rows, **result.timings, **details}
    if quantiles:
        metadata["prediction_summary"] = dg.MetadataValue.md(_quantile_table(quantiles))
        # Plain numbers: the asset's Plots tab draws each over the partitions.
        metadata |= {
            f"{column}_{stat}": dg.MetadataValue.float(value)
            for column, stats in quantiles.items()
            for stat, value in stats.items()
        }
    if outcomes:
        metadata["most_drifted"] = _drift_table(most_drifted(outcomes)[:MOST_DRIFTED])
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
