"""Each batch scoring run leaves an MLflow run in one experiment: which version scored which
partitions, how many rows, how long, what it predicted; the model version is tagged with it.

Written with MlflowClient and explicit run ids, not dagster-mlflow (docs/architecture.md says
why): every run created here is terminated by `record_batch_run`, and nothing is set on the
process-global MLflow state that the next Dagster run in the same process would inherit."""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlflow.entities import Metric, Param, RunTag

from coverage_serving.core.batch import StepResult
from coverage_serving.core.compare import PartitionComparison
from coverage_serving.core.served_version import SERVED_TAG, VERDICT_TAG
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelVersionRef, experiment_id, registry_client

EXPERIMENT = "coverage-serving-batch"
DAGSTER_RUN_TAG = "dagster_run_id"
VERSION_TAG = "coverage_serving.last_batch_run"  # on the model version: its latest batch run
MAX_TAG_CHARS = 5000  # MLflow tag values are capped (8000); long lists are cut, with a count
ENDED_TAG = "coverage_serving.ended"  # on a batch run another ended: why


@dataclass
class BatchRun:
    model: str
    ref: ModelVersionRef
    dagster_run_id: str
    started: float = field(default_factory=time.time)
    scored: dict[Partition, StepResult] = field(default_factory=dict)
    failed: list[Partition] = field(default_factory=list)
    shadow: bool = False  # scored the challenger into the shadow table
    compared: dict[Partition, PartitionComparison] = field(default_factory=dict)
    verdict: str | None = None  # the promotion gate's, when the model has one


def start_batch_run(tracking_uri: str, run: BatchRun) -> str:
    """Create the batch run in MLflow before its first partition, so each partition's
    materialisation can link to it; returns the MLflow run id. `record_batch_run` ends it."""
    created = registry_client(tracking_uri).create_run(
        experiment_id(tracking_uri, EXPERIMENT),
        start_time=int(run.started * 1000),
        run_name=f"{run.model} v{run.ref.version} {run.dagster_run_id[:8]}",
        tags={
            DAGSTER_RUN_TAG: run.dagster_run_id,
            "model_name": run.ref.name,
            "model_version": str(run.ref.version),
            "model_alias": run.ref.alias or "",
            "shadow": str(run.shadow).lower(),
        },
    )
    return created.info.run_id


def record_batch_run(tracking_uri: str, run: BatchRun, run_id: str | None = None) -> str:
    """Log the finished batch run in MLflow, in the run `start_batch_run` created or a new one;
    returns the MLflow run id. The run is terminated (FINISHED, or FAILED when a partition
    failed) whatever happens while logging."""
    client = registry_client(tracking_uri)
    run_id = run_id or start_batch_run(tracking_uri, run)
    status = "FAILED"
    try:
        tags = {
            "partitions": _capped(json.dumps({p.key: r.rows for p, r in run.scored.items()})),
            "failed_partitions": _capped(", ".join(p.key for p in run.failed)),
        }
        client.log_batch(
            run_id,
            metrics=_metrics(run),
            params=_params(run),
            tags=[RunTag(key, value) for key, value in tags.items()],
        )
        for tag, value in _version_tags(run, run_id).items():
            client.set_model_version_tag(run.ref.name, str(run.ref.version), tag, value)
        status = "FAILED" if run.failed else "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


def unfinished_batch_runs(tracking_uri: str) -> dict[str, str]:
    """The batch runs MLflow still shows as running: MLflow run id -> Dagster run id."""
    client = registry_client(tracking_uri)
    runs = client.search_runs(
        [experiment_id(tracking_uri, EXPERIMENT)],
        filter_string="attributes.status = 'RUNNING'",
        max_results=1000,
    )
    return {run.info.run_id: run.data.tags.get(DAGSTER_RUN_TAG, "") for run in runs}


