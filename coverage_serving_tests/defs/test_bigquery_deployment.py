"""The same assets, checks and sensors with COVERAGE_SERVING_WAREHOUSE=bigquery, against the
BigQuery emulator: sources and predictions both live in BigQuery."""

import dagster as dg
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import predictions_table
from coverage_serving.definitions import build_definitions, resources_for_deployment
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.defs.partitions import all_partitions_tags
from coverage_serving.demo.runner import write_demo_sources
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import Warehouse
from coverage_serving_tests.conftest import SMALL_ROWS

pytestmark = pytest.mark.integration


@pytest.fixture
def bigquery(bigquery_env: str, small_config: ServingConfig, state: LocalState) -> Warehouse:
    """The BigQuery warehouse of this deployment, with the demo sources loaded into it."""
    resources = resources_for_deployment(small_config, state)
    opened = resources["warehouse"].open()  # type: ignore[attr-defined]
    assert write_demo_sources(opened, small_config, SMALL_ROWS) == 8
    return opened


@pytest.mark.parametrize("name", ["store", "grid"])
def test_both_models_materialise_into_bigquery(
    name: str, small_config: ServingConfig, state: LocalState, bigquery: Warehouse
) -> None:
    model = small_config.models[name]

    result = dg.materialize(
        build_model_assets(model),
        tags=all_partitions_tags(model),
        resources=resources_for_deployment(small_config, state),
    )

    assert result.success
    table = predictions_table(model)
    assert [p.key for p in bigquery.list_partitions(table)] == [
        "ID|2026-01-01",
        "ID|2026-02-01",
        "IN|2026-01-01",
        "IN|2026-02-01",
    ]
    for partition in bigquery.list_partitions(table):
        rows = bigquery.read_partition(table, partition)
        assert len(rows) == rows[model.key_columns[0]].nunique() == SMALL_ROWS[model.source_table]
        assert set(rows["model_version"]) == {1}
        assert set(rows["dagster_run_id"]) == {result.run_id}
    evaluations = result.get_asset_check_evaluations()
    contracts = ("input_contract", "unmatched_markets", "output_contract")
    assert {e.check_name: e.passed for e in evaluations if e.check_name in contracts} == {
        name: True for name in contracts
    }
    # Drift is judged per partition on BigQuery too (the demo data's shift makes some warn).
    drift = {(e.check_name, e.partition) for e in evaluations if e.check_name not in contracts}
    assert {partition for _, partition in drift} == {p.key for p in bigquery.list_partitions(table)}


def test_the_new_data_sensor_reads_bigquery(
    small_config: ServingConfig, state: LocalState, bigquery: Warehouse
) -> None:
    [sensor] = [
        s
        for s in build_definitions(small_config, state).sensors or []
        if s.name == "grid_new_data_sensor"
    ]
    resources = resources_for_deployment(small_config, state)

    with (
        dg.DagsterInstance.ephemeral() as instance,
        dg.build_sensor_context(resources=resources, instance=instance) as context,
    ):
        result = sensor(context)

    assert isinstance(result, dg.SensorResult)
    assert [r.run_key for r in result.run_requests or []] == [
        "grid:data:2026-01-01",
        "grid:data:2026-02-01",
    ]
