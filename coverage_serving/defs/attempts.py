"""Run keys that let a sensor try a failed run again, a bounded number of times.

Dagster launches a run key once per sensor, which is how a sensor's repeated ticks request a
run once; but a run that then failed (its process killed, a registry outage) would leave what it
was for undone for good. Each failure gets the next numbered key instead, up to MAX_ATTEMPTS."""

import dagster as dg

MAX_ATTEMPTS = 3
RUN_KEY_TAG = "dagster/run_key"  # what Dagster tags a sensor's run with: its request's run key
ENDED_BADLY = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def attempted(
    instance: dg.DagsterInstance, requests: list[tuple[str, dg.RunRequest]]
) -> tuple[list[dg.RunRequest], list[str]]:
    """Each (what it does, request) under the run key of its next attempt; and, for those whose
    runs failed MAX_ATTEMPTS times, a sentence naming what and those runs."""
    attempts, given_up = [], []
    for what, request in requests:
        assert request.run_key is not None
        run_key, failed = _next_attempt(instance, request.run_key)
        if run_key is None:
            given_up.append(
                f"{what} failed {len(failed)} times (runs {', '.join(failed)}), not tried "
                "again: see their logs, then re-execute the last one"
            )
        else:
            attempts.append(request.with_replaced_attrs(run_key=run_key))
    return attempts, given_up


def run_of(instance: dg.DagsterInstance, run_key: str) -> dg.DagsterRun | None:
    """The run a sensor launched under `run_key`, if any."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
    return runs[0] if runs else None


def _next_attempt(instance: dg.DagsterInstance, run_key: str) -> tuple[str | None, list[str]]:
    """The run key to request for `run_key`'s work, and the runs that failed it so far; None
    once MAX_ATTEMPTS runs failed."""
    failed: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        numbered = run_key if attempt == 0 else f"{run_key}:retry{attempt}"
        run = run_of(instance, numbered)
        if run is None or run.status not in ENDED_BADLY:
            return numbered, failed
        failed.append(run.run_id)
    return None, failed
