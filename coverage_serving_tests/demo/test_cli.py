"""`coverage-serving demo` end to end on the small config: twice, with the same tables."""

import re
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from coverage_serving import cli
from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import predictions_table, source_table
from coverage_serving.defs.jobs import scoring_job_name
from coverage_serving.defs.partitions import all_partitions_tags
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_CONFIG, SMALL_ROWS

pytestmark = pytest.mark.integration


@pytest.fixture
def demo_env(state: LocalState, monkeypatch: pytest.MonkeyPatch) -> LocalState:
    monkeypatch.setenv("COVERAGE_SERVING_CONFIG", str(SMALL_CONFIG))
    monkeypatch.setenv("DAGSTER_HOME", str(state.dagster_home))
    return state


def table_contents(warehouse: DuckDBWarehouse, config: ServingConfig) -> dict[str, pd.DataFrame]:
    """Every prediction row apart from what changes per run."""
    contents = {}
    for name, model in config.models.items():
        table = predictions_table(model)
        frames = [warehouse.read_partition(table, p) for p in warehouse.list_partitions(table)]
        contents[name] = (
            pd.concat(frames)
            .drop(columns=["scored_at", "dagster_run_id"])
            .sort_values(["market", "month", *model.key_columns])
            .reset_index(drop=True)
        )
    return contents


# What the Jobs page asks for a job's runs (ui-core PipelineRunsFeedRoot.tsx): the job's name
# and the tag Dagster derives from a run's remote origin, `<repository>@<code location>`.
REPOSITORY_LABEL = {".dagster/repository": "__repository__@coverage_serving"}


def assert_listed_under_their_jobs(state: LocalState, config: ServingConfig) -> None:
    with dg.DagsterInstance.get() as instance:
        assert instance.root_directory == str(state.dagster_home)
        for model in config.models.values():
            job = scoring_job_name(model)
            [run] = instance.get_runs(dg.RunsFilter(job_name=job, tags=REPOSITORY_LABEL))
            assert run.is_success
            assert run.remote_job_origin is not None
            assert run.remote_job_origin.location_name == "coverage_serving"
            assert run.job_code_origin is not None
            assert run.tags.items() >= all_partitions_tags(model).items()


def test_demo_scores_every_partition_and_is_safe_to_rerun(
    demo_env: LocalState,
    small_config: ServingConfig,
    warehouse: DuckDBWarehouse,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The first time as a person runs it, in a process of its own: what it prints is all
    # there is, and stderr has nothing (no MLflow download progress bars, no warnings).
    demo = subprocess.run(
        [sys.executable, "-m", "coverage_serving.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (demo.returncode, demo.stderr) == (0, "")
    first = table_contents(warehouse, small_config)
    printed = demo.stdout
    assert "demo sources: 0 partition(s) generated" in printed
    assert f"serving.store_predictions: 4 partitions, {4 * SMALL_ROWS['stores']:,} rows" in printed
    assert (
        f"serving.grid_predictions: 4 partitions, {4 * SMALL_ROWS['grid_cells']:,} rows" in printed
    )
    assert "  IN     2026-02-01        400  1" in printed
    assert "  store_predictions  ID|2026-02-01  4/4        300 rows" in printed
    assert_listed_under_their_jobs(demo_env, small_config)
    # Each served version recorded after scoring: the LightGBM grid model compiled, exactly.
    assert "store v1: not compiled: not a LightGBM model or a pipeline ending in one (" in printed
    assert re.search(r"grid v1: compiled in [\d.]+ s, ([\d,]+) of \1 rows bitwise equal", printed)

    assert cli.main(["demo"]) == 0

    second = table_contents(warehouse, small_config)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


def test_demo_data_and_train_commands_build_a_fresh_state(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    small_config: ServingConfig,
) -> None:
    home = tmp_path_factory.mktemp("fresh") / "home"
    monkeypatch.setenv("COVERAGE_SERVING_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("COVERAGE_SERVING_CONFIG", str(SMALL_CONFIG))

    assert cli.main(["demo-data"]) == 0
    assert cli.main(["train-demo-model", "grid", "--alias", "champion"]) == 0

    state = LocalState(home)
    warehouse = DuckDBWarehouse(DuckDBResource(database=str(state.warehouse_path)).get_connection)
    for model in small_config.models.values():
        assert len(warehouse.list_partitions(source_table(model))) == 4
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=False)
    assert registry.resolve("coverage_grid_model", "champion").version == 1


def test_unknown_model_is_refused(demo_env: LocalState, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train-demo-model", "churn"]) == 2
    assert "no model 'churn' in the serving config ['grid', 'store']" in capsys.readouterr().err
