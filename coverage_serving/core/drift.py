"""How far a partition's profile moved from a baseline profile, column by column.

Conventions followed:
- Numeric columns: the population stability index on the baseline's bins (the deciles of the
  version's reference, core.profile), PSI = sum((a - e) * ln(a / e)) over the bins, with a
  and e the shares of finite values in each bin of the partition and the baseline; an empty
  bin counts as a share of 0.0001 so the logarithm is finite (Siddiqi, "Credit Risk
  Scorecards", 2006; the same floor as Evidently and NannyML). The usual reading: below 0.1
  stable, 0.1 to 0.25 a moderate shift, above 0.25 a significant one: the default thresholds.
- Categorical columns: the L-infinity distance between the category shares, the largest
  absolute change of one category's share, as TensorFlow Data Validation's drift comparator
  (`infinity_norm`) does; defaults 0.1 (warn) and 0.2 (error). The share of rows whose
  category the baseline never saw is reported beside it (the unknown category rate).
"""

import math
from dataclasses import dataclass

from coverage_serving.core.profile import CategoricalProfile, NumericProfile, Profile

PSI_FLOOR = 1e-4
PSI = "psi"
L_INFINITY = "l_infinity"


@dataclass(frozen=True)
class Drift:
    column: str
    metric: str  # PSI or L_INFINITY
    value: float | None  # None: not comparable (the baseline was binned otherwise)
    unknown_rate: float | None = None  # categorical: share of categories the baseline lacks


def psi(current: NumericProfile, baseline: NumericProfile) -> float | None:
    """PSI of the current shares against the baseline's, on the same bins; None when the two
    were binned on different edges or either has no finite value."""
    if current.edges != baseline.edges or not current.finite or not baseline.finite:
        return None
    return sum(
        (a - e) * math.log(a / e)
        for a, e in zip(
            _shares(current.counts, current.finite),
            _shares(baseline.counts, baseline.finite),
            strict=True,
        )
    )


def _shares(counts: tuple[int, ...], total: int) -> list[float]:
    return [max(count / total, PSI_FLOOR) for count in counts]


def l_infinity(current: CategoricalProfile, baseline: CategoricalProfile) -> tuple[float, float]:
    """The largest change of one category's share, and the share of the current rows whose
    category the baseline does not hold."""
    now, then = sum(current.counts.values()), sum(baseline.counts.values())
    if not now or not then:
        return 0.0, 0.0
    categories = set(current.counts) | set(baseline.counts)
    distance = max(
        abs(current.counts.get(c, 0) / now - baseline.counts.get(c, 0) / then) for c in categories
    )
    unknown = sum(n for c, n in current.counts.items() if c not in baseline.counts) / now
    return distance, unknown


def column_drift(current: Profile, baseline: Profile, columns: list[str]) -> list[Drift]:
    """The drift of each of `columns` present in both profiles."""
    drifts = []
    for name in columns:
        now, then = current.columns.get(name), baseline.columns.get(name)
        if isinstance(now, NumericProfile) and isinstance(then, NumericProfile):
            drifts.append(Drift(name, PSI, psi(now, then)))
        elif isinstance(now, CategoricalProfile) and isinstance(then, CategoricalProfile):
            distance, unknown = l_infinity(now, then)
            drifts.append(Drift(name, L_INFINITY, distance, unknown))
    return drifts


def row_count_change(rows: int, previous_rows: int) -> float:
    """The relative change of the row count from the previous month: 0.2 is 20% more or less."""
    return abs(rows - previous_rows) / previous_rows if previous_rows else math.inf
