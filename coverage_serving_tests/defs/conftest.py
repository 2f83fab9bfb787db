"""Fixtures of the Dagster layer's tests: a state scored with version 1, and the store
model's registry sensor over it."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.definitions import build_definitions
from coverage_serving.defs.partitions import all_partitions_tags
from coverage_serving.settings import LocalState
from coverage_serving_tests.conftest import private_copy
from coverage_serving_tests.defs.sensor_harness import StoreSensor


@pytest.fixture(scope="session")
def scored_home(
    trained_home: Path, small_config: ServingConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Every store partition scored with version 1, recorded in an instance of its own (as
    after `make demo` with another DAGSTER_HOME): the sensors' instances have no record."""
    state = LocalState(tmp_path_factory.mktemp("scored") / "home")
    shutil.copytree(trained_home, state.home)
    store = small_config.models["store"]
    with dg.DagsterInstance.ephemeral() as elsewhere:
        scored = build_definitions(small_config, state).resolve_job_def("score_store")
        assert scored.execute_in_process(
            tags=all_partitions_tags(store), instance=elsewhere
        ).success
    return state.home


@pytest.fixture
def sensor(
    scored_home: Path,
    small_config: ServingConfig,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> StoreSensor:
    return StoreSensor(small_config, private_copy(scored_home, tmp_path, monkeypatch), instance)
