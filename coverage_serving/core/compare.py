"""A challenger's predictions against the served ones on the same keys of one partition, and the
promotion gate's verdict on them. The warehouse computes the figures next to the data (one
query per partition, so memory does not grow with the partition); this module names them and
judges them."""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from coverage_serving.config import PromotionGate
from coverage_serving.partition import Partition

BINS = 10  # PSI bins: the deciles of the served predictions
# An empty bin would make PSI infinite; the common convention floors each share.
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class Comparison:
    """One prediction column of one partition, served vs challenger, on the keys both hold."""

    compared_rows: int
    mean_abs_diff: float
    max_abs_diff: float
    mean_diff: float  # challenger minus served: the challenger's bias
    rank_correlation: float  # Spearman; 0 when either side is constant
    top_decile_overlap: float  # share of the served top decile of keys also in the challenger's
    psi: float  # population stability index over the served deciles
    served_bins: tuple[int, ...]
    challenger_bins: tuple[int, ...]

    def figures(self) -> dict[str, float]:
        """The comparison's numbers, without the bin counts."""
        return {name: value for name, value in asdict(self).items() if not isinstance(value, tuple)}


@dataclass
class PartitionComparison:
    """One shadow partition against the served one: per prediction column, and what failed."""

    columns: dict[str, Comparison] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def verdict(compared: dict[Partition, PartitionComparison]) -> str:
    """What the promotion gate reads: passed, or the first failures with their partitions."""
    failures = [
        f"{partition.key} {failure}"
        for partition, result in sorted(compared.items())
        for failure in result.failures
    ]
    if not failures:
        return "passed"
    more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
    return "; ".join(failures[:3]) + more


def psi(expected: tuple[int, ...], actual: tuple[int, ...]) -> float:
    """Population stability index of `actual` against `expected`, both counts per bin:
    sum((a - e) * ln(a / e)) over the bins' shares, each share floored at PSI_FLOOR."""
    e_total, a_total = sum(expected) or 1, sum(actual) or 1
    total = 0.0
    for e_count, a_count in zip(expected, actual, strict=True):
        e, a = max(e_count / e_total, PSI_FLOOR), max(a_count / a_total, PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def gate_failures(comparison: Comparison, gate: PromotionGate) -> list[str]:
    """Each threshold of the gate the comparison misses, with the value and the threshold."""
    failures = []
    if gate.min_rank_correlation is not None and (
        comparison.rank_correlation < gate.min_rank_correlation
    ):
        failures.append(
            f"rank correlation {comparison.rank_correlation:.3f} < "
            f"min_rank_correlation {gate.min_rank_correlation}"
        )
    if gate.min_top_decile_overlap is not None and (
        comparison.top_decile_overlap < gate.min_top_decile_overlap
    ):
        failures.append(
            f"top-decile overlap {comparison.top_decile_overlap:.3f} < "
            f"min_top_decile_overlap {gate.min_top_decile_overlap}"
        )
    if gate.max_psi is not None and comparison.psi > gate.max_psi:
        failures.append(f"PSI {comparison.psi:.3f} > max_psi {gate.max_psi}")
    if gate.max_abs_mean_shift is not None and abs(comparison.mean_diff) > gate.max_abs_mean_shift:
        failures.append(
            f"mean shift {comparison.mean_diff:+.4g} beyond max_abs_mean_shift "
            f"{gate.max_abs_mean_shift}"
        )
    return failures


def comparison_of(figures: dict[str, Any], bins: int = BINS) -> Comparison:
    """The warehouse's comparison row (warehouse.base.comparison_sql) as a Comparison."""

    def number(name: str) -> float:
        value = figures[name]
        return 0.0 if value is None or math.isnan(float(value)) else float(value)

    served = tuple(int(number(f"served_bin_{i}")) for i in range(1, bins + 1))
    challenger = tuple(int(number(f"challenger_bin_{i}")) for i in range(1, bins + 1))

    return Comparison(
        compared_rows=int(number("compared_rows")),
        mean_abs_diff=number("mean_abs_diff"),
        max_abs_diff=number("max_abs_diff"),
        mean_diff=number("mean_diff"),
        # No correlation exists when either side is constant; for a gate that is no agreement.
        rank_correlation=number("rank_correlation"),
        top_decile_overlap=number("top_decile_overlap"),
        psi=psi(served, challenger),
        served_bins=served,
        challenger_bins=challenger,
    )
