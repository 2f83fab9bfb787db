"""Market x month partitions of a model, shared by its feature and prediction assets, and the
tags that make one run cover a rectangle of them."""

from datetime import date

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.partition import Partition, month_after

# The run tags a single-run backfill carries; dagster keeps the constants private.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def model_partitions(model: ModelConfig) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            "market": dg.StaticPartitionsDefinition(model.markets),
            "month": dg.MonthlyPartitionsDefinition(
                start_date=model.first_month.isoformat(),
                end_date=month_after(model.last_month).isoformat() if model.last_month else None,
            ),
        }
    )


def partition_range_tags(first: Partition, last: Partition) -> dict[str, str]:
    """Tags of a run over every market from first to last (config order) in every month from
    first to last: dagster reads a multi-partition range as that rectangle."""
    return {RANGE_START_TAG: first.key, RANGE_END_TAG: last.key}


def all_partitions_tags(model: ModelConfig) -> dict[str, str]:
    keys = model_partitions(model).get_partition_keys()
    return partition_range_tags(Partition.parse(keys[0]), Partition.parse(keys[-1]))


def month_tags(model: ModelConfig, month: date) -> dict[str, str]:
    """Tags of a run over every market of one month."""
    return partition_range_tags(
        Partition(model.markets[0], month), Partition(model.markets[-1], month)
    )


def run_partitions(context: dg.AssetExecutionContext) -> list[Partition]:
    """The partitions a run covers; a range that selects none fails the run saying so."""
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
