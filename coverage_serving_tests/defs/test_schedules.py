"""The monthly schedule: which month it refreshes, in one run over every market."""

from datetime import UTC, date, datetime

import dagster as dg
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.defs.jobs import build_scoring_job
from coverage_serving.defs.schedules import build_refresh_schedule, latest_complete_month


def evaluate(config: ServingConfig, at: datetime) -> dg.RunRequest | dg.SkipReason:
    model = config.models["store"]
    schedule = build_refresh_schedule(model, build_scoring_job(model), "0 6 2 * *")
    return schedule(dg.build_schedule_context(scheduled_execution_time=at))


def test_the_month_that_just_ended_is_refreshed_for_every_market(
    small_config: ServingConfig,
) -> None:
    request = evaluate(small_config, datetime(2026, 2, 2, 6, tzinfo=UTC))

    assert isinstance(request, dg.RunRequest)
    assert request.run_key == "store:refresh:2026-01-01"
    assert request.tags == {
        "dagster/asset_partition_range_start": "IN|2026-01-01",
        "dagster/asset_partition_range_end": "ID|2026-01-01",
    }


@pytest.mark.parametrize(
    "at", [datetime(2026, 1, 2, 6, tzinfo=UTC), datetime(2026, 4, 2, 6, tzinfo=UTC)]
)
def test_a_month_outside_the_config_is_skipped_with_a_reason(
    small_config: ServingConfig, at: datetime
) -> None:
    result = evaluate(small_config, at)

    assert isinstance(result, dg.SkipReason)
    assert "is outside the months configured for 'store'" in (result.skip_message or "")


@pytest.mark.parametrize(
    ("today", "month"),
    [(date(2026, 1, 15), date(2025, 12, 1)), (date(2026, 11, 1), date(2026, 10, 1))],
)
def test_latest_complete_month(today: date, month: date) -> None:
    assert latest_complete_month(today) == month
