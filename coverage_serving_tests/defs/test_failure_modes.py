"""Failure modes seen through Dagster: the run fails, the UI gets structured metadata, the
tables keep what they held; and the quarantine policy. Real DuckDB file, real sqlite registry."""

import uuid
from datetime import date

import dagster as dg
import duckdb
import mlflow
import pandas as pd
import pytest

from coverage_serving.config import InvalidRows, ModelConfig, ServingConfig, UnmatchedMarkets
from coverage_serving.core.tables import (
    features_table,
    predictions_table,
    rejected_table,
    source_table,
)
from coverage_serving.core.tracking import ENDED_TAG, BatchRun, start_batch_run
from coverage_serving.definitions import resources_for_deployment
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.demo.emulator import free_port
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelVersionRef
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_ROWS
from coverage_serving_tests.defs.test_assets import check_results, mlflow_run_of

pytestmark = pytest.mark.integration

PARTITION = Partition("IN", date(2026, 1, 1))
BAD_KEYS = ["S-IN-000003", "S-IN-000007"]
LINEAGE_OF_A_RUN = ["scored_at", "dagster_run_id"]


def score(
    model: ModelConfig, config: ServingConfig, state: LocalState, partition: str = PARTITION.key
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_model_assets(model),
        partition_key=partition,
        resources=resources_for_deployment(config, state),
        raise_on_error=False,
    )


def corrupt_source(state: LocalState, model: ModelConfig, assignment: str) -> None:
    """Set `assignment` on the BAD_KEYS rows of the partition in the source table."""
    with duckdb.connect(str(state.warehouse_path)) as connection:
        connection.execute(
            f"UPDATE {source_table(model).qualified_name} SET {assignment} "
            "WHERE market = ? AND month = ? AND store_id IN (?, ?)",
            [PARTITION.market, PARTITION.month, *BAD_KEYS],
        )


def quarantining(model: ModelConfig, max_fraction: float) -> ModelConfig:
    return model.model_copy(
        update={"invalid_rows": InvalidRows.QUARANTINE, "max_rejected_fraction": max_fraction}
    )


def alter_source(state: LocalState, model: ModelConfig, *statements: str) -> None:
    """Run statements on the source table, named `{source}` in them."""
    with duckdb.connect(str(state.warehouse_path)) as connection:
        for statement in statements:
            connection.execute(statement.format(source=source_table(model).qualified_name))


def misspell_markets(state: LocalState, model: ModelConfig) -> None:
    """Two of the partition's rows get market 'IN ' (a trailing space), one gets 'in'."""
    corrupt_source(state, model, "market = 'IN '")
    alter_source(
        state,
        model,
        "UPDATE {source} SET market = 'in' WHERE market = 'IN' AND month = '2026-01-01' "
        "AND store_id = 'S-IN-000005'",
    )


def failure_description(result: dg.ExecuteInProcessResult, node: str) -> str:
    failure = result.failure_data_for_node(node)
    assert failure is not None and failure.user_failure_data is not None
    return str(failure.user_failure_data.description)


