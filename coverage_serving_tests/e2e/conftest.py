"""The platform as a person runs it: `coverage-serving dev` (Dagster webserver, daemon and
MLflow server as real processes) on free ports, over a scored copy of the test state in which
a data scientist moved the store model's alias before the daemon ever started."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.models import infer_signature

from coverage_serving.config import ModelConfig, ServingConfig, load_serving_config
from coverage_serving.core.tables import features_table
from coverage_serving.definitions import build_definitions
from coverage_serving.demo.emulator import free_port
from coverage_serving.demo.runner import run_main_jobs
from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving_tests.conftest import SMALL_CONFIG
from coverage_serving_tests.processes import answers, dev_command, stop, wait_for

POLL_SECONDS = 5  # the sensors' interval in this config: the smallest the config allows


@dataclass(frozen=True)
class Platform:
    state: LocalState
    config: ServingConfig
    dagster_url: str
    mlflow_url: str
    promoted_store_version: int  # champion of the store model, moved before the daemon started
    started: float  # time.monotonic() when `coverage-serving dev` was started
    demo_runs: dict[str, str]  # job name: id of the run that scored every partition first

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        """Ask the Dagster webserver what the UI asks it."""
        request = urllib.request.Request(
            f"{self.dagster_url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def launch(self, job_name: str, tags: dict[str, str]) -> str:
        """Launch a run of the job the way the UI does; its run id."""
        launched = self.graphql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
              __typename ... on LaunchRunSuccess { run { runId } }
              ... on PythonError { message } ... on InvalidSubsetError { message } } }""",
            params={
                "selector": {
                    "repositoryLocationName": "coverage_serving",
                    "repositoryName": "__repository__",
                    "jobName": job_name,
                },
                "executionMetadata": {
                    "tags": [{"key": key, "value": value} for key, value in tags.items()]
                },
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def read_table(self, sql: str) -> pd.DataFrame | None:
        """The warehouse as an analyst sees it; None while a run holds the file's write lock."""
        try:
            with duckdb.connect(str(self.state.warehouse_path), read_only=True) as connection:
                return connection.execute(sql).df()
        except duckdb.IOException:
            return None

    def register_version(
        self, model: ModelConfig, python_model: mlflow.pyfunc.PythonModel, alias: str | None = None
    ) -> str:
        """What a data scientist does, through the MLflow server: log and register a version
        whose signature takes the model's features, and move `alias` to it if given."""
        example = wait_for(
            "the feature table to be readable",
            lambda: self.read_table(example_sql(model)),
            timeout=120,
        )
        return str(register(self.mlflow_url, None, model, example, python_model, alias))


# One platform for the package: starting it (two servers, a scored copy of the state) is
# most of an e2e test's time.
@pytest.fixture(scope="package")
def platform(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    state = LocalState(root / "home")
    subprocess.run(["cp", "-r", str(trained_home), str(state.home)], check=True)
    config_path = root / "serving.yaml"
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw["automation"] = {"registry_poll_seconds": POLL_SECONDS, "source_poll_seconds": 5}
    config_path.write_text(yaml.safe_dump(raw))
    config = load_serving_config(config_path)
    # Every table scored with version 1 first, as after `make demo`, in the state's instance.
    with dg.DagsterInstance.from_config(str(state.dagster_home)) as instance:
        assert run_main_jobs(build_definitions(config, state), config, instance) == []
        demo_runs = {run.job_name: run.run_id for run in instance.get_runs()}
    promoted = register_and_promote(state, config.models["store"])

    dagster_port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        HOME_VAR: str(state.home),
        "COVERAGE_SERVING_CONFIG": str(config_path),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (root / "dev.log").open("w")
    started = time.monotonic()
    dev = subprocess.Popen(
        dev_command(dagster_port, mlflow_port),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Platform(
        state,
        config,
        f"http://127.0.0.1:{dagster_port}",
        f"http://127.0.0.1:{mlflow_port}",
        promoted,
        started,
        demo_runs,
    )
    try:
        for url in (f"{running.dagster_url}/server_info", f"{running.mlflow_url}/health"):
            wait_for(f"{url} to answer (log: {log.name})", lambda url=url: answers(url), 240)
        yield running
    finally:
        stop(dev, signal.SIGTERM, timeout=90)  # what stops `make dev`: both UIs, their workers
        log.close()


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context: object, model_input: pd.DataFrame) -> pd.Series:
        return pd.Series(100.0, index=model_input.index)


def register_and_promote(state: LocalState, model: ModelConfig) -> int:
    """Before the platform starts: a new version, champion at once, with plain MLflow calls
    on the sqlite registry (whose experiments must say where their artifacts go, or they land
    in ./mlruns)."""
    with duckdb.connect(str(state.warehouse_path), read_only=True) as connection:
        example = connection.execute(example_sql(model)).df()
    artifacts = state.mlflow_artifacts.as_uri()
    return register(state.tracking_uri, artifacts, model, example, Constant(), model.alias)


def example_sql(model: ModelConfig) -> str:
    return (
        f"SELECT {', '.join(model.feature_columns)} "
        f"FROM {features_table(model).qualified_name} LIMIT 5"
    )


def register(
    tracking_uri: str,
    artifact_location: str | None,
    model: ModelConfig,
    example: pd.DataFrame,
    python_model: mlflow.pyfunc.PythonModel,
    alias: str | None,
) -> int:
    """Log and register a version whose signature takes the model's features (`example`),
    and move `alias` to it if given. (No input example: MLflow would call predict on it while
    logging.)"""
    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(f"{model.name}-retraining")
        with mlflow.start_run(
            experiment_id=experiment.experiment_id
            if experiment
            else client.create_experiment(
                f"{model.name}-retraining", artifact_location=artifact_location
            )
        ):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=python_model,
                signature=infer_signature(example, [1.0] * len(example)),
                pip_requirements=["mlflow"],
                registered_model_name=model.registered_model,
            )
        version = int(info.registered_model_version)
        if alias is not None:
            client.set_registered_model_alias(model.registered_model, alias, str(version))
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets it
    return version
