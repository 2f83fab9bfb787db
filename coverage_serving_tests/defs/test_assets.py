"""Materialise both models' partitions through Dagster against a real DuckDB file and a real
sqlite MLflow registry, as `make demo` and the UI do."""

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.core.compiled import ARTIFACTS
from coverage_serving.core.tables import features_table, history_table, predictions_table
from coverage_serving.core.tracking import DAGSTER_RUN_TAG, EXPERIMENT
from coverage_serving.definitions import resources_for_deployment
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.defs.names import model_versions_partitions
from coverage_serving.defs.partitions import all_partitions_tags, partition_range_tags
from coverage_serving.defs.tags import PINNED_ALIAS_TAG, PINNED_VERSION_TAG
from coverage_serving.defs.versions import build_version_asset
from coverage_serving.online.served import ServedModel, score_rows
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_ROWS
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration

PARTITION = Partition("IN", date(2026, 1, 1))
ALL_STORE_PARTITIONS = ["ID|2026-01-01", "ID|2026-02-01", "IN|2026-01-01", "IN|2026-02-01"]


Materialize = Callable[..., dg.ExecuteInProcessResult]


@pytest.fixture
def materialize(
    small_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> Materialize:
    """Materialise one model's feature and prediction assets for one partition."""

    def run(name: str, partition: Partition = PARTITION) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            build_model_assets(small_config.models[name]),
            partition_key=partition.key,
            resources=resources_for_deployment(small_config, state),
            instance=instance,
            raise_on_error=False,
        )

    return run


def step_seconds(instance: dg.DagsterInstance, run_id: str, step: str) -> float:
    """The wall time of the step, from its start to its success in the run's event log."""
    times = {
        entry.dagster_event.event_type: entry.timestamp
        for entry in instance.all_logs(run_id)
        if entry.step_key == step and entry.dagster_event is not None
    }
    return times[dg.DagsterEventType.STEP_SUCCESS] - times[dg.DagsterEventType.STEP_START]


def check_results(
    result: dg.ExecuteInProcessResult, partition: str | None = PARTITION.key
) -> dict[str, dg.AssetCheckEvaluation]:
    """The run's check evaluations of one partition (None: of checks not evaluated per
    partition), by check name; a check evaluated twice for it fails the test."""
    found = [e for e in result.get_asset_check_evaluations() if e.partition == partition]
    by_name = {evaluation.check_name: evaluation for evaluation in found}
    assert len(by_name) == len(found), [e.check_name for e in found]
    return by_name


@pytest.mark.parametrize("name", ["store", "grid"])
def test_a_partition_is_scored_with_lineage(
    name: str, small_config: ServingConfig, warehouse: DuckDBWarehouse, materialize: Materialize
) -> None:
    model = small_config.models[name]

    result = materialize(name)

    assert result.success
    rows = warehouse.read_partition(predictions_table(model), PARTITION)
    assert len(rows) == SMALL_ROWS[model.source_table]
    assert rows[model.key_columns[0]].is_unique
    assert set(rows["model_name"]) == {model.registered_model}
    assert set(rows["model_version"]) == {1}
    assert set(rows["model_alias"]) == {"champion"}
    assert rows["model_run_id"].str.len().eq(32).all()
    assert set(rows["dagster_run_id"]) == {result.run_id}
    assert rows["scored_at"].dt.tz is not None
    assert set(rows["market"]) == {"IN"}
    assert set(pd.to_datetime(rows["month"]).dt.date) == {PARTITION.month}
    features = warehouse.read_partition(features_table(model), PARTITION)
    assert sorted(features[model.key_columns[0]]) == sorted(rows[model.key_columns[0]])