@pytest.fixture
def scored_before(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> pd.DataFrame:
    """The store partition scored once: what a failed run must leave in place."""
    model = small_config.models["store"]
    assert score(model, small_config, state).success
    return warehouse.read_partition(predictions_table(model), PARTITION)


def partition_tables(warehouse: DuckDBWarehouse, model: ModelConfig) -> list[pd.DataFrame]:
    """What the feature and prediction tables hold for PARTITION."""
    return [
        warehouse.read_partition(table, PARTITION)
        for table in (features_table(model), predictions_table(model))
    ]


@pytest.fixture
def tables_before(
    small_config: ServingConfig, warehouse: DuckDBWarehouse, scored_before: pd.DataFrame
) -> list[pd.DataFrame]:
    return partition_tables(warehouse, small_config.models["store"])


def assert_unchanged(
    warehouse: DuckDBWarehouse, model: ModelConfig, before: list[pd.DataFrame]
) -> None:
    for after, held in zip(partition_tables(warehouse, model), before, strict=True):
        pd.testing.assert_frame_equal(after, held)


def test_an_unseen_category_fails_naming_column_and_keys(
    small_config: ServingConfig,
    state: LocalState,
    warehouse: DuckDBWarehouse,
    scored_before: pd.DataFrame,
) -> None:
    model = small_config.models["store"]
    corrupt_source(state, model, "store_type = 'hypermarket'")

    result = score(model, small_config, state)

    assert not result.success
    [violation] = check_results(result)["input_contract"].metadata["violations"].value
    assert violation["column"] == "store_type" and violation["check"].startswith("isin(")
    assert violation["sample_keys"] == BAD_KEYS
    failure = result.failure_data_for_node("store_features")
    assert failure is not None and failure.user_failure_data is not None
    assert failure.user_failure_data.metadata["partition"].value == PARTITION.key
    assert "model 'store', partition IN|2026-01-01: column 'store_type'" in str(
        failure.user_failure_data.description
    )
    after = warehouse.read_partition(predictions_table(model), PARTITION)
    pd.testing.assert_frame_equal(after, scored_before)


def test_a_missing_alias_fails_the_run_naming_model_partition_and_alias(
    small_config: ServingConfig,
    state: LocalState,
    warehouse: DuckDBWarehouse,
    scored_before: pd.DataFrame,
) -> None:
    model = small_config.models["store"]
    mlflow.MlflowClient(state.tracking_uri).delete_registered_model_alias(
        model.registered_model, "champion"
    )

    result = score(model, small_config, state)

    assert not result.success
    failure = result.failure_data_for_node("store_predictions")
    assert failure is not None and failure.user_failure_data is not None
    assert failure.user_failure_data.metadata["error"].value == "RegistryError"
    assert failure.user_failure_data.metadata["partitions"].value == PARTITION.key
    assert "alias 'champion' cannot be resolved" in str(failure.user_failure_data.description)
    after = warehouse.read_partition(predictions_table(model), PARTITION)
    pd.testing.assert_frame_equal(after, scored_before)


def test_quarantine_scores_the_valid_rows_and_records_the_rejected_ones(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    model = quarantining(small_config.models["store"], max_fraction=0.05)
    corrupt_source(state, model, "latitude = 'NaN'::DOUBLE")

    result = score(model, small_config, state)

    assert result.success
    scored = warehouse.read_partition(predictions_table(model), PARTITION)
    assert len(scored) == SMALL_ROWS["stores"] - 2
    assert not scored["store_id"].isin(BAD_KEYS).any()
    rejected = warehouse.read_partition(rejected_table(model), PARTITION)
    assert sorted(rejected["store_id"]) == BAD_KEYS
    assert set(rejected["failed_column"]) == {"latitude"}
    assert set(rejected["reason"]) == {"not_nullable: nan"}
    assert set(rejected["dagster_run_id"]) == {result.run_id}
    check = check_results(result)["rejected_rows"]
    assert check.passed and check.metadata["rejected_rows"].value == 2
    [features] = result.asset_materializations_for_node("store_features")
    assert features.metadata["rejected_rows"].value == 2

    # The source is fixed: a rerun scores every row and clears the partition's rejections.
    corrupt_source(state, model, "latitude = 1.5")
    assert score(model, small_config, state).success
    assert (
        len(warehouse.read_partition(predictions_table(model), PARTITION)) == SMALL_ROWS["stores"]
    )
    assert warehouse.read_partition(rejected_table(model), PARTITION).empty


def test_quarantine_beyond_the_allowed_fraction_fails_and_writes_nothing(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    model = quarantining(small_config.models["store"], max_fraction=0.005)  # 2 of 300 is 0.7%
    assert score(model, small_config, state).success
    features_before = warehouse.read_partition(features_table(model), PARTITION)
    corrupt_source(state, model, "income_index = 'Infinity'::DOUBLE")

    result = score(model, small_config, state)

    assert not result.success
    check = check_results(result)["rejected_rows"]
    assert not check.passed
    assert check.metadata["rejected_rows"].value == 2
    assert check.metadata["rejected_fraction"].value == pytest.approx(2 / SMALL_ROWS["stores"])
    failure = result.failure_data_for_node("store_features")
    assert failure is not None and failure.user_failure_data is not None
    metadata = failure.user_failure_data.metadata
    assert metadata["rejected_rows"].value == 2
    assert metadata["sample_keys"].value == BAD_KEYS
    assert "more than max_rejected_fraction 0.5%" in str(failure.user_failure_data.description)
    after = warehouse.read_partition(features_table(model), PARTITION)
    pd.testing.assert_frame_equal(after, features_before)
    assert warehouse.read_partition(rejected_table(model), PARTITION).empty


@pytest.mark.parametrize("name", ["store", "grid"])
def test_reruns_give_identical_rows_apart_from_run_lineage(
    name: str, small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    model = small_config.models[name]
    tables = []
    for _ in range(3):
        assert score(model, small_config, state).success
        rows = warehouse.read_partition(predictions_table(model), PARTITION)
        tables.append(rows.drop(columns=LINEAGE_OF_A_RUN).sort_values(model.key_columns))

    for rerun in tables[1:]:
        pd.testing.assert_frame_equal(
            rerun.reset_index(drop=True), tables[0].reset_index(drop=True)
        )


@pytest.mark.parametrize(
    "key",
    [
        "IN'; DROP TABLE serving.store_predictions; --|2026-01-01",
        "IN|2026-01-01' OR '1'='1",
        "XX|2026-01-01",  # a well-formed key of a market the config does not have
        "IN|2031-01-01",
    ],
)
def test_a_partition_key_outside_the_partition_set_is_refused(
    key: str, small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    model = small_config.models["store"]
    assert score(model, small_config, state).success
    before = warehouse.list_partitions(predictions_table(model))

    with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition"):
        dg.materialize(
            build_model_assets(model),
            partition_key=key,
            resources=resources_for_deployment(small_config, state),
        )

    assert warehouse.list_partitions(predictions_table(model)) == before


def test_a_password_in_the_registry_uri_never_reaches_logs_or_metadata(
    small_config: ServingConfig,
    state: LocalState,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = "hunter2-do-not-log"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://svc:{secret}@127.0.0.1:{free_port()}")
    config = small_config.model_copy(
        update={"registry": small_config.registry.model_copy(update={"request_retries": 0})}
    )
    model = config.models["store"]

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            build_model_assets(model),
            partition_key=PARTITION.key,
            resources=resources_for_deployment(config, state),
            instance=instance,
            raise_on_error=False,
        )
        recorded = [str(event) for event in instance.all_logs(result.run_id)]
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        snapshot = str(instance.get_job_snapshot(run.job_snapshot_id))

    assert not result.success
    failure = result.failure_data_for_node("store_predictions")
    assert failure is not None and failure.user_failure_data is not None
    description = str(failure.user_failure_data.description)
    assert "model 'store', partition(s) IN|2026-01-01: nothing was scored" in description
    assert "did not answer (retried 0 time(s)" in description
    captured = capfd.readouterr()
    for text in [*recorded, snapshot, captured.out, captured.err]:
        assert secret not in text
    assert any("svc:***@" in text or "//***@" in text for text in recorded)


def test_rows_of_no_configured_market_are_a_warning_with_their_values_and_counts(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    model = small_config.models["store"]
    misspell_markets(state, model)

    result = score(model, small_config, state)

    assert result.success
    check = check_results(result)["unmatched_markets"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["unmatched_rows"].value == 3
    assert check.metadata["unmatched_by_month"].value == {"2026-01-01": {"'IN '": 2, "'in'": 1}}
    assert check.description == (
        "3 row(s) of source.stores have a market that is none of IN, ID, so no partition reads "
        "them: 2026-01-01: 2 x 'IN ', 1 x 'in'"
    )
    [features] = result.asset_materializations_for_node("store_features")
    assert features.metadata["unmatched_rows"].value == 3
    scored = warehouse.read_partition(predictions_table(model), PARTITION)
    assert len(scored) == SMALL_ROWS["stores"] - 3


def test_rows_of_no_configured_market_fail_their_month_when_configured_and_write_nothing(
    small_config: ServingConfig,
    state: LocalState,
    warehouse: DuckDBWarehouse,
    tables_before: list[pd.DataFrame],
) -> None:
    model = small_config.models["store"].model_copy(
        update={"unmatched_markets": UnmatchedMarkets.FAIL}
    )
    misspell_markets(state, model)

    for partition in (PARTITION.key, "ID|2026-01-01"):  # the rows could be any market's
        result = score(model, small_config, state, partition)

        assert not result.success
        check = check_results(result, partition)["unmatched_markets"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["unmatched_rows"].value == 3
        assert failure_description(result, "store_features") == (
            f"model 'store', partition {partition}: 3 row(s) of source.stores have a market "
            "that is none of IN, ID, so no partition reads them: 2026-01-01: 2 x 'IN ', "
            "1 x 'in'; nothing was written (unmatched_markets: fail)"
        )
    assert_unchanged(warehouse, model, tables_before)
    # Another month is clean: its partitions are written.
    assert score(model, small_config, state, "IN|2026-02-01").success


def column_held_as(held: str) -> tuple[str, str]:
    return (
        f'ALTER TABLE {{source}} RENAME COLUMN store_id TO "{held}"',
        f"table source.stores has no column(s) ['store_id']; 'store_id' exists as {held!r} "
        "(column names must match the config exactly)",
    )


def month_stored_as(sql_type: str, shown: str) -> tuple[str, str]:
    return (
        f"ALTER TABLE {{source}} ALTER month TYPE {sql_type}",
        f"table source.stores: column 'month' is {shown}, expected DATE (the first day of the "
        "month; store it as DATE, e.g. CAST(month AS DATE))",
    )


@pytest.mark.parametrize(
    ("alteration", "complaint"),
    [
        column_held_as("Store_ID"),
        column_held_as("STORE_ID"),
        column_held_as("store_id "),
        month_stored_as("TIMESTAMP", "TIMESTAMP"),
        month_stored_as("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"),
    ],
)
def test_a_source_table_unlike_the_config_fails_naming_model_partition_and_column(
    alteration: str,
    complaint: str,
    small_config: ServingConfig,
    state: LocalState,
    warehouse: DuckDBWarehouse,
    tables_before: list[pd.DataFrame],
) -> None:
    model = small_config.models["store"]
    alter_source(state, model, alteration)

    result = score(model, small_config, state)

    assert not result.success
    assert failure_description(result, "store_features") == (
        f"model 'store', partition IN|2026-01-01: {complaint}"
    )
    assert_unchanged(warehouse, model, tables_before)


def _dagster_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    run = dg.DagsterRun(job_name="score_store", run_id=str(uuid.uuid4()), status=status)
    return instance.add_run(run).run_id


def test_a_batch_whose_process_died_is_ended_in_mlflow_by_the_next_run(
    small_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> None:
    """A killed batch never ends its MLflow run; the next batch ends it once Dagster says its
    run is over, and leaves runs in progress, or of another Dagster instance, alone."""
    model = small_config.models["store"]
    ref = ModelVersionRef("coverage_store_model", 1, "champion", None, "models:/m-1")
    died = _dagster_run(instance, dg.DagsterRunStatus.FAILURE)
    in_progress = _dagster_run(instance, dg.DagsterRunStatus.STARTED)
    elsewhere = str(uuid.uuid4())
    for dagster_run_id in (died, in_progress, elsewhere):
        start_batch_run(state.tracking_uri, BatchRun("store", ref, dagster_run_id))

    result = dg.materialize(
        build_model_assets(model),
        partition_key=PARTITION.key,
        resources=resources_for_deployment(small_config, state),
        instance=instance,
    )

    ended = mlflow_run_of(state, died)
    assert ended.info.status == "KILLED"
    assert ended.data.tags[ENDED_TAG] == (
        f"Dagster run {died} ended (FAILURE) before it recorded this batch; ended by run "
        f"{result.run_id}"
    )
    assert mlflow_run_of(state, in_progress).info.status == "RUNNING"
    assert mlflow_run_of(state, elsewhere).info.status == "RUNNING"
    assert mlflow_run_of(state, result.run_id).info.status == "FINISHED"
