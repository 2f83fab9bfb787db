"""Source rows whose market is none of the model's markets ('IN ' or 'in' for 'IN', a market
not configured, NULL): no partition reads them, so the features step counts them per month and
reports them, and refuses the month's partitions under `unmatched_markets: fail`."""

from collections.abc import Sequence
from datetime import date
from typing import Any

from coverage_serving.config import ModelConfig
from coverage_serving.core.tables import source_table
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Warehouse
from coverage_serving.warehouse.base import UnmatchedMarket

MONTHS_SHOWN = 6  # a source holding markets no model serves has them in every month

# Per month, market value (as repr, so 'IN ' shows its space) -> rows.
ByMonth = dict[str, dict[str, int]]


def unmatched_source_rows(
    warehouse: Warehouse, model: ModelConfig, months: Sequence[date]
) -> list[UnmatchedMarket]:
    """The model's source rows of those months whose market is none of its markets."""
    return warehouse.unmatched_markets(source_table(model), model.markets, months)


def by_month(unmatched: Sequence[UnmatchedMarket]) -> ByMonth:
    counts: ByMonth = {}
    for found in unmatched:
        shown = "NULL" if found.market is None else repr(found.market)
        counts.setdefault(found.month.isoformat(), {})[shown] = found.rows
    return counts


def total_rows(counts: ByMonth) -> int:
    return sum(sum(values.values()) for values in counts.values())


def summary(model: ModelConfig, counts: ByMonth) -> str:
    """e.g. "3 row(s) of source.stores have a market that is none of IN, ID, so no partition
    reads them: 2026-01-01: 2 x 'IN ', 1 x 'in'"."""
    months = [
        f"{month}: " + ", ".join(f"{n} x {market}" for market, n in values.items())
        for month, values in counts.items()
    ]
    more = len(months) - MONTHS_SHOWN
    listed = "; ".join(months[:MONTHS_SHOWN]) + (f"; and {more} more month(s)" if more > 0 else "")
    return (
        f"{total_rows(counts)} row(s) of {source_table(model).qualified_name} have a market "
        f"that is none of {', '.join(model.markets)}, so no partition reads them: {listed}"
    )


class UnmatchedMarketRows(ServingError):
    """Under `unmatched_markets: fail`, the partition's month holds rows of no configured
    market."""

    def __init__(
        self, model: ModelConfig, partition: Partition, unmatched: Sequence[UnmatchedMarket]
    ) -> None:
        self.model = model.name
        self.partition = partition
        self.by_month = by_month(unmatched)
        self.rows = total_rows(self.by_month)
        super().__init__(
            f"model {model.name!r}, partition {partition}: {summary(model, self.by_month)}; "
            "nothing was written (unmatched_markets: fail)"
        )

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "model": self.model,
            "partition": self.partition.key,
            "unmatched_rows": self.rows,
            "unmatched_markets": self.by_month,
        }
