"""The query that compares a challenger's predictions with the served ones over one partition,
written once for both warehouses."""

from collections.abc import Sequence

from coverage_serving.warehouse.base import TableSpec
from coverage_serving.warehouse.dialect import Dialect


def comparison_sql(
    dialect: Dialect,
    served: TableSpec,
    challenger: TableSpec,
    keys: Sequence[str],
    column: str,
    bins: int = 10,
) -> str:
    """One query, in SQL both DuckDB and BigQuery run, comparing `column` of two tables over
    the keys of one partition (parameters `market` and `month`): rows, absolute and signed
    differences, Spearman's correlation of the ranks (RANK: ties take the lowest), the share of
    the served top decile of keys also in the challenger's top decile (ties broken by key),
    and per decile of the
    served values (bin edges: each decile's lowest served value) how many served and challenger
    values fall in it. Built from identifiers the config validated; values are parameters."""
    quote, parameter = dialect.quote, dialect.parameter
    on = " AND ".join(f"s.{quote(k)} = c.{quote(k)}" for k in [*keys, "market", "month"])
    # Ties in the top decile are broken by key, not by the order rows happen to arrive in.
    key_columns = ", ".join(f"s.{quote(k)} AS key_{i}" for i, k in enumerate(keys))
    tiebreak = ", ".join(f"key_{i}" for i in range(len(keys)))
    edges = ", ".join(
        f"MIN(CASE WHEN decile = {i} THEN served END) AS edge_{i}" for i in range(2, bins + 1)
    )

    def bin_of(value: str) -> str:
        above = " + ".join(
            f"CASE WHEN {value} >= edge_{i} THEN 1 ELSE 0 END" for i in range(2, bins + 1)
        )
        return f"1 + {above}"

    counts = ", ".join(
        f"SUM(CASE WHEN served_bin = {i} THEN 1 ELSE 0 END) AS served_bin_{i}, "
        f"SUM(CASE WHEN challenger_bin = {i} THEN 1 ELSE 0 END) AS challenger_bin_{i}"
        for i in range(1, bins + 1)
    )
    return f"""
WITH pairs AS (
  SELECT s.{quote(column)} AS served, c.{quote(column)} AS challenger, {key_columns}
  FROM {dialect.table(served)} AS s JOIN {dialect.table(challenger)} AS c ON {on}
  WHERE s.market = {parameter("market")} AND s.month = {parameter("month")}
),
ranked AS (
  SELECT served, challenger,
    RANK() OVER (ORDER BY served) AS served_rank,
    RANK() OVER (ORDER BY challenger) AS challenger_rank,
    ROW_NUMBER() OVER (ORDER BY served DESC, {tiebreak}) AS served_place,
    ROW_NUMBER() OVER (ORDER BY challenger DESC, {tiebreak}) AS challenger_place,
    NTILE({bins}) OVER (ORDER BY served) AS decile,
    COUNT(*) OVER () AS n
  FROM pairs
),
edges AS (SELECT {edges} FROM ranked),
binned AS (
  SELECT ranked.*, {bin_of("served")} AS served_bin, {bin_of("challenger")} AS challenger_bin
  FROM ranked CROSS JOIN edges
)
SELECT
  COUNT(*) AS compared_rows,
  AVG(ABS(challenger - served)) AS mean_abs_diff,
  MAX(ABS(challenger - served)) AS max_abs_diff,
  AVG(challenger - served) AS mean_diff,
  CORR(served_rank * 1.0, challenger_rank * 1.0) AS rank_correlation,
  SUM(CASE WHEN served_place <= CEIL(n / {bins}) AND challenger_place <= CEIL(n / {bins})
      THEN 1 ELSE 0 END) / MAX(CEIL(n / {bins})) AS top_decile_overlap,
  {counts}
FROM binned"""