def test_materialisation_metadata_and_checks(
    materialize: Materialize, instance: dg.DagsterInstance
) -> None:
    result = materialize("grid")

    [written] = result.asset_materializations_for_node("grid_predictions")
    metadata = {key: value.value for key, value in written.metadata.items()}
    assert metadata["dagster/row_count"] == SMALL_ROWS["grid_cells"]
    assert metadata["model_version"] == 1
    assert metadata["model_load_seconds"] > 0  # the run's one partition waited for the load
    assert metadata["waiting_for_scores_seconds"] >= 0 and metadata["swap_seconds"] >= 0
    assert metadata["input_contract"] == "skipped: checked when the snapshot was written"
    assert set(metadata["thread_busy"]) == {"read", "features", "score"}
    [after] = [
        event.asset_observation_data.asset_observation.metadata
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    accounted = sum(
        entry.value for key, entry in (written.metadata | after).items() if key.endswith("_seconds")
    )
    seconds = step_seconds(instance, result.run_id, "grid_predictions")
    assert accounted == pytest.approx(seconds, rel=0.1, abs=0.25)  # the step, all of it
    assert 0 <= metadata["whitespace_score_p01"] <= metadata["whitespace_score_p99"] <= 1
    assert "prediction_summary" not in metadata  # the same numbers, as floats that plot
    checks = check_results(result)
    assert checks["input_contract"].passed and checks["output_contract"].passed
    assert checks["output_contract"].metadata["rows_checked"].value == SMALL_ROWS["grid_cells"]


def test_scoring_trusts_a_snapshot_only_under_the_contract_it_was_checked_by(
    small_config: ServingConfig,
    state: LocalState,
    instance: dg.DagsterInstance,
    warehouse: DuckDBWarehouse,
    materialize: Materialize,
) -> None:
    model = small_config.models["store"]
    first = materialize("store")
    [scored] = first.asset_materializations_for_node("store_predictions")
    assert (
        scored.metadata["input_contract"].value == "skipped: checked when the snapshot was written"
    )
    before = warehouse.read_partition(predictions_table(model), PARTITION)

    # The contract narrows after the snapshot was written: a store type it holds is refused.
    held = sorted(set(warehouse.read_partition(features_table(model), PARTITION)["store_type"]))
    store_type = model.features["store_type"].model_copy(update={"values": held[1:]})
    narrower = model.model_copy(update={"features": {**model.features, "store_type": store_type}})
    result = dg.materialize(
        build_model_assets(narrower),
        selection=["store_predictions"],
        partition_key=PARTITION.key,
        resources=resources_for_deployment(small_config, state),
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert f"column 'store_type': isin({held[1:]})" in str(failure.step_failure_data.error)
    after = warehouse.read_partition(predictions_table(model), PARTITION)
    pd.testing.assert_frame_equal(after, before)


def test_a_partition_range_that_selects_nothing_fails_naming_it(
    small_config: ServingConfig, state: LocalState
) -> None:
    # Markets run in config order (IN, ID): this range's ends are reversed.
    result = dg.materialize(
        build_model_assets(small_config.models["store"]),
        tags=partition_range_tags(
            Partition.parse("ID|2026-01-01"), Partition.parse("IN|2026-02-01")
        ),
        resources=resources_for_deployment(small_config, state),
        raise_on_error=False,
    )

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "partition range ID|2026-01-01...IN|2026-02-01 selects no partition" in str(
        failure.step_failure_data.user_failure_data.description
    )


def materialize_all(
    config: ServingConfig, state: LocalState, name: str, only: str | None = None
) -> dg.ExecuteInProcessResult:
    """One run over every partition of a model, as a single-run backfill or the sensor makes."""
    model = config.models[name]
    return dg.materialize(
        build_model_assets(model),
        selection=[only] if only else None,
        tags=all_partitions_tags(model),
        resources=resources_for_deployment(config, state),
        raise_on_error=False,
    )


def mlflow_run_of(state: LocalState, dagster_run_id: str) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(state.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    [run] = client.search_runs(
        [experiment.experiment_id], f"tags.{DAGSTER_RUN_TAG} = '{dagster_run_id}'"
    )
    return run


def test_one_run_scores_every_partition_with_one_model_load(
    small_config: ServingConfig,
    state: LocalState,
    warehouse: DuckDBWarehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads = []
    real_load = ModelRegistry.load
    monkeypatch.setattr(
        ModelRegistry, "load", lambda self, ref: loads.append(ref) or real_load(self, ref)
    )

    result = materialize_all(small_config, state, "store")

    assert result.success
    assert len(loads) == 1
    written = result.asset_materializations_for_node("store_predictions")
    assert sorted(m.partition for m in written) == ALL_STORE_PARTITIONS
    assert {m.metadata["dagster/row_count"].value for m in written} == {SMALL_ROWS["stores"]}
    features = result.asset_materializations_for_node("store_features")
    assert sorted(m.partition for m in features) == ALL_STORE_PARTITIONS
    assert {m.metadata["dagster/row_count"].value for m in features} == {SMALL_ROWS["stores"]}
    assert not any("rows_by_partition" in m.metadata for m in features)
    table = predictions_table(small_config.models["store"])
    assert sorted(p.key for p in warehouse.list_partitions(table)) == ALL_STORE_PARTITIONS
    tracked = mlflow_run_of(state, result.run_id)
    assert tracked.info.status == "FINISHED"
    assert tracked.data.metrics["partitions_scored"] == 4
    assert tracked.data.metrics["rows"] == 4 * SMALL_ROWS["stores"]


def test_checks_are_recorded_per_partition_of_a_run(
    small_config: ServingConfig, state: LocalState
) -> None:
    result = materialize_all(small_config, state, "store")

    assert result.success
    for partition in ALL_STORE_PARTITIONS:
        checks = check_results(result, partition)
        assert {"input_contract", "unmatched_markets", "output_contract"} <= set(checks)
        for contract in ("input_contract", "output_contract"):
            assert checks[contract].passed
            assert checks[contract].metadata["rows_checked"].value == SMALL_ROWS["stores"]
            # Counted by the UI's partition status only while it targets the latest write.
            assert checks[contract].target_materialization_data is not None
        assert checks["unmatched_markets"].metadata["unmatched_rows"].value == 0
    assert check_results(result, partition=None) == {}


def test_a_failed_partition_fails_the_run_without_stopping_the_others(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    assert materialize_all(small_config, state, "store", only="store_features").success
    with duckdb.connect(str(state.warehouse_path)) as connection:
        connection.execute(
            f"DELETE FROM {features_table(small_config.models['store']).qualified_name} "
            "WHERE market = 'ID' AND month = DATE '2026-02-01'"
        )

    result = materialize_all(small_config, state, "store", only="store_predictions")

    assert not result.success
    written = result.asset_materializations_for_node("store_predictions")
    assert sorted(m.partition for m in written) == [
        key for key in ALL_STORE_PARTITIONS if key != "ID|2026-02-01"
    ]
    failure = result.failure_data_for_node("store_predictions")
    assert failure is not None
    assert "ID|2026-02-01" in str(failure.user_failure_data.description)
    table = predictions_table(small_config.models["store"])
    assert Partition.parse("ID|2026-02-01") not in warehouse.list_partitions(table)
    tracked = mlflow_run_of(state, result.run_id)
    assert tracked.info.status == "FAILED"
    assert tracked.data.tags["failed_partitions"] == "ID|2026-02-01"


def test_a_rerun_replaces_the_partition(
    small_config: ServingConfig, warehouse: DuckDBWarehouse, materialize: Materialize
) -> None:
    first, second = materialize("store"), materialize("store")

    rows = warehouse.read_partition(predictions_table(small_config.models["store"]), PARTITION)
    assert len(rows) == SMALL_ROWS["stores"]
    assert set(rows["dagster_run_id"]) == {second.run_id} != {first.run_id}


def test_rescoring_with_a_new_version_keeps_the_replaced_rows_in_history(
    small_config: ServingConfig,
    state: LocalState,
    warehouse: DuckDBWarehouse,
    materialize: Materialize,
) -> None:
    model = small_config.models["store"]
    first = materialize("store")
    scored_by_v1 = warehouse.read_partition(predictions_table(model), PARTITION)
    register_version(model, state, Constant())

    second, rerun = materialize("store"), materialize("store")

    assert first.success and second.success and rerun.success
    history = warehouse.read_partition(history_table(model), PARTITION)
    pd.testing.assert_frame_equal(
        history[scored_by_v1.columns.tolist()].sort_values("store_id", ignore_index=True),
        scored_by_v1.sort_values("store_id", ignore_index=True),
    )
    assert set(history["replaced_by_run_id"]) == {second.run_id}
    rows = warehouse.read_partition(predictions_table(model), PARTITION)
    assert set(rows["model_version"]) == {2} and set(rows["dagster_run_id"]) == {rerun.run_id}


def test_partitions_of_one_model_stay_separate(
    small_config: ServingConfig, warehouse: DuckDBWarehouse, materialize: Materialize
) -> None:
    other = Partition("ID", date(2026, 2, 1))
    for partition in (PARTITION, other):
        assert materialize("store", partition).success

    table = predictions_table(small_config.models["store"])
    assert warehouse.list_partitions(table) == [other, PARTITION]


class NegativeSales(mlflow.pyfunc.PythonModel):
    """A broken store model: every prediction is below the configured minimum of 0."""

    def predict(self, context: object, model_input: pd.DataFrame) -> pd.Series:
        return pd.Series(-1.0, index=model_input.index)


class NaNSales(mlflow.pyfunc.PythonModel):
    def predict(self, context: object, model_input: pd.DataFrame) -> pd.Series:
        return pd.Series(float("nan"), index=model_input.index)


@pytest.mark.parametrize(
    ("broken", "failed_check"), [(NegativeSales(), "greater_than_or_equal_to(0"), (NaNSales(), "")]
)
def test_invalid_model_output_fails_and_keeps_the_old_rows(
    broken: mlflow.pyfunc.PythonModel,
    failed_check: str,
    small_config: ServingConfig,
    state: LocalState,
    warehouse: DuckDBWarehouse,
    materialize: Materialize,
) -> None:
    model = small_config.models["store"]
    assert materialize("store").success
    before = warehouse.read_partition(predictions_table(model), PARTITION)
    register_version(model, state, broken)

    result = materialize("store")

    assert not result.success
    after = warehouse.read_partition(predictions_table(model), PARTITION)
    pd.testing.assert_frame_equal(after, before)
    check = check_results(result)["output_contract"]
    assert not check.passed
    violations = check.metadata["violations"].value
    assert violations[0]["column"] == "sales_potential"
    assert failed_check in violations[0]["check"]
    # Scoring streams: the run stops at the first chunk that fails, and reports that chunk.
    assert violations[0]["rows"] == min(model.chunk_rows, SMALL_ROWS["stores"])
    assert len(violations[0]["sample_keys"]) == 5
    failure = result.failure_data_for_node("store_predictions")
    assert failure is not None
    assert "output contract failed for model 'store', partition IN|2026-01-01" in str(
        failure.user_failure_data.description
    )


def test_a_pinned_run_scores_with_its_version_after_the_alias_moved(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    model = small_config.models["store"]
    register_version(model, state, Constant(), alias="champion")

    pinned = dg.materialize(
        build_model_assets(model),
        partition_key=PARTITION.key,
        resources=resources_for_deployment(small_config, state),
        tags={PINNED_VERSION_TAG: "1", PINNED_ALIAS_TAG: "champion"},
    )

    assert pinned.success
    rows = warehouse.read_partition(predictions_table(model), PARTITION)
    assert set(rows["model_version"]) == {1}
    assert set(rows["model_alias"]) == {"champion"}


def test_versions_are_recorded_with_their_servability(
    small_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> None:
    model = small_config.models["store"]
    register_version(model, state, Constant(), alias=None, drop_features=("months_open",))
    instance.add_dynamic_partitions(model_versions_partitions(model).name, ["1", "2"])

    def record(version: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [build_version_asset(model)],
            partition_key=version,
            resources=resources_for_deployment(small_config, state),
            instance=instance,
        )

    good, bad = record("1"), record("2")

    [first] = good.asset_materializations_for_node("store_model")
    assert first.metadata["aliases"].value == "champion"
    assert first.metadata["servable"].value is True
    assert first.metadata["run_id"].value
    assert first.metadata["signature_inputs"].value["months_open"] == "long"
    # The demo's training metrics on its holdout, one number each, and the logged model.
    assert first.metadata["model_id"].value.startswith("m-")
    assert first.metadata["metric_rmse"].value > 0
    assert first.metadata["metric_mae"].value > 0
    assert 0 < first.metadata["metric_r2"].value <= 1
    assert check_results(good, partition=None)["servable"].passed
    [second] = bad.asset_materializations_for_node("store_model")
    assert second.metadata["servable"].value is False
    assert "months_open" not in second.metadata["signature_inputs"].value
    assert not [key for key in second.metadata if key.startswith("metric_")]  # none logged
    check = check_results(bad, partition=None)["servable"]
    assert not check.passed
    assert "configured feature 'months_open' is not in the signature" in str(
        check.metadata["reason"].value
    )


def test_a_lightgbm_version_is_compiled_when_recorded_and_then_scores_bitwise_equal(
    small_config: ServingConfig,
    state: LocalState,
    instance: dg.DagsterInstance,
    warehouse: DuckDBWarehouse,
    materialize: Materialize,
) -> None:
    grid = small_config.models["grid"]
    own = materialize("grid")
    by_own_predict = warehouse.read_partition(predictions_table(grid), PARTITION)
    # An endpoint already serving the version before it is compiled.
    endpoint = ServedModel(grid, ModelRegistry(state.tracking_uri, allow_pickled_models=True))
    endpoint.refresh()
    assert endpoint.current().compiled is None
    instance.add_dynamic_partitions(model_versions_partitions(grid).name, ["1"])

    recorded = dg.materialize(
        [build_version_asset(grid)],
        partition_key="1",
        resources=resources_for_deployment(small_config, state),
        instance=instance,
    )
    compiled_rows = materialize("grid")

    [version] = recorded.asset_materializations_for_node("grid_model")
    figures = {key: value.value for key, value in version.metadata.items()}
    assert figures["compiled"] == "compiled"
    assert figures["compiled_partition"] == PARTITION.key
    assert figures["compiled_rows_compared"] == SMALL_ROWS["grid_cells"]
    assert figures["compiled_rows_bitwise_equal"] == SMALL_ROWS["grid_cells"]
    assert figures["compiled_max_abs_diff"] == 0.0
    [before] = own.asset_materializations_for_node("grid_predictions")
    [after] = compiled_rows.asset_materializations_for_node("grid_predictions")
    assert before.metadata["scored_with"].value.startswith("the model's own predict")
    assert after.metadata["scored_with"].value.startswith("compiled")
    by_compiled = warehouse.read_partition(predictions_table(grid), PARTITION)
    key = grid.key_columns[0]
    assert np.array_equal(
        by_compiled.sort_values(key)["whitespace_score"].to_numpy(),
        by_own_predict.sort_values(key)["whitespace_score"].to_numpy(),
    )
    # Its next refresh serves the same compiled form, without a restart: bitwise parity.
    endpoint.refresh()
    assert endpoint.current().compiled is not None
    features = warehouse.read_partition(features_table(grid), PARTITION).head(25)
    sent = {name: features[name].to_numpy() for name in [*grid.key_columns, *grid.feature_columns]}
    served = score_rows(grid, endpoint.current(), PARTITION, sent)
    table = by_compiled.set_index(key).loc[served[key]]
    assert served["whitespace_score"].tolist() == table["whitespace_score"].tolist()
    # The session's registry keeps its artifacts in one directory: leave no compiled form
    # behind for the tests that follow.
    client = mlflow.MlflowClient(state.tracking_uri)
    run = client.get_run(client.get_model_version(grid.registered_model, "1").run_id)
    shutil.rmtree(Path(urlparse(run.info.artifact_uri).path) / ARTIFACTS)
