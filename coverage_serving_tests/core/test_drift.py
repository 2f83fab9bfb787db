"""PSI and L-infinity against hand computations."""

import math

import pytest

from coverage_serving.core.drift import (
    L_INFINITY,
    PSI,
    Drift,
    column_drift,
    l_infinity,
    psi,
    row_count_change,
)
from coverage_serving.core.profile import CategoricalProfile, NumericProfile, Profile


def test_psi_is_the_sum_over_bins_with_empty_bins_floored() -> None:
    baseline = NumericProfile((1.0, 2.0), (50, 30, 20))
    current = NumericProfile((1.0, 2.0), (20, 30, 0))
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.6 - 0.3) * math.log(0.6 / 0.3)
    by_hand += (0.0001 - 0.2) * math.log(0.0001 / 0.2)
    assert psi(current, baseline) == pytest.approx(by_hand, rel=1e-12)
    assert psi(baseline, baseline) == 0.0


def test_psi_of_profiles_binned_otherwise_is_not_computed() -> None:
    assert psi(NumericProfile((1.0,), (1, 1)), NumericProfile((2.0,), (1, 1))) is None


def test_l_infinity_and_the_unknown_category_rate() -> None:
    baseline = CategoricalProfile({"kirana": 80, "pharmacy": 20})
    current = CategoricalProfile({"kirana": 60, "pharmacy": 20, "kiosk": 20})
    distance, unknown = l_infinity(current, baseline)
    assert distance == pytest.approx(0.2)  # kirana 0.8 -> 0.6, kiosk 0 -> 0.2
    assert unknown == pytest.approx(0.2)

    [drift] = column_drift(
        Profile(100, {"store_type": current}),
        Profile(100, {"store_type": baseline}),
        ["store_type"],
    )
    assert drift == Drift("store_type", L_INFINITY, pytest.approx(0.2), pytest.approx(0.2))


def test_column_drift_picks_the_metric_by_kind() -> None:
    numeric = NumericProfile((1.0,), (5, 5))
    [drift] = column_drift(Profile(10, {"x": numeric}), Profile(10, {"x": numeric}), ["x"])
    assert drift == Drift("x", PSI, 0.0)


def test_row_count_change_is_relative_to_the_previous_month() -> None:
    assert row_count_change(120, 100) == pytest.approx(0.2)
    assert row_count_change(70, 100) == pytest.approx(0.3)
