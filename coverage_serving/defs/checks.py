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
per-partition check specs come from `partition_check_specs`, and their results are logged with
`log_partition_check`, never yielded.
"""

import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg

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


def log_partition_check(
    context: dg.AssetExecutionContext,
    asset: dg.AssetKey,
    check: str,
    partition: str,
    *,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str,
    metadata: Mapping[str, Any],
) -> None:
    """Record one partition's result of a check declared with `partition_check_specs`; a check
    left out of the run's selection is not recorded."""
    if dg.AssetCheckKey(asset, check) not in context.selected_asset_check_keys:
        return
    context.log_event(
        dg.AssetCheckEvaluation(
            asset_key=asset,
            check_name=check,
            passed=passed,
            severity=severity,
            description=description,
            metadata=metadata,
            partition=partition,
        )
    )
