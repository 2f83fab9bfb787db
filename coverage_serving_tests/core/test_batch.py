"""The two batch steps on a real DuckDB file and a real sqlite MLflow registry, without Dagster:
a source partition becomes a feature snapshot, the snapshot a prediction partition with the
lineage of its rows; a step that fails leaves its table as it was."""

import time
from collections.abc import Callable
from datetime import date
from typing import Any

import mlflow
import pandas as pd
import pytest

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.core.batch import StepResult, refresh_features, score_into_table
from coverage_serving.core.contracts import ContractViolation
from coverage_serving.core.monitoring import ProfileStore, Reference, StoredProfile
from coverage_serving.core.profile import NumericProfile, Profile
from coverage_serving.core.served_version import load_served_model
from coverage_serving.core.tables import (
    features_table,
    history_table,
    predictions_table,
    source_table,
)
from coverage_serving.lineage import RUN_ID_COLUMN, VERSION_COLUMN
from coverage_serving.partition import Partition
from coverage_serving.registry import LoadedModel, ModelRegistry
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import TableSpec, Warehouse
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration

PARTITION = Partition("IN", date(2026, 1, 1))
LINEAGE = ["model_name", VERSION_COLUMN, "model_alias", "model_run_id", RUN_ID_COLUMN]


class Negative(mlflow.pyfunc.PythonModel):
    """Predictions below the store model's configured minimum of 0."""

    def predict(self, context: object, model_input: pd.DataFrame) -> pd.Series:
        return pd.Series(-1.0, index=model_input.index)


@pytest.fixture
def store(small_config: ServingConfig) -> ModelConfig:
    return small_config.models["store"]


def champion(state: LocalState, model: ModelConfig) -> LoadedModel:
    return load_served_model(ModelRegistry(state.tracking_uri, allow_pickled_models=True), model)


def by_key(warehouse: Warehouse, table: TableSpec, model: ModelConfig) -> pd.DataFrame:
    return warehouse.read_partition(table, PARTITION).sort_values(
        model.key_columns, ignore_index=True
    )


def scored_by_the_champion(
    warehouse: Warehouse, state: LocalState, store: ModelConfig
) -> pd.DataFrame:
    """Both steps run once ("run-1", "run-2") by the champion: the predictions they wrote."""
    refresh_features(warehouse, store, PARTITION, "run-1")
    score_into_table(warehouse, store, champion(state, store), PARTITION, "run-2")
    return by_key(warehouse, predictions_table(store), store)


def test_refresh_features_snapshots_the_source_partition(
    warehouse: Warehouse, store: ModelConfig
) -> None:
    result = refresh_features(warehouse, store, PARTITION, "run-1")

    features = by_key(warehouse, features_table(store), store)
    source = by_key(warehouse, source_table(store), store)[features.columns]
    assert result.rows == len(features) == 300
    pd.testing.assert_frame_equal(features, source, check_dtype=False)
    assert warehouse.list_partitions(features_table(store)) == [PARTITION]


def test_score_into_table_writes_one_prediction_per_feature_row_with_its_lineage(
    warehouse: Warehouse, state: LocalState, store: ModelConfig
) -> None:
    refresh_features(warehouse, store, PARTITION, "run-1")
    model = champion(state, store)

    result = score_into_table(warehouse, store, model, PARTITION, "run-2")

    predictions = by_key(warehouse, predictions_table(store), store)
    features = by_key(warehouse, features_table(store), store)
    assert result.rows == len(predictions) == len(features)
    assert predictions["store_id"].tolist() == features["store_id"].tolist()
    assert predictions["sales_potential"].between(0, 1_000_000).all()
    assert predictions[LINEAGE].drop_duplicates().to_dict("records") == [
        {
            "model_name": "coverage_store_model",
            VERSION_COLUMN: model.ref.version,
            "model_alias": "champion",
            "model_run_id": model.ref.run_id,
            RUN_ID_COLUMN: "run-2",
        }
    ]
    assert predictions["scored_at"].nunique() == 1  # one scoring time for the partition
    assert result.details[VERSION_COLUMN] == model.ref.version


def test_a_checked_snapshot_is_scored_into_the_same_rows_as_one_checked_again(
    warehouse: Warehouse, state: LocalState, store: ModelConfig
) -> None:
    # A checked snapshot's keys are carried to the write in Arrow, never converted to objects.
    refresh_features(warehouse, store, PARTITION, "run-1")
    model = champion(state, store)
    rows = {}
    for checked in (False, True):
        score_into_table(warehouse, store, model, PARTITION, "run-2", snapshot_checked=checked)
        rows[checked] = by_key(warehouse, predictions_table(store), store).drop(columns="scored_at")

    pd.testing.assert_frame_equal(rows[True], rows[False])


def timed(step: Callable[[], StepResult]) -> tuple[StepResult, float]:
    """The step's result and its wall time, measured around the call."""
    start = time.perf_counter()
    result = step()
    return result, time.perf_counter() - start


