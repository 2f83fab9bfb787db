"""A model's feature snapshot asset: each partition read from the source, checked against the
input contract, and written; with the checks of rows no partition reads and rows quarantined."""

from collections.abc import Iterator

import dagster as dg
import pandera.pandas as pa

from coverage_serving.config import InvalidRows, ModelConfig, UnmatchedMarkets
from coverage_serving.core.batch import refresh_features
from coverage_serving.core.contracts import TooManyRejectedRows
from coverage_serving.core.tables import features_table, rejected_table
from coverage_serving.core.unmatched import ByMonth, UnmatchedMarketRows, summary, total_rows
from coverage_serving.defs.display import run_metadata, table_metadata
from coverage_serving.defs.names import CheckName, features_asset_key
from coverage_serving.defs.outcome import AssetEvent, Outcome, report, serve_each
from coverage_serving.defs.partitions import model_partitions, run_partitions
from coverage_serving.defs.resources import WarehouseResource


def build_features_asset(
    model: ModelConfig, input_contract_schema: pa.DataFrameSchema, input_contract: str
) -> dg.AssetsDefinition:
    key = features_asset_key(model)
    quarantine = model.invalid_rows == InvalidRows.QUARANTINE

    @dg.asset(
        key=key,
        partitions_def=model_partitions(model),
        # A backfill of many partitions is one run: one process start, not one per partition.
        backfill_policy=dg.BackfillPolicy.single_run(),
        # Runs writing one table take turns where the instance limits pools (docs/deploying.md).
        pool=key.to_user_string(),
        # The snapshot's code version is its input contract: Dagster records it on every
        # partition written and shows partitions written under an older contract as changed.
        code_version=input_contract,
        group_name=model.name,
        description=f"Feature snapshot of {model.name!r}, checked against its input contract.",
        metadata=table_metadata(input_contract_schema, features_table(model).qualified_name),
        check_specs=[
            dg.AssetCheckSpec(CheckName.INPUT_CONTRACT.value, asset=key),
            _unmatched_markets_spec(model, key),
            *([_rejected_rows_spec(model, key)] if quarantine else []),
        ],
    )
    def features(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[AssetEvent]:
        store = warehouse.open()
        outcome = serve_each(
            run_partitions(context),
            lambda partition: refresh_features(store, model, partition, context.run_id),
        )
        # Features must yield their output, or dagster skips the predictions of the same run;
        # so one materialisation covers the run's partitions, with each one's rows in it.
        if not outcome.failed:
            yield dg.MaterializeResult(metadata=run_metadata(outcome.done))
        yield _unmatched_markets_check(model, outcome)
        if quarantine:
            yield _rejected_rows_check(model, outcome)
        yield from report(CheckName.INPUT_CONTRACT, outcome)

    return features


def _rejected_rows_spec(model: ModelConfig, asset: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CheckName.REJECTED_ROWS.value,
        asset=asset,
        description=(
            f"Invalid input rows quarantined in {rejected_table(model).qualified_name}; fails "
            f"when a partition has more than {model.max_rejected_fraction:.1%} of them."
        ),
    )


def _rejected_rows_check(model: ModelConfig, outcome: Outcome) -> dg.AssetCheckResult:
    too_many = {
        partition: err
        for partition, err in outcome.failed.items()
        if isinstance(err, TooManyRejectedRows)
    }
    rejected = {
        partition.key: result.details["rejected_rows"] for partition, result in outcome.done.items()
    } | {partition.key: err.rejected_rows for partition, err in too_many.items()}
    return dg.AssetCheckResult(
        check_name=CheckName.REJECTED_ROWS.value,
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


_UNMATCHED_OUTCOME = {
    UnmatchedMarkets.WARN: "a warning",
    UnmatchedMarkets.FAIL: "the partitions of their month fail and are not written",
}
_UNMATCHED_SEVERITY = {
    UnmatchedMarkets.WARN: dg.AssetCheckSeverity.WARN,
    UnmatchedMarkets.FAIL: dg.AssetCheckSeverity.ERROR,
}


def _unmatched_markets_spec(model: ModelConfig, asset: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CheckName.UNMATCHED_MARKETS.value,
        asset=asset,
        description=(
            f"Rows of source.{model.source_table} whose market is none of "
            f"{', '.join(model.markets)} (e.g. 'IN ' or 'in'), which no partition reads, counted "
            f"per month; with unmatched_markets: {model.unmatched_markets}, "
            f"{_UNMATCHED_OUTCOME[model.unmatched_markets]}."
        ),
    )


def _unmatched_markets_check(model: ModelConfig, outcome: Outcome) -> dg.AssetCheckResult:
    """The unmatched rows of the run's months, each month once (its partitions share it)."""
    counts: ByMonth = {}
    for result in outcome.done.values():
        counts |= result.details.get("unmatched_markets", {})
    for err in outcome.failed.values():
        if isinstance(err, UnmatchedMarketRows):
            counts |= err.by_month
    counts, rows = dict(sorted(counts.items())), total_rows(counts)
    return dg.AssetCheckResult(
        check_name=CheckName.UNMATCHED_MARKETS.value,
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
