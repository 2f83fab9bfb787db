"""A challenger scored in shadow, compared with the champion, and the promotion gate, against a
real registry, a real DuckDB warehouse and the registry sensor tick by tick."""

from dataclasses import replace

import dagster as dg
import mlflow
import pandas as pd
import pytest

from coverage_serving.config import ChallengerConfig, PromotionGate
from coverage_serving.core.served_version import APPROVED_TAG, VERDICT_TAG
from coverage_serving.core.tables import prediction_targets, predictions_table
from coverage_serving.core.tracking import DAGSTER_RUN_TAG, EXPERIMENT
from coverage_serving.defs.names import CheckName
from coverage_serving.defs.tags import PINNED_ALIAS_TAG, PINNED_VERSION_TAG
from coverage_serving.demo.models import train_demo_model
from coverage_serving.partition import Partition
from coverage_serving.registry import experiment_id
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_ROWS
from coverage_serving_tests.defs.sensor_harness import ALL, StoreSensor, ranges, reason
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration

FEBRUARY = "IN|2026-02-01..ID|2026-02-01"  # the last month: what the challenger shadows
SEEN = '{"versions": [1, 2]}'  # a cursor that has recorded both versions: ticks then say why


@pytest.fixture
def gated(sensor: StoreSensor) -> StoreSensor:
    """The store model with a challenger shadowing its last month, and a promotion gate."""
    store = sensor.store.model_copy(
        update={
            "challenger": ChallengerConfig(alias="challenger", last_months=1),
            "promotion_gate": PromotionGate(min_rank_correlation=0.5, max_psi=1.0),
        }
    )
    config = sensor.config.model_copy(update={"models": {**sensor.config.models, "store": store}})
    return replace(sensor, config=config)


def requests_of(result: dg.SensorResult | dg.SkipReason, job: str) -> list[dg.RunRequest]:
    assert isinstance(result, dg.SensorResult)
    return [r for r in result.run_requests or [] if r.job_name == job]


def served_rows(gated: StoreSensor) -> pd.DataFrame:
    warehouse = DuckDBWarehouse(
        lambda: __import__("duckdb").connect(str(gated.state.warehouse_path))
    )
    table = predictions_table(gated.store)
    frames = [warehouse.read_partition(table, p) for p in warehouse.list_partitions(table)]
    return pd.concat(frames).sort_values(["market", "month", "store_id"], ignore_index=True)


def shadow(gated: StoreSensor, version: int) -> dg.ExecuteInProcessResult:
    """Tick, check the tick asks for the challenger's last month in shadow, run it."""
    [request] = requests_of(gated.tick(), "shadow_store")
    assert request.tags[PINNED_VERSION_TAG] == str(version)
    assert request.tags[PINNED_ALIAS_TAG] == "challenger"
    assert request.asset_selection == [dg.AssetKey("store_shadow_predictions")]
    assert (request.run_key or "").startswith(f"store:shadow:v{version}:{FEBRUARY}:")
    return gated.launch(request)


def test_a_challenger_is_scored_in_shadow_and_compared_without_touching_the_served_table(
    gated: StoreSensor,
) -> None:
    before = served_rows(gated)
    version = register_version(gated.store, gated.state, Constant(), alias="challenger")

    result = shadow(gated, version)

    [_, shadow_target] = prediction_targets(gated.store)
    warehouse = DuckDBWarehouse(
        lambda: __import__("duckdb").connect(str(gated.state.warehouse_path))
    )
    assert warehouse.list_partitions(shadow_target.table) == [
        Partition.parse("ID|2026-02-01"),
        Partition.parse("IN|2026-02-01"),
    ]
    shadowed = warehouse.read_partition(shadow_target.table, Partition.parse("IN|2026-02-01"))
    assert len(shadowed) == SMALL_ROWS["stores"] and set(shadowed["model_version"]) == {version}
    pd.testing.assert_frame_equal(served_rows(gated), before)
    evaluations = {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == CheckName.CHALLENGER_COMPARISON
    }
    assert set(evaluations) == {"IN|2026-02-01", "ID|2026-02-01", None}  # None: the run's table
    february = evaluations["IN|2026-02-01"]
    assert not february.passed
    assert february.metadata["compared_rows"].value == SMALL_ROWS["stores"]
    assert february.metadata["rank_correlation"].value == 0.0  # a constant ranks nothing
    assert february.metadata["top_decile_overlap"].value < 0.5  # ties broken by key
    assert "rank correlation 0.000 < min_rank_correlation 0.5" in february.metadata["gate"].value
    tags = (
        mlflow.MlflowClient(gated.state.tracking_uri)
        .get_model_version(gated.store.registered_model, str(version))
        .tags
    )
    assert tags[VERDICT_TAG].startswith(
        "ID|2026-02-01 sales_potential: rank correlation 0.000 < min_rank_correlation 0.5"
    )
    [batch_run] = mlflow.MlflowClient(gated.state.tracking_uri).search_runs(
        [experiment_id(gated.state.tracking_uri, EXPERIMENT)],
        f"tags.{DAGSTER_RUN_TAG} = '{result.run_id}'",
    )
    assert batch_run.data.metrics["shadow_min_rank_correlation"] == 0.0
    plots = sorted(
        artifact.path
        for artifact in mlflow.MlflowClient(gated.state.tracking_uri).list_artifacts(
            batch_run.info.run_id, "comparison"
        )
    )
    assert plots == ["comparison/comparison_ID_2026-02.png", "comparison/comparison_IN_2026-02.png"]
    assert reason(gated.tick(SEEN)).endswith(
        f"store shadow: 2 partitions on v{version} = @challenger"
    )


def test_the_gate_holds_a_failed_challenger_back_until_a_person_approves_it(
    gated: StoreSensor,
) -> None:
    version = register_version(gated.store, gated.state, Constant(), alias="challenger")
    shadow(gated, version)
    client = mlflow.MlflowClient(gated.state.tracking_uri)
    name = gated.store.registered_model
    client.set_registered_model_alias(name, "champion", str(version))

    held = gated.tick(SEEN)

    assert requests_of(held, "score_store") == []
    assert "held by the promotion gate: its shadow comparison failed: ID|2026-02-01" in reason(held)
    assert f"tag version {version} with {APPROVED_TAG}" in reason(held)

    client.set_model_version_tag(name, str(version), APPROVED_TAG, "ana: constant on purpose")
    approved = gated.tick(SEEN)

    [rescoring] = requests_of(approved, "score_store")
    assert ranges(approved) == [ALL]
    assert rescoring.tags[PINNED_VERSION_TAG] == str(version)

    # Back to version 1, which served before: no gate.
    client.set_registered_model_alias(name, "champion", "1")
    assert "held" not in reason(gated.tick(SEEN))


def test_a_good_challenger_passes_and_is_rescored_when_it_becomes_champion(
    gated: StoreSensor,
) -> None:
    version = train_demo_model(gated.store, gated.state.tracking_uri, "challenger")
    shadow(gated, version)
    client = mlflow.MlflowClient(gated.state.tracking_uri)
    name = gated.store.registered_model
    assert client.get_model_version(name, str(version)).tags[VERDICT_TAG] == "passed"

    client.set_registered_model_alias(name, "champion", str(version))
    [rescoring] = requests_of(gated.tick(), "score_store")

    assert rescoring.tags[PINNED_VERSION_TAG] == str(version)