def end_abandoned_run(tracking_uri: str, run_id: str, why: str) -> None:
    """End a batch run whose process died before record_batch_run could: KILLED, with why."""
    client = registry_client(tracking_uri)
    client.set_tag(run_id, ENDED_TAG, _capped(why))
    client.set_terminated(run_id, status="KILLED")


def log_artifacts(tracking_uri: str, run_id: str, directory: Path, artifact_path: str) -> None:
    registry_client(tracking_uri).log_artifacts(run_id, str(directory), artifact_path)


def artifacts_location(tracking_uri: str, run_id: str) -> str:
    """Where a person opens the run's artifacts: the run's Artifacts tab in the MLflow UI when
    the tracking URI is a server, else the directory the artifacts are stored in."""
    info = registry_client(tracking_uri).get_run(run_id).info
    if tracking_uri.startswith(("http://", "https://")):
        return (
            f"{tracking_uri.rstrip('/')}/#/experiments/{info.experiment_id}/runs/{run_id}/artifacts"
        )
    uri = urlparse(info.artifact_uri)
    return url2pathname(uri.path) if uri.scheme == "file" else info.artifact_uri


def _version_tags(run: BatchRun, run_id: str) -> dict[str, str]:
    """What the version's registry page should say: its latest batch run; that it served a
    table (a rollback to it needs no gate); the gate's verdict on its shadow comparison."""
    tags = {VERSION_TAG: run_id}
    if run.scored and not run.shadow:
        tags[SERVED_TAG] = "true"
    if run.verdict is not None:
        tags[VERDICT_TAG] = _capped(run.verdict)
    return tags


def _params(run: BatchRun) -> list[Param]:
    values = {
        "model": run.model,
        "registered_model": run.ref.name,
        "model_version": run.ref.version,
        "model_alias": run.ref.alias,
        "model_run_id": run.ref.run_id,
    }
    return [Param(key, str(value)) for key, value in values.items()]


def _metrics(run: BatchRun) -> list[Metric]:
    now = int(time.time() * 1000)
    rows = sum(result.rows for result in run.scored.values())
    values = {
        "partitions_scored": len(run.scored),
        "partitions_failed": len(run.failed),
        "rows": rows,
        "duration_seconds": round(time.time() - run.started, 3),
        **_prediction_summary(run.scored, rows),
        **_comparison_summary(run.compared),
    }
    return [Metric(key, float(value), now, 0) for key, value in values.items()]


def _prediction_summary(scored: dict[Partition, StepResult], rows: int) -> dict[str, float]:
    """Per prediction column: the row-weighted mean and the extreme partition quantiles."""
    summary: dict[str, float] = {}
    for result in scored.values():
        for column, stats in result.details.get("prediction_quantiles", {}).items():
            weighted = stats["mean"] * result.rows / rows
            summary[f"{column}_mean"] = summary.get(f"{column}_mean", 0.0) + weighted
            summary[f"{column}_lowest_p01"] = min(
                summary.get(f"{column}_lowest_p01", stats["p01"]), stats["p01"]
            )
            summary[f"{column}_highest_p99"] = max(
                summary.get(f"{column}_highest_p99", stats["p99"]), stats["p99"]
            )
    return summary


def _comparison_summary(compared: dict[Partition, PartitionComparison]) -> dict[str, float]:
    """The worst partition's figure of each comparison: what the gate would look at first."""
    found = [c for result in compared.values() for c in result.columns.values() if c.compared_rows]
    if not found:
        return {}
    return {
        "shadow_min_rank_correlation": min(c.rank_correlation for c in found),
        "shadow_min_top_decile_overlap": min(c.top_decile_overlap for c in found),
        "shadow_max_psi": max(c.psi for c in found),
        "shadow_max_abs_mean_diff": max(abs(c.mean_diff) for c in found),
    }


def _capped(text: str) -> str:
    return (
        text
        if len(text) <= MAX_TAG_CHARS
        else text[: MAX_TAG_CHARS - 20] + f"... ({len(text)} chars)"
    )
