"""A compact, mergeable profile of a partition, built chunk by chunk while it streams.

Per numeric column (int and float features, predictions): rows, nulls, non-finite values,
min, max, sum of the finite values, and their counts in fixed bins. Per categorical column
(string features): nulls and the count of every category. Every figure is a count, a sum or
an extreme, so merging two profiles adds them and the profiles of a partition's chunks merged
equal the profile of the whole partition, exactly.

The bins are fixed per model version: the deciles of its reference (core.reference), so the
population stability index against the reference is computed on ten equal-mass bins
of it. A version with no reference yet takes its bins from the deciles of the first chunk it
scores. Fixed bins cost a few comparison passes per column and chunk; a KLL sketch per column
cost ten times more than `np.histogram` on them (benchmarks/README.md, "Profiling").
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

DECILES = np.linspace(0.1, 0.9, 9)

Edges = tuple[float, ...]  # inner bin edges, ascending; the outer bins are open-ended


@dataclass(frozen=True)
class NumericProfile:
    edges: Edges
    counts: tuple[int, ...]  # finite values per bin: (-inf, e0), [e0, e1), ..., [e_last, inf)
    nulls: int = 0
    non_finite: int = 0
    minimum: float | None = None  # of the finite values
    maximum: float | None = None
    total: float = 0.0  # sum of the finite values

    @property
    def finite(self) -> int:
        return sum(self.counts)

    @property
    def mean(self) -> float | None:
        return self.total / self.finite if self.finite else None

    def merge(self, other: "NumericProfile") -> "NumericProfile":
        if self.edges != other.edges:
            raise ValueError("numeric profiles with different bins cannot be merged")
        return NumericProfile(
            self.edges,
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.nulls + other.nulls,
            self.non_finite + other.non_finite,
            _extreme(min, self.minimum, other.minimum),
            _extreme(max, self.maximum, other.maximum),
            self.total + other.total,
        )


@dataclass(frozen=True)
class CategoricalProfile:
    counts: Mapping[str, int] = field(default_factory=dict)
    nulls: int = 0

    def merge(self, other: "CategoricalProfile") -> "CategoricalProfile":
        counts = dict(self.counts)
        for category, count in other.counts.items():
            counts[category] = counts.get(category, 0) + count
        return CategoricalProfile(dict(sorted(counts.items())), self.nulls + other.nulls)


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Profile:
    rows: int
    columns: Mapping[str, ColumnProfile]

    def merge(self, other: "Profile") -> "Profile":
        if set(self.columns) != set(other.columns):
            raise ValueError(
                f"profiles of different columns cannot be merged: {sorted(self.columns)} and "
                f"{sorted(other.columns)}"
            )
        return Profile(
            self.rows + other.rows,
            {name: _merge(column, other.columns[name]) for name, column in self.columns.items()},
        )

    def edges(self) -> dict[str, Edges]:
        """The bins of its numeric columns: what profiles comparable with it are built with."""
        return {
            name: column.edges
            for name, column in self.columns.items()
            if isinstance(column, NumericProfile)
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "columns": {name: _column_dict(column) for name, column in self.columns.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Profile":
        return cls(data["rows"], {name: _column_of(item) for name, item in data["columns"].items()})

    @classmethod
    def from_json(cls, text: str) -> "Profile":
        return cls.from_dict(json.loads(text))


def decile_edges(values: np.ndarray) -> Edges:
    """The distinct deciles of the finite values: ten equal-mass bins of them (fewer for a
    column with few distinct values)."""
    finite = values[np.isfinite(values)]
    return tuple(float(e) for e in np.unique(np.quantile(finite, DECILES))) if finite.size else ()


def profile_numeric(values: np.ndarray, edges: Edges) -> NumericProfile:
    finite_mask = np.isfinite(values)
    # Most chunks hold only finite values: no copy, no NaN count for them.
    all_finite = bool(finite_mask.all())
    finite = values if all_finite else values[finite_mask]
    nulls = 0 if all_finite else int(np.isnan(values).sum())
    # The counts np.histogram gives on these bins, without the sort it does for uneven bins:
    # one comparison pass per edge is a quarter of its time on a 75k-row chunk.
    below = [np.count_nonzero(finite < edge) for edge in edges]
    counts = np.diff([0, *below, finite.size])
    return NumericProfile(
        edges,
        tuple(int(c) for c in counts),
        nulls=nulls,
        non_finite=int(values.size - finite.size - nulls),
        minimum=float(finite.min()) if finite.size else None,
        maximum=float(finite.max()) if finite.size else None,
        total=float(finite.sum()),
    )


def profile_categorical(values: pd.Series) -> CategoricalProfile:
    counts = values.value_counts(dropna=True)
    return CategoricalProfile(
        {str(category): int(count) for category, count in sorted(counts.items())},
        nulls=int(values.isna().sum()),
    )


class Profiler:
    """Accumulates the profile of a stream of chunks. Numeric columns are binned on `edges`;
    a numeric column without edges takes the deciles of the first chunk that has values."""

    def __init__(
        self, numeric: Sequence[str], categorical: Sequence[str], edges: Mapping[str, Edges]
    ) -> None:
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.edges = dict(edges)
        self.profile: Profile | None = None

    def add(self, frame: pd.DataFrame) -> None:
        columns: dict[str, ColumnProfile] = {}
        for name in self.numeric:
            values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
            if name not in self.edges:
                self.edges[name] = decile_edges(values)
            columns[name] = profile_numeric(values, self.edges[name])
        for name in self.categorical:
            columns[name] = profile_categorical(frame[name])
        chunk = Profile(len(frame), columns)
        self.profile = chunk if self.profile is None else self.profile.merge(chunk)


def profile_of(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    edges: Mapping[str, Edges],
) -> Profile:
    """The profile of one frame (e.g. a training set), binned on `edges` or its own deciles."""
    profiler = Profiler(numeric, categorical, edges)
    profiler.add(frame)
    assert profiler.profile is not None
    return profiler.profile


def _extreme(pick: Any, a: float | None, b: float | None) -> float | None:
    present = [v for v in (a, b) if v is not None]
    return pick(present) if present else None


def _merge(a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    if isinstance(a, NumericProfile) and isinstance(b, NumericProfile):
        return a.merge(b)
    if isinstance(a, CategoricalProfile) and isinstance(b, CategoricalProfile):
        return a.merge(b)
    raise ValueError("a numeric and a categorical column profile cannot be merged")


def _column_dict(column: ColumnProfile) -> dict[str, Any]:
    if isinstance(column, NumericProfile):
        return {
            "kind": "numeric",
            "edges": list(column.edges),
            "counts": list(column.counts),
            "nulls": column.nulls,
            "non_finite": column.non_finite,
            "min": column.minimum,
            "max": column.maximum,
            "sum": column.total,
        }
    return {"kind": "categorical", "counts": dict(column.counts), "nulls": column.nulls}


def _column_of(item: Mapping[str, Any]) -> ColumnProfile:
    if item["kind"] == "numeric":
        return NumericProfile(
            tuple(item["edges"]),
            tuple(item["counts"]),
            item["nulls"],
            item["non_finite"],
            item["min"],
            item["max"],
            item["sum"],
        )
    return CategoricalProfile(dict(item["counts"]), item["nulls"])
