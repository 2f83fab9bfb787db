"""One partition of a feature or prediction table: a market and a month."""

import re
from dataclasses import dataclass
from datetime import date

from coverage_serving.errors import ServingError

# Dagster joins multi-partition dimensions in name order: market, then month.
KEY_SEPARATOR = "|"
# A market code: what the config accepts and what a partition key may carry.
MARKET_CODE = re.compile(r"[A-Za-z0-9_\-]{1,16}")


@dataclass(frozen=True, order=True)
class Partition:
    market: str
    month: date

    @property
    def key(self) -> str:
        return f"{self.market}{KEY_SEPARATOR}{self.month.isoformat()}"

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, key: str) -> "Partition":
        market, sep, month = key.partition(KEY_SEPARATOR)
        try:
            parsed = date.fromisoformat(month)
        except ValueError:
            parsed = None
        if not sep or not MARKET_CODE.fullmatch(market) or parsed is None or parsed.day != 1:
            raise ServingError(
                f"partition key {key!r} is not of the form MARKET|YYYY-MM-01 (e.g. IN|2026-01-01)"
            )
        return cls(market=market, month=parsed)


def month_after(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)
