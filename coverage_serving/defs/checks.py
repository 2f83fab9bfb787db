"""Asset check results recorded per partition, for assets that score many partitions in a run.

The Dagster shortfall this covers (dagster 1.13): a run of a single-run backfill materialises
many partitions in one step (`context.partition_keys`), and an `AssetCheckResult` yielded from
that step is recorded with partition None, so a check cannot say which partition drifted.
Logging an `AssetCheckEvaluation(..., partition=key)` with `context.log_event` for a check spec
that has the asset's partitions records one evaluation per partition; but Dagster then fails
the step (DagsterStepOutputNotFoundError) because the check's output was never yielded, unless
check outputs are optional, which they are only on a `multi_asset(..., can_subset=True)`
(`is_required=not can_subset`). A trailing `AssetCheckResult` is no way out: it adds one more
evaluation, with partition None.

So: an asset with per-partition checks is a `multi_asset` with `can_subset=True`, its
per-partition check specs come from `partition_check_specs`, and the step yields the
evaluations `partition_check` makes, never an `AssetCheckResult`. Yielded, not logged with
`context.log_event`: Dagster stores a logged event only at the step's next yield (and drops it
when the step then fails), while each evaluation must name the partition's materialisation it
judged, stored before it: the UI counts a partition's result only while it targets the
partition's latest materialisation.
"""

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

# Dagster fills this in for a yielded AssetCheckResult and keeps the class private; a logged
# evaluation without it is shown as stale as soon as its partition has a materialisation.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

# Partitioned check specs are a preview in dagster 1.13; they are what records a result per
# partition, so we use them knowingly and keep their warning out of every definitions load.
warnings.filterwarnings(
    "ignore", "Specifying a partitions_def on an AssetCheckSpec", dg.PreviewWarning
)


def partition_check_specs(
    asset: dg.AssetKey, descriptions: Mapping[str, str], partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """One check spec per name, evaluated per partition of `partitions`."""
    return [
        dg.AssetCheckSpec(name, asset=asset, description=description, partitions_def=partitions)
        for name, description in descriptions.items()
    ]


def partition_check(
    context: dg.AssetExecutionContext,
    asset: dg.AssetKey,
    check: str,
    partition: str,
    *,
    passed: bool,
    metadata: Mapping[str, Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    description: str | None = None,
) -> Iterator[dg.AssetCheckEvaluation]:
    """One partition's result of a check declared with `partition_check_specs`, against the
    partition's latest materialisation, for the step to yield; none for a check left out of
    the run's selection."""
    if dg.AssetCheckKey(asset, check) not in context.selected_asset_check_keys:
        return
    yield dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name=check,
        passed=passed,
        severity=severity,
        description=description,
        metadata=metadata,
        partition=partition,
        target_materialization_data=_latest_materialization(context, asset, partition),
    )


def _latest_materialization(
    context: dg.AssetExecutionContext, asset: dg.AssetKey, partition: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    found = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1
    ).records
    if not found:
        return None
    [latest] = found
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=latest.run_id, storage_id=latest.storage_id, timestamp=latest.timestamp
    )
