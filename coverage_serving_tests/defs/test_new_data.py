"""The new-data sensor against a real DuckDB warehouse: which landed partitions it scores, in
how many runs."""

from datetime import date

import dagster as dg
import duckdb
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import source_table
from coverage_serving.definitions import build_definitions, resources_for_deployment
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.defs.attempts import MAX_ATTEMPTS, RUN_KEY_TAG
from coverage_serving.defs.new_data import new_data_sensor_name
from coverage_serving.defs.partitions import all_partitions_tags
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration


def tick(
    config: ServingConfig, state: LocalState, instance: dg.DagsterInstance | None = None
) -> dg.SensorResult | dg.SkipReason:
    """One evaluation of the store model's new-data sensor."""
    name = new_data_sensor_name(config.models["store"])
    [sensor] = [s for s in build_definitions(config, state).sensors or [] if s.name == name]
    resources = resources_for_deployment(config, state)
    with (
        dg.DagsterInstance.ephemeral() as ephemeral,
        dg.build_sensor_context(resources=resources, instance=instance or ephemeral) as context,
    ):
        return sensor(context)


def requests(result: dg.SensorResult | dg.SkipReason) -> list[tuple]:
    assert isinstance(result, dg.SensorResult)
    return [(r.run_key, r.partition_key, dict(r.tags)) for r in result.run_requests or []]


def skip_message(result: dg.SensorResult | dg.SkipReason) -> str | None:
    assert isinstance(result, dg.SkipReason)
    return result.skip_message


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


def test_a_month_whose_run_failed_is_requested_again_up_to_three_times_then_named(
    small_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> None:
    keys, failed = [], []
    for attempt in range(MAX_ATTEMPTS):
        result = tick(small_config, state, instance)
        assert isinstance(result, dg.SensorResult)
        keys.append([request.run_key for request in result.run_requests or []])
        # Each run failed (killed, say): Dagster would not launch the same key again.
        for number, run_key in enumerate(keys[-1]):
            run_id = f"{attempt}{number}".ljust(32, "0")
            run = dg.DagsterRun(
                job_name="score_store",
                run_id=run_id,
                status=dg.DagsterRunStatus.FAILURE,
                tags={RUN_KEY_TAG: run_key or ""},
            )
            failed.append(instance.add_run(run).run_id)

    given_up = tick(small_config, state, instance)

    january, february = "store:data:2026-01-01", "store:data:2026-02-01"
    assert keys == [
        [january, february],
        [f"{january}:retry1", f"{february}:retry1"],
        [f"{january}:retry2", f"{february}:retry2"],
    ]
    assert skip_message(given_up) == (
        f"store: scoring new data ({january}) failed 3 times (runs {', '.join(failed[0::2])}), "
        "not tried again: see their logs, then re-execute the last one; "
        f"store: scoring new data ({february}) failed 3 times (runs {', '.join(failed[1::2])}), "
        "not tried again: see their logs, then re-execute the last one"
    )


def test_new_data_waits_while_the_served_alias_cannot_score_it_and_says_why(
    small_config: ServingConfig, state: LocalState
) -> None:
    store = small_config.models["store"]
    register_version(store, state, Constant(), alias="champion", drop_features=("months_open",))

    waiting = skip_message(tick(small_config, state))

    assert waiting is not None
    assert waiting.startswith(
        "new partitions wait (ID|2026-01-01, ID|2026-02-01, IN|2026-01-01, IN|2026-02-01): "
        "model 'store' (coverage_store_model version 2) cannot be served: configured feature "
        "'months_open' is not in the signature"
    )


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

    assert skip_message(tick(small_config, state)) == "no new source partitions"


def test_partitions_outside_the_config_are_named_not_scored(
    small_config: ServingConfig, state: LocalState, warehouse: DuckDBWarehouse
) -> None:
    score(small_config, state)
    table = source_table(small_config.models["store"])
    landed = warehouse.read_partition(table, Partition("IN", date(2026, 1, 1)))
    for market, month in [("BR", date(2026, 1, 1)), ("IN", date(2025, 12, 1))]:
        warehouse.replace_partition(
            table, Partition(market, month), landed.assign(market=market, month=month)
        )

    assert skip_message(tick(small_config, state)) == (
        "no new source partitions; not configured, so not scored: IN|2025-12-01; 300 row(s) of "
        "source.stores have a market that is none of IN, ID, so no partition reads them: "
        "2026-01-01: 300 x 'BR'"
    )


def misspell_markets(state: LocalState) -> None:
    with duckdb.connect(str(state.warehouse_path)) as connection:
        connection.execute(
            "UPDATE source.stores SET market = 'IN ' WHERE market = 'IN' "
            "AND month = '2026-02-01' AND store_id IN ('S-IN-000001', 'S-IN-000002')"
        )


UNMATCHED = (
    "2 row(s) of source.stores have a market that is none of IN, ID, so no partition reads "
    "them: 2026-02-01: 2 x 'IN '"
)


def test_rows_of_no_configured_market_are_named_while_the_others_are_scored(
    small_config: ServingConfig, state: LocalState, capfd: pytest.CaptureFixture[str]
) -> None:
    misspell_markets(state)

    result = tick(small_config, state)

    # No run for 'IN ': only the configured partitions are requested; the tick's log says why.
    assert requests(result) == [month_run("2026-01-01"), month_run("2026-02-01")]
    assert f"WARNING - {UNMATCHED}" in capfd.readouterr().err

    score(small_config, state)
    assert skip_message(tick(small_config, state)) == f"no new source partitions; {UNMATCHED}"


@pytest.mark.parametrize(
    ("alteration", "complaint"),
    [
        (
            'RENAME COLUMN store_id TO "Store_ID"',
            "table source.stores has no column(s) ['store_id']; 'store_id' exists as 'Store_ID' "
            "(column names must match the config exactly)",
        ),
        (
            "ALTER month TYPE TIMESTAMP",
            "table source.stores: column 'month' is TIMESTAMP, expected DATE (the first day of "
            "the month; store it as DATE, e.g. CAST(month AS DATE))",
        ),
    ],
)
def test_a_source_table_unlike_the_config_skips_the_tick_naming_the_column(
    small_config: ServingConfig, state: LocalState, alteration: str, complaint: str
) -> None:
    with duckdb.connect(str(state.warehouse_path)) as connection:
        connection.execute(f"ALTER TABLE source.stores {alteration}")

    assert skip_message(tick(small_config, state)) == (
        f"model 'store': the warehouse could not be read, tick skipped: {complaint}"
    )
