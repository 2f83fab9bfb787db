"""Profiles of a partition's chunks merged equal the profile of the whole partition."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from coverage_serving.core.profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    Profiler,
    decile_edges,
    profile_numeric,
    profile_of,
)

NUMERIC, CATEGORICAL = ["income", "visits"], ["store_type"]


def partition_rows(rows: int = 10_000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    income = rng.lognormal(0, 0.4, rows)
    income[::97] = np.nan
    income[5] = np.inf
    return pd.DataFrame(
        {
            "income": income,
            "visits": rng.poisson(3, rows),
            "store_type": rng.choice(["kirana", "pharmacy", None], rows, p=[0.7, 0.2, 0.1]),
        }
    )


def without_sums(profile: Profile) -> dict[str, object]:
    return {
        name: replace(column, total=0.0) if isinstance(column, NumericProfile) else column
        for name, column in profile.columns.items()
    }


def test_profiles_of_chunks_merged_equal_the_profile_of_the_whole() -> None:
    frame = partition_rows()
    edges = {"income": decile_edges(frame["income"].to_numpy()), "visits": (1.0, 2.0, 4.0)}
    whole = profile_of(frame, NUMERIC, CATEGORICAL, edges)

    profiler = Profiler(NUMERIC, CATEGORICAL, edges)
    for start in range(0, len(frame), 1_234):
        profiler.add(frame.iloc[start : start + 1_234])
    merged = profiler.profile
    assert merged is not None

    # Counts, extremes and categories add exactly; a float sum of chunk sums differs from the
    # sum of the whole only in rounding.
    income, whole_income = merged.columns["income"], whole.columns["income"]
    assert isinstance(income, NumericProfile) and isinstance(whole_income, NumericProfile)
    assert income.total == pytest.approx(whole_income.total, rel=1e-12)
    assert merged.rows == whole.rows == 10_000
    assert without_sums(merged) == without_sums(whole)
    assert whole_income.nulls == 104 and whole_income.non_finite == 1
    assert whole.columns["store_type"].nulls > 0


def test_a_profile_survives_json() -> None:
    profile = profile_of(partition_rows(500), NUMERIC, CATEGORICAL, {})
    assert Profile.from_json(profile.to_json()) == profile


def test_a_column_without_bins_takes_the_deciles_of_its_first_chunk() -> None:
    frame = partition_rows()
    profiler = Profiler(NUMERIC, CATEGORICAL, {})
    profiler.add(frame.iloc[:1000])
    profiler.add(frame.iloc[1000:])
    assert profiler.edges["income"] == decile_edges(frame["income"].to_numpy()[:1000])
    assert profiler.profile is not None
    assert profiler.profile.columns["income"].edges == profiler.edges["income"]


def test_profiles_binned_otherwise_are_not_merged() -> None:
    a = NumericProfile((1.0,), (1, 1))
    b = NumericProfile((2.0,), (1, 1))
    with pytest.raises(ValueError, match="different bins"):
        a.merge(b)
    assert CategoricalProfile({"a": 1}).merge(CategoricalProfile({"a": 2, "b": 1})) == (
        CategoricalProfile({"a": 3, "b": 1})
    )


def test_the_bin_counts_are_np_histograms_on_the_same_bins() -> None:
    values = partition_rows()["income"].to_numpy()
    edges = decile_edges(values)
    values[:9] = edges  # a value on an edge counts in the bin it opens
    finite = values[np.isfinite(values)]

    profiled = profile_numeric(values, edges)

    expected, _ = np.histogram(finite, np.array([-np.inf, *edges, np.inf]))
    assert profiled.counts == tuple(int(c) for c in expected)
    assert profile_numeric(values, ()).counts == (finite.size,)
