"""Batch runs recorded in a real sqlite MLflow store: what a reviewer finds, and that no run is
ever left RUNNING."""

from dataclasses import replace
from datetime import date
from pathlib import Path

import mlflow
import pytest

from coverage_serving.core.batch import StepResult
from coverage_serving.core.tracking import (
    DAGSTER_RUN_TAG,
    EXPERIMENT,
    VERSION_TAG,
    BatchRun,
    record_batch_run,
)
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry, registry_client
from coverage_serving.settings import LocalState

pytestmark = pytest.mark.integration

JAN, FEB = Partition("IN", date(2026, 1, 1)), Partition("ID", date(2026, 1, 1))


def scored(rows: int, mean: float, p01: float, p99: float) -> StepResult:
    quantiles = {"sales_potential": {"p01": p01, "p50": mean, "p99": p99, "mean": mean}}
    return StepResult(rows=rows, details={"prediction_quantiles": quantiles})


@pytest.fixture
def batch(state: LocalState) -> BatchRun:
    ref = ModelRegistry(state.tracking_uri, True).resolve("coverage_store_model", "champion")
    return BatchRun(model="store", ref=ref, dagster_run_id="d4c3b2a1-0000")


def test_a_batch_run_is_recorded_finished_with_its_figures(
    state: LocalState, batch: BatchRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    batch.scored = {JAN: scored(100, 10.0, 1.0, 50.0), FEB: scored(300, 20.0, 2.0, 80.0)}

    run_id = record_batch_run(state.tracking_uri, batch)

    client = mlflow.MlflowClient(state.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.tags[DAGSTER_RUN_TAG] == "d4c3b2a1-0000"
    assert run.data.tags["partitions"] == '{"IN|2026-01-01": 100, "ID|2026-01-01": 300}'
    assert run.data.params["model_version"] == "1"
    assert run.data.metrics == {
        "partitions_scored": 2,
        "partitions_failed": 0,
        "rows": 400,
        "duration_seconds": pytest.approx(run.data.metrics["duration_seconds"]),
        "sales_potential_mean": 17.5,
        "sales_potential_lowest_p01": 1.0,
        "sales_potential_highest_p99": 80.0,
    }
    version = client.get_model_version("coverage_store_model", "1")
    assert version.tags[VERSION_TAG] == run_id
    assert list(workdir.iterdir()) == []  # nothing lands in the working directory


def test_a_run_with_failed_partitions_is_recorded_failed(
    state: LocalState, batch: BatchRun
) -> None:
    batch.scored, batch.failed = {JAN: scored(100, 10.0, 1.0, 50.0)}, [FEB]

    run = mlflow.MlflowClient(state.tracking_uri).get_run(
        record_batch_run(state.tracking_uri, batch)
    )

    assert run.info.status == "FAILED"
    assert run.data.tags["failed_partitions"] == "ID|2026-01-01"
    assert run.data.metrics["partitions_failed"] == 1


def test_a_logging_error_still_terminates_the_run(state: LocalState, batch: BatchRun) -> None:
    gone = replace(batch, ref=replace(batch.ref, version=99), dagster_run_id="e5f6")

    with pytest.raises(mlflow.exceptions.MlflowException):
        record_batch_run(state.tracking_uri, gone)

    client = mlflow.MlflowClient(state.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id], f"tags.{DAGSTER_RUN_TAG} = 'e5f6'")
    assert run.info.status == "FAILED"


def test_an_artifact_of_a_batch_run_lands_in_the_state_directory(
    state: LocalState, batch: BatchRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # MLflow's default would put artifacts in ./mlruns here

    run_id = record_batch_run(state.tracking_uri, batch)
    mlflow.MlflowClient(state.tracking_uri).log_text(run_id, "probe", "probe.txt")

    [logged] = state.mlflow_artifacts.rglob("probe.txt")
    assert logged.read_text() == "probe"
    assert not (workdir / "mlruns").exists()


def test_a_new_registry_keeps_its_default_experiment_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fresh = LocalState(tmp_path / "fresh")
    fresh.create()

    default = registry_client(fresh.tracking_uri).get_experiment_by_name("Default")

    assert default is not None
    assert default.artifact_location.startswith(fresh.mlflow_artifacts.as_uri())
