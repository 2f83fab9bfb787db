"""The monthly schedule of a model: rescore the month that just ended, for every market."""

from datetime import date

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.defs.jobs import AssetJob
from coverage_serving.defs.partitions import month_tags


def refresh_schedule_name(model: ModelConfig) -> str:
    return f"{model.name}_monthly_refresh"


def build_refresh_schedule(
    model: ModelConfig, scoring_job: AssetJob, cron: str
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=refresh_schedule_name(model),
        cron_schedule=cron,
        execution_timezone="UTC",
        job=scoring_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Refreshes {model.features_table} and {model.output_table} for the latest complete "
            "month of every market, in one run."
        ),
    )
    def refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        month = latest_complete_month(context.scheduled_execution_time.date())
        if month < model.first_month or (model.last_month and month > model.last_month):
            return dg.SkipReason(
                f"{month.isoformat()} is outside the months configured for {model.name!r}"
            )
        return dg.RunRequest(
            run_key=f"{model.name}:refresh:{month.isoformat()}", tags=month_tags(model, month)
        )

    return refresh


def latest_complete_month(today: date) -> date:
    first_of_this_month = today.replace(day=1)
    if first_of_this_month.month == 1:
        return first_of_this_month.replace(year=first_of_this_month.year - 1, month=12)
    return first_of_this_month.replace(month=first_of_this_month.month - 1)
