"""Run keys that let a sensor try a failed run again, a bounded number of times.

Dagster launches a run key once per sensor, which is how a sensor's repeated ticks request a
run once; but a run that then failed (its process killed, a registry outage) would leave what it
was for undone for good. Each failure gets the next numbered key instead, up to MAX_ATTEMPTS."""

import dagster as dg

MAX_ATTEMPTS = 3
RUN_KEY_TAG = "dagster/run_key"  # what Dagster tags a sensor's run with: its request's run key
ENDED_BADLY = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def next_attempt(instance: dg.DagsterInstance, run_key: str) -> tuple[str | None, list[str]]:
    """The run key to request for `run_key`'s work, and the runs that failed it so far; None
    once MAX_ATTEMPTS runs failed."""
    failed: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        numbered = run_key if attempt == 0 else f"{run_key}:retry{attempt}"
        runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: numbered}), limit=1)
        if not runs or runs[0].status not in ENDED_BADLY:
            return numbered, failed
        failed.append(runs[0].run_id)
    return None, failed


def given_up(what: str, failed: list[str]) -> str:
    return (
        f"{what} failed {len(failed)} times (runs {', '.join(failed)}), not tried again: see "
        f"their logs, then re-execute the last one"
    )
