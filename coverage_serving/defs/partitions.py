"""Market x month partitions of a model, shared by its feature and prediction assets."""

from datetime import date

import dagster as dg

from coverage_serving.config import ModelConfig


def model_partitions(model: ModelConfig) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {
            "market": dg.StaticPartitionsDefinition(model.markets),
            "month": dg.MonthlyPartitionsDefinition(
                start_date=model.first_month.isoformat(),
                end_date=_month_after(model.last_month).isoformat() if model.last_month else None,
            ),
        }
    )


def _month_after(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)
