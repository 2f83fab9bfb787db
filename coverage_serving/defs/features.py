"""A model's feature snapshot asset: each partition read from the source, checked against the
input contract, and written; with the checks of rows no partition reads and rows quarantined."""

from collections.abc import Generator, Iterator

import dagster as dg
import pandera.pandas as pa

from coverage_serving.config import InvalidRows, ModelConfig, UnmatchedMarkets
from coverage_serving.core.batch import StepResult, refresh_features
from coverage_serving.core.contracts import TooManyRejectedRows
from coverage_serving.core.tables import features_table, rejected_table
from coverage_serving.core.unmatched import ByMonth, UnmatchedMarketRows, summary, total_rows
from coverage_serving.defs.checks import partition_check, partition_check_specs
from coverage_serving.defs.display import contract_description, result_metadata, table_metadata
from coverage_serving.defs.names import CheckName, features_asset_key
from coverage_serving.defs.outcome import Event, Outcome, report, serve_each
from coverage_serving.defs.partitions import model_partitions, run_partitions
from coverage_serving.defs.resources import WarehouseResource
from coverage_serving.partition import Partition


def build_features_asset(
    model: ModelConfig, input_contract_schema: pa.DataFrameSchema, input_contract: str
) -> dg.AssetsDefinition:
    key = features_asset_key(model)
    partitions = model_partitions(model)
    quarantine = model.invalid_rows == InvalidRows.QUARANTINE
    checks = {
        CheckName.INPUT_CONTRACT.value: contract_description(
            input_contract_schema,
            f"{_ON_INPUT_VIOLATION[model.invalid_rows]} (invalid_rows: {model.invalid_rows}).",
        ),
        CheckName.UNMATCHED_MARKETS.value: _unmatched_markets_description(model),
        **(
            {CheckName.REJECTED_ROWS.value: _rejected_rows_description(model)} if quarantine else {}
        ),
    }

    # A multi_asset with can_subset: its per-partition checks are logged, not yielded
    # (defs/checks.py says why).
    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[
            dg.AssetSpec(
                key,
                # The snapshot's code version is its input contract: Dagster records it on every
                # partition written and shows partitions written under an older contract as
                # changed.
                code_version=input_contract,
                group_name=model.name,
                description=(
                    f"Feature snapshot of {model.name!r}, checked against its input contract."
                ),
                metadata=table_metadata(
                    input_contract_schema, features_table(model).qualified_name
                ),
            )
        ],
        partitions_def=partitions,
        # A backfill of many partitions is one run: one process start, not one per partition.
        backfill_policy=dg.BackfillPolicy.single_run(),
        # Runs writing one table take turns where the instance limits pools (docs/deploying.md).
        pool=key.to_user_string(),
        can_subset=True,
        check_specs=partition_check_specs(key, checks, partitions),
    )
    def features(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[Event | dg.MaterializeResult]:
        store = warehouse.open()

        def refresh(partition: Partition) -> Generator[Event, None, StepResult]:
            yield from ()  # the partitions are recorded once all are written (_record_written)
            return refresh_features(store, model, partition, context.run_id)

        outcome = yield from serve_each(run_partitions(context), refresh)
        yield from _record_written(context, key, outcome)
        yield from _unmatched_markets_checks(context, model, key, outcome)
        if quarantine:
            yield from _rejected_rows_checks(context, model, key, outcome)
        yield from report(context, key, CheckName.INPUT_CONTRACT, outcome)

    return features


_ON_INPUT_VIOLATION = {
    InvalidRows.FAIL: "a violation fails the partition and nothing of it is written",
    InvalidRows.QUARANTINE: "invalid rows are quarantined (rejected_rows)",
}


def _record_written(
    context: dg.AssetExecutionContext, key: dg.AssetKey, outcome: Outcome
) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult]:
    """One materialisation per partition written, with its own rows and timings. The step's
    output is what lets the predictions of the same run run (a logged materialisation leaves
    them skipped), and it records every partition of the run: a run with a failed partition
    cannot yield it, so it records the partitions it wrote one by one."""
    for partition, result in outcome.done.items():
        if outcome.failed:
            yield dg.AssetMaterialization(
                asset_key=key, partition=partition.key, metadata=result_metadata(result)
            )
        else:
            context.add_asset_metadata(
                result_metadata(result), asset_key=key, partition_key=partition.key
            )
    if not outcome.failed:
        yield dg.MaterializeResult(asset_key=key)


def _rejected_rows_description(model: ModelConfig) -> str:
    return (
        f"Invalid input rows quarantined in {rejected_table(model).qualified_name}; fails "
        f"when a partition has more than {model.max_rejected_fraction:.1%} of them."
    )


def _rejected_rows_checks(
    context: dg.AssetExecutionContext, model: ModelConfig, key: dg.AssetKey, outcome: Outcome
) -> Iterator[dg.AssetCheckEvaluation]:
    limits = {
        "max_rejected_fraction": model.max_rejected_fraction,
        "rejected_table": rejected_table(model).qualified_name,
    }
    for partition, result in outcome.done.items():
        yield from partition_check(
            context,
            key,
            CheckName.REJECTED_ROWS.value,
            partition.key,
            passed=True,
            metadata={
                "rejected_rows": result.details["rejected_rows"],
                "rejected_fraction": result.details["rejected_fraction"],
                **limits,
            },
        )
    for partition, err in outcome.failed.items():
        if isinstance(err, TooManyRejectedRows):
            yield from partition_check(
                context,
                key,
                CheckName.REJECTED_ROWS.value,
                partition.key,
                passed=False,
                description=str(err),
                metadata={
                    "rejected_rows": err.rejected_rows,
                    "rejected_fraction": err.rejected_rows / err.input_rows,
                    **limits,
                },
            )


_UNMATCHED_OUTCOME = {
    UnmatchedMarkets.WARN: "a warning",
    UnmatchedMarkets.FAIL: "the partitions of their month fail and are not written",
}
_UNMATCHED_SEVERITY = {
    UnmatchedMarkets.WARN: dg.AssetCheckSeverity.WARN,
    UnmatchedMarkets.FAIL: dg.AssetCheckSeverity.ERROR,
}


def _unmatched_markets_description(model: ModelConfig) -> str:
    return (
        f"Rows of source.{model.source_table} whose market is none of "
        f"{', '.join(model.markets)} (e.g. 'IN ' or 'in'), which no partition reads, counted "
        f"in the partition's month; with unmatched_markets: {model.unmatched_markets}, "
        f"{_UNMATCHED_OUTCOME[model.unmatched_markets]}."
    )


def _unmatched_markets_checks(
    context: dg.AssetExecutionContext, model: ModelConfig, key: dg.AssetKey, outcome: Outcome
) -> Iterator[dg.AssetCheckEvaluation]:
    """Each partition's count of its month's unmatched rows (the month's partitions share it)."""
    counted: dict[Partition, ByMonth] = {
        partition: result.details.get("unmatched_markets", {})
        for partition, result in outcome.done.items()
    } | {
        partition: err.by_month
        for partition, err in outcome.failed.items()
        if isinstance(err, UnmatchedMarketRows)
    }
    for partition, counts in counted.items():
        rows = total_rows(counts)
        yield from partition_check(
            context,
            key,
            CheckName.UNMATCHED_MARKETS.value,
            partition.key,
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
