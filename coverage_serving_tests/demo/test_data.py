from datetime import date

import pandas as pd
import pytest

from coverage_serving.config import ServingConfig, load_serving_config
from coverage_serving.core.contracts import enforce_input_contract
from coverage_serving.demo.data import GENERATORS
from coverage_serving.partition import Partition

JANUARY = Partition("IN", date(2026, 1, 1))
FEBRUARY = Partition("IN", date(2026, 2, 1))


@pytest.mark.parametrize("table", sorted(GENERATORS))
def test_a_partition_is_the_same_every_time(table: str) -> None:
    generate = GENERATORS[table]
    pd.testing.assert_frame_equal(generate(JANUARY, 200), generate(JANUARY, 200))


@pytest.mark.parametrize("table", sorted(GENERATORS))
def test_entities_keep_their_ids_but_drift_between_months(table: str) -> None:
    january, february = GENERATORS[table](JANUARY, 200), GENERATORS[table](FEBRUARY, 200)
    key = january.columns[0]
    assert list(january[key]) == list(february[key])
    assert not january.drop(columns="month").equals(february.drop(columns="month"))


@pytest.mark.parametrize("name", ["store", "grid"])
def test_generated_rows_pass_the_shipped_input_contract(name: str) -> None:
    model = load_serving_config().models[name]
    for market in model.markets:
        partition = Partition(market, model.first_month)
        frame = GENERATORS[model.source_table](partition, 500)
        assert len(enforce_input_contract(model, partition, frame)) == 500


def test_an_unlisted_market_gets_plausible_rows(small_config: ServingConfig) -> None:
    model = small_config.models["store"]
    partition = Partition("TH", date(2026, 1, 1))
    frame = GENERATORS["stores"](partition, 100)
    assert len(enforce_input_contract(model, partition, frame)) == 100
    assert frame["latitude"].between(-90, 90).all()
