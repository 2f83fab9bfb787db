"""Shared fixtures: a small serving config, a state directory holding a real DuckDB
warehouse with demo sources and a real sqlite MLflow registry with both demo models, and a
BigQuery emulator."""

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_duckdb import DuckDBResource

from coverage_serving.config import ServingConfig, load_serving_config
from coverage_serving.definitions import build_definitions
from coverage_serving.demo.emulator import EMULATOR, Emulator, running_emulator
from coverage_serving.demo.models import train_demo_model
from coverage_serving.demo.runner import write_demo_sources
from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving.warehouse import DuckDBWarehouse

CONFIGS = Path(__file__).parent / "configs"
SMALL_CONFIG = CONFIGS / "serving_small.yaml"
SMALL_ROWS = {"stores": 300, "grid_cells": 400}


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
        train_demo_model(model, state.tracking_uri, "champion")
    return state.home


@pytest.fixture
def state(trained_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalState:
    """A private copy of the trained state directory, so a test can change it freely."""
    return private_copy(trained_home, tmp_path, monkeypatch)


def private_copy(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalState:
    """A copy of the state directory `home` for one test, selected as the test's state."""
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    monkeypatch.setenv(HOME_VAR, str(copy))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return LocalState(copy)


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


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """local-bigquery (REST and Storage Read) on free ports with its own data directory."""
    if not EMULATOR.exists():
        pytest.fail(f"{EMULATOR} is missing: `make test` (or `make emulator`) installs it")
    with running_emulator(tmp_path_factory.mktemp("bigquery")) as emulator:
        yield emulator


@pytest.fixture
def bigquery_env(bigquery_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Select the BigQuery warehouse on the emulator, in a dataset of this test's own."""
    dataset = f"test_{uuid.uuid4().hex[:10]}"
    for variable, value in bigquery_emulator.environment(dataset).items():
        monkeypatch.setenv(variable, value)
    return dataset
