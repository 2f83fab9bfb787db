"""The new-data sensor against a real DuckDB warehouse: which landed partitions it scores, in
how many runs."""

from datetime import date

import dagster as dg
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import source_table
from coverage_serving.definitions import build_definitions, resources_for_deployment
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.defs.new_data import new_data_sensor_name
from coverage_serving.defs.partitions import all_partitions_tags
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse

pytestmark = pytest.mark.integration


def tick(config: ServingConfig, state: LocalState) -> dg.SensorResult | dg.SkipReason:
    """One evaluation of the store model's new-data sensor."""
    name = new_data_sensor_name(config.models["store"])
    [sensor] = [s for s in build_definitions(config, state).sensors or [] if s.name == name]
    with dg.build_sensor_context(resources=resources_for_deployment(config, state)) as context:
        return sensor(context)


def requests(result: dg.SensorResult | dg.SkipReason) -> list[tuple]:
    assert isinstance(result, dg.SensorResult)
    return [(r.run_key, r.partition_key, dict(r.tags)) for r in result.run_requests or []]


def month_run(month: str) -> tuple:
    return (
        f"store:data:{month}",
        None,
        {
            "dagster/asset_partition_range_start": f"IN|{month}",
            "dagster/asset_partition_range_end": f"ID|{month}",
        },
    )


def score(config: ServingConfig, state: LocalState, partition_key: str | None = None) -> None:
    model = config.models["store"]
    result = dg.materialize(
        build_model_assets(model),
        partition_key=partition_key,
        tags=None if partition_key else all_partitions_tags(model),
        resources=resources_for_deployment(config, state),
    )
    assert result.success


def test_months_that_landed_in_every_market_are_scored_one_run_each(
    small_config: ServingConfig, state: LocalState
) -> None:
    assert requests(tick(small_config, state)) == [
        month_run("2026-01-01"),
        month_run("2026-02-01"),
    ]


def test_a_market_that_landed_alone_is_scored_alone(
    small_config: ServingConfig, state: LocalState
) -> None:
    score(small_config, state, "IN|2026-01-01")

    assert requests(tick(small_config, state)) == [
        ("store:data:ID|2026-01-01", "ID|2026-01-01", {}),
        month_run("2026-02-01"),
    ]


def test_nothing_is_requested_once_everything_is_scored(
    small_config: ServingConfig, state: LocalState
) -> None:
    score(small_config, state)

    result = tick(small_config, state)

    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == "no new source partitions"


def test_a_partition_outside_the_config_is_named_not_scored(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    score(small_config, state)
    table = source_table(small_config.models["store"])
    landed = warehouse.read_partition(table, Partition("IN", date(2026, 1, 1)))
    warehouse.replace_partition(
        table, Partition("BR", date(2026, 1, 1)), landed.assign(market="BR")
    )

    result = tick(small_config, state)

    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == (
        "no new source partitions; not configured, so not scored: BR|2026-01-01"
    )
