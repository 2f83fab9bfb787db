"""Rescoring as reconciliation: which partitions of a prediction table hold another version than
the one that should serve, grouped into as few runs as Dagster can express."""

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from coverage_serving.partition import Partition, month_after


@dataclass(frozen=True)
class Held:
    """What a partition holds: the version(s) its rows were scored with, and the record that
    says so (a materialisation, or the runs named by the table's lineage)."""

    versions: frozenset[int]
    evidence: str


@dataclass(frozen=True)
class Rescoring:
    """A rectangle of partitions to rescore in one run: every market from first to last (in
    config order) in every month from first to last."""

    first: Partition
    last: Partition
    partitions: tuple[Partition, ...]

    def key(self, model: str, version: int, held: Mapping[Partition, Held]) -> str:
        """Deterministic per (version, partitions, what they held): the same difference seen
        again (another tick, a restart) is the same key, so it is requested once; once the
        partitions were rewritten (e.g. a rollback, then the same version again) it is new."""
        evidence = "\n".join(f"{p.key}={held[p].evidence}" for p in self.partitions)
        digest = hashlib.sha256(evidence.encode()).hexdigest()[:12]
        return f"{model}:v{version}:{self.first.key}..{self.last.key}:{digest}"


def stale(desired: int, held: Mapping[Partition, Held]) -> list[Partition]:
    """The partitions that hold anything but the desired version, in order."""
    return sorted(p for p, h in held.items() if h.versions != {desired})


def rectangles(markets: list[str], partitions: list[Partition]) -> list[Rescoring]:
    """The fewest rectangles a month-by-month sweep finds that cover exactly `partitions`:
    markets adjacent in config order, months consecutive. A whole table, or every market of
    a range of months, is one rectangle."""
    position = {market: i for i, market in enumerate(markets)}
    by_month: dict[date, list[int]] = defaultdict(list)
    for partition in partitions:
        by_month[partition.month].append(position[partition.market])
    done: list[tuple[tuple[int, int], date, date]] = []
    open_: dict[tuple[int, int], tuple[date, date]] = {}
    for month in sorted(by_month):
        spans = set(_adjacent_spans(sorted(by_month[month])))
        for span in list(open_):
            start, end = open_[span]
            if span not in spans or month_after(end) != month:
                done.append((span, start, end))
                del open_[span]
        for span in spans:
            start, _ = open_.get(span, (month, month))
            open_[span] = (start, month)
    done += [(span, start, end) for span, (start, end) in open_.items()]
    return sorted(
        (_rectangle(markets, span, start, end) for span, start, end in done),
        key=lambda r: (r.first.month, position[r.first.market]),
    )


def _adjacent_spans(positions: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for i in positions:
        if spans and spans[-1][1] == i - 1:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    return spans


def _rectangle(markets: list[str], span: tuple[int, int], start: date, end: date) -> Rescoring:
    months = [start]
    while months[-1] < end:
        months.append(month_after(months[-1]))
    chosen = markets[span[0] : span[1] + 1]
    return Rescoring(
        first=Partition(chosen[0], start),
        last=Partition(chosen[-1], end),
        partitions=tuple(sorted(Partition(m, month) for month in months for m in chosen)),
    )
