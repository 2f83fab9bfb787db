"""Shared fixtures: a small serving config, a state directory holding a real DuckDB
warehouse with demo sources and a real sqlite MLflow registry with both demo models, and a
BigQuery emulator."""

import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from coverage_serving.config import ServingConfig, load_serving_config
from coverage_serving.definitions import build_definitions
from coverage_serving.demo.models import train_demo_model
from coverage_serving.demo.runner import write_demo_sources
from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.processes import answers, free_port, stop, wait_for

CONFIGS = Path(__file__).parent / "configs"
SMALL_CONFIG = CONFIGS / "serving_small.yaml"
SMALL_ROWS = {"stores": 300, "grid_cells": 400}
EMULATOR = Path(__file__).parents[1] / ".venv-bigquery" / "bin" / "local-bigquery"


@pytest.fixture(scope="session")
def small_config() -> ServingConfig:
    return load_serving_config(SMALL_CONFIG)


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, small_config: ServingConfig) -> Path:
    """Built once per session: demo sources for every partition and version 1 of each model."""
    state = LocalState(tmp_path_factory.mktemp("trained") / "home")
    state.create()
    write_demo_sources(_warehouse(state), small_config, SMALL_ROWS)
    for model in small_config.models.values():
        train_demo_model(model, state.tracking_uri, state.mlflow_artifacts, "champion")
    return state.home


@pytest.fixture
def state(trained_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalState:
    """A private copy of the trained state directory, so a test can change it freely."""
    home = tmp_path / "home"
    shutil.copytree(trained_home, home)
    monkeypatch.setenv(HOME_VAR, str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return LocalState(home)


@pytest.fixture
def warehouse(state: LocalState) -> DuckDBWarehouse:
    return _warehouse(state)


@pytest.fixture
def defs(small_config: ServingConfig, state: LocalState) -> dg.Definitions:
    return build_definitions(small_config, state)


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _warehouse(state: LocalState) -> DuckDBWarehouse:
    return DuckDBWarehouse(DuckDBResource(database=str(state.warehouse_path)).get_connection)


@dataclass(frozen=True)
class BigQueryEmulator:
    project: str
    api_endpoint: str
    storage_endpoint: str


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """local-bigquery (REST and Storage Read) on free ports with its own data directory."""
    if not EMULATOR.exists():
        pytest.fail(f"{EMULATOR} is missing: `make test` (or `make emulator`) installs it")
    port, grpc_port = free_port(), free_port()
    data = tmp_path_factory.mktemp("bigquery")
    with (data / "emulator.log").open("w") as log:
        server = subprocess.Popen(
            [
                *(EMULATOR, "serve", "--host", "127.0.0.1", "--port", str(port)),
                *("--grpc-port", str(grpc_port), "--project", "test-project"),
                *("--data-dir", str(data / "store")),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        emulator = BigQueryEmulator(
            "test-project", f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
        )
        datasets = f"{emulator.api_endpoint}/bigquery/v2/projects/{emulator.project}/datasets"
        try:
            wait_for(
                f"the BigQuery emulator (log: {log.name})",
                lambda: answers(datasets),
                timeout=60,
                every=0.2,
            )
            yield emulator
        finally:
            stop(server, signal.SIGTERM, timeout=10)


@pytest.fixture
def bigquery_env(bigquery_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Select the BigQuery warehouse on the emulator, in a dataset of this test's own."""
    dataset = f"test_{uuid.uuid4().hex[:10]}"
    for variable, value in {
        "COVERAGE_SERVING_WAREHOUSE": "bigquery",
        "BIGQUERY_PROJECT": bigquery_emulator.project,
        "BIGQUERY_DATASET": dataset,
        "BIGQUERY_API_ENDPOINT": bigquery_emulator.api_endpoint,
        "BIGQUERY_STORAGE_ENDPOINT": bigquery_emulator.storage_endpoint,
    }.items():
        monkeypatch.setenv(variable, value)
    return dataset
