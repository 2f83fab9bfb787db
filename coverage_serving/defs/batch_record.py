"""The MLflow run that records a batch of the prediction assets, and the plots logged to it;
neither may fail a run whose tables are right."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from coverage_serving.core.plots import MAX_DISTRIBUTIONS
from coverage_serving.core.tables import PredictionTarget
from coverage_serving.core.tracking import (
    EXPERIMENT,
    BatchRun,
    artifacts_location,
    end_abandoned_run,
    log_artifacts,
    record_batch_run,
    start_batch_run,
    unfinished_batch_runs,
)
from coverage_serving.registry import redact

PLOTS_ARTIFACTS = "drift"  # the batch run's folder of drift plots in MLflow
COMPARISON_ARTIFACTS = "comparison"  # a shadow run's folder of challenger vs served plots


def start_tracking(
    context: dg.AssetExecutionContext, tracking_uri: str, batch: BatchRun, target: PredictionTarget
) -> tuple[str | None, dict[str, Any]]:
    """The MLflow run the batch is recorded in, and the link to its drift plots that each
    served partition's materialisation carries (a shadow is not profiled: no plots)."""
    try:
        end_abandoned_runs(context, tracking_uri)
        run_id = start_batch_run(tracking_uri, batch)
        location = artifacts_location(tracking_uri, run_id)
    except Exception as err:  # the record is tried again at the end; scoring goes on
        context.log.warning(f"batch run not started in MLflow: {redact(str(err))}")
        return None, {}
    if target.shadow:
        return run_id, {}
    if location.startswith(("http://", "https://")):
        return run_id, {"drift_plots": dg.MetadataValue.url(location)}
    return run_id, {"drift_plots": dg.MetadataValue.path(str(Path(location) / PLOTS_ARTIFACTS))}


def end_abandoned_runs(context: dg.AssetExecutionContext, tracking_uri: str) -> None:
    """A batch whose process died (killed, out of memory, a lost machine) never ended its MLflow
    run, which MLflow would show as running forever: end it as KILLED once Dagster says its run
    is over. A run this Dagster instance does not know is another deployment's to end."""
    for mlflow_run_id, dagster_run_id in unfinished_batch_runs(tracking_uri).items():
        dagster_run = context.instance.get_run_by_id(dagster_run_id) if dagster_run_id else None
        if dagster_run is None or not dagster_run.is_finished:
            continue
        why = (
            f"Dagster run {dagster_run_id} ended ({dagster_run.status.value}) before it recorded "
            f"this batch; ended by run {context.run_id}"
        )
        end_abandoned_run(tracking_uri, mlflow_run_id, why)
        context.log.warning(f"MLflow batch run {mlflow_run_id} ended as KILLED: {why}")


def track(
    context: dg.AssetExecutionContext, tracking_uri: str, batch: BatchRun, run_id: str | None
) -> str | None:
    try:
        run_id = record_batch_run(tracking_uri, batch, run_id)
    except Exception as err:  # the tables are right; a lost record must not fail the run
        context.log.warning(f"batch run not recorded in MLflow: {redact(str(err))}")
        return None
    context.log.info(f"recorded as MLflow run {run_id} in experiment {EXPERIMENT!r}")
    return run_id


def log_plots(
    context: dg.AssetExecutionContext,
    tracking_uri: str,
    run_id: str,
    folder: str,
    draw: Callable[[Path], list[Path]],
) -> None:
    """Draw the run's plots (core.plots) into its MLflow run, under `folder`."""
    try:
        with tempfile.TemporaryDirectory(prefix="coverage-serving-plots-") as scratch:
            drawn = draw(Path(scratch))
            log_artifacts(tracking_uri, run_id, Path(scratch), folder)
    except Exception as err:  # a picture must not fail a run whose tables are right
        context.log.warning(f"plots not logged to MLflow run {run_id}: {redact(str(err))}")
        return
    context.log.info(
        f"{len(drawn)} plots logged to MLflow run {run_id} under {folder!r} (at most "
        f"{MAX_DISTRIBUTIONS} partitions drawn)"
    )