def assert_accounts_for(result: StepResult, seconds: float) -> None:
    """The step's `*_seconds` add up to its wall time: none is missing, none counted twice."""
    accounted = sum(result.timings.values())
    assert all(key.endswith("_seconds") for key in result.timings)
    assert accounted == pytest.approx(seconds, rel=0.1, abs=0.02), result.timings


def test_the_timings_of_both_steps_add_up_to_their_wall_time(
    warehouse: Warehouse, state: LocalState, store: ModelConfig
) -> None:
    # Chunks of 50 rows: the timeline alternates between waiting for a chunk and writing it.
    chunked = store.model_copy(update={"chunk_rows": 50})
    features, features_seconds = timed(
        lambda: refresh_features(warehouse, chunked, PARTITION, "run-1")
    )
    loaded = champion(state, store)
    scored, scoring_seconds = timed(
        lambda: score_into_table(
            warehouse, chunked, loaded, PARTITION, "run-2", snapshot_checked=True
        )
    )

    assert_accounts_for(features, features_seconds)
    assert list(features.timings) == [
        "unmatched_markets_seconds",
        "write_seconds",
        "waiting_for_input_seconds",
        "verify_seconds",
        "swap_seconds",
    ]
    assert set(features.busy) == {"read", "validate"}
    assert_accounts_for(scored, scoring_seconds)
    assert list(scored.timings) == [
        "baselines_seconds",
        "write_seconds",
        "waiting_for_scores_seconds",
        "verify_seconds",
        "swap_seconds",
        "profile_write_seconds",
        "summary_seconds",
    ]
    assert set(scored.busy) == {"read", "features", "score"}
    assert scored.details["input_contract"] == "skipped: checked when the snapshot was written"


def test_a_failing_features_step_leaves_the_snapshot_unchanged(
    warehouse: Warehouse, store: ModelConfig
) -> None:
    refresh_features(warehouse, store, PARTITION, "run-1")
    snapshot = by_key(warehouse, features_table(store), store)
    source = warehouse.read_partition(source_table(store), PARTITION)
    source.loc[len(source) - 1, "store_type"] = "hypermarket"  # not a configured value, last
    warehouse.replace_partition(source_table(store), PARTITION, source)

    with pytest.raises(ContractViolation, match="store_type"):
        refresh_features(warehouse, store, PARTITION, "run-2")

    pd.testing.assert_frame_equal(by_key(warehouse, features_table(store), store), snapshot)


def test_a_failing_scoring_step_leaves_predictions_and_history_unchanged(
    warehouse: Warehouse, state: LocalState, store: ModelConfig
) -> None:
    served = scored_by_the_champion(warehouse, state, store)
    register_version(store, state, Negative())  # the new champion breaks the output contract

    with pytest.raises(ContractViolation, match="sales_potential"):
        score_into_table(warehouse, store, champion(state, store), PARTITION, "run-3")

    pd.testing.assert_frame_equal(by_key(warehouse, predictions_table(store), store), served)
    assert warehouse.list_partitions(history_table(store)) == []


def test_a_rescore_by_another_version_keeps_the_replaced_rows_in_history(
    warehouse: Warehouse, state: LocalState, store: ModelConfig
) -> None:
    replaced = scored_by_the_champion(warehouse, state, store)
    version = register_version(store, state, Constant())

    score_into_table(warehouse, store, champion(state, store), PARTITION, "run-3")

    predictions = by_key(warehouse, predictions_table(store), store)
    history = by_key(warehouse, history_table(store), store)
    assert set(predictions[VERSION_COLUMN]) == {version}
    assert (predictions["sales_potential"] == 100.0).all()
    pd.testing.assert_frame_equal(history[replaced.columns], replaced)
    assert set(history["replaced_by_run_id"]) == {"run-3"}


class CountedReads:
    """A warehouse that counts its reads of a table."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse, self.reads = warehouse, 0

    def __getattr__(self, name: str) -> Any:
        if name in ("list_partitions", "read_partition"):
            self.reads += 1
        return getattr(self.warehouse, name)


def test_a_profile_store_reads_each_profile_once_until_it_writes(
    warehouse: Warehouse, store: ModelConfig
) -> None:
    counted = CountedReads(warehouse)
    profiles = ProfileStore(counted, store)  # type: ignore[arg-type]  # a Warehouse by proxy
    numeric = Profile(10, {"x": NumericProfile((1.0,), (5, 5))})
    reference = Reference(None, "this partition")
    profiles.write(StoredProfile(PARTITION, 1, numeric), reference, "run-1", 10)

    first = [profiles.read(PARTITION), *profiles.market(PARTITION.market)]
    reads = counted.reads
    again = [profiles.read(PARTITION), *profiles.market(PARTITION.market)]

    assert first == again == [StoredProfile(PARTITION, 1, numeric)] * 2
    assert counted.reads == reads == 2  # the partitions listed once, the profile read once
    profiles.write(StoredProfile(PARTITION, 2, numeric), reference, "run-2", 10)
    assert profiles.read(PARTITION) == StoredProfile(PARTITION, 2, numeric)
