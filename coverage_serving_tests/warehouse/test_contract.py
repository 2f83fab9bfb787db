"""The contract every warehouse keeps, run on each of them (a DuckDB file and the BigQuery
emulator, the `warehouse` fixture of conftest.py): typed round trips, atomic replaces and their
refusals, the reads the platform needs, and history. What only one warehouse has (its DDL, its
SQL text, its staging leftovers, its failure injection) is tested in test_duckdb.py and
test_bigquery.py."""

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from coverage_serving.core.compare import comparison_of, psi
from coverage_serving.errors import EmptyPartitionError, WarehouseError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Column, TableSpec, Warehouse
from coverage_serving.warehouse.base import History, UnmatchedMarket
from coverage_serving_tests.warehouse.sample import (
    FEBRUARY,
    HISTORY,
    JANUARY,
    TABLE,
    held_in_history,
    refused_write_keeps_old_rows,
    replace_with_version,
    rows,
    warehouse_frame,
)

pytestmark = pytest.mark.integration

SHADOW = TableSpec("serving", "scores_shadow", TABLE.columns)


def test_a_written_partition_reads_back_with_its_types(warehouse: Warehouse) -> None:
    written = rows(JANUARY, count=5)

    assert warehouse.replace_partition(TABLE, JANUARY, written) == 5

    read = warehouse.read_partition(TABLE, JANUARY).sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(read, warehouse_frame(written))
    assert read["note"].isna().sum() == 2
    assert warehouse.list_partitions(TABLE) == [JANUARY]


def test_a_rewrite_replaces_the_partition_and_keeps_the_others(warehouse: Warehouse) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=4, version=1))
    warehouse.replace_partition(TABLE, FEBRUARY, rows(FEBRUARY, count=2, version=1))

    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=3, version=2))

    january = warehouse.read_partition(TABLE, JANUARY)
    assert sorted(january["id"]) == ["k0", "k1", "k2"]
    assert set(january["version"]) == {2}
    assert len(warehouse.read_partition(TABLE, FEBRUARY)) == 2
    assert warehouse.list_partitions(TABLE) == [JANUARY, FEBRUARY]


def test_partitions_are_listed_in_order(warehouse: Warehouse) -> None:
    assert warehouse.list_partitions(TABLE) == []
    other_market = Partition("ID", date(2026, 2, 1))
    for partition in (FEBRUARY, other_market, JANUARY):
        warehouse.replace_partition(TABLE, partition, rows(partition))

    assert warehouse.list_partitions(TABLE) == [other_market, JANUARY, FEBRUARY]


def test_an_empty_write_is_refused(warehouse: Warehouse) -> None:
    refused_write_keeps_old_rows(
        warehouse, rows(JANUARY).iloc[:0], EmptyPartitionError, "with no rows: the old rows"
    )


def test_rows_of_another_partition_are_refused(warehouse: Warehouse) -> None:
    stray = pd.concat([rows(JANUARY), rows(FEBRUARY).iloc[:1]], ignore_index=True)
    refused_write_keeps_old_rows(
        warehouse, stray, WarehouseError, r"1 rows .* do not belong to partition IN\|2026-01-01"
    )


def test_rows_lacking_a_column_are_refused(warehouse: Warehouse) -> None:
    refused_write_keeps_old_rows(
        warehouse, rows(JANUARY).drop(columns="score"), WarehouseError, r"lack columns \['score'\]"
    )


def test_a_missing_table_reads_as_an_error_and_lists_no_partitions(warehouse: Warehouse) -> None:
    assert warehouse.list_partitions(TABLE) == []
    with pytest.raises(WarehouseError, match=r"serving\.scores does not exist"):
        warehouse.read_partition(TABLE, JANUARY)


def test_reading_a_table_without_a_column_names_it(warehouse: Warehouse) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    wider = TableSpec(TABLE.schema, TABLE.name, (*TABLE.columns, Column("extra", "float")))

    with pytest.raises(WarehouseError, match=r"serving.scores has no column\(s\) \['extra'\]"):
        warehouse.read_partition(wider, JANUARY)


def test_a_table_whose_columns_drifted_is_not_written(warehouse: Warehouse) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))
    drifted = TableSpec(TABLE.schema, TABLE.name, TABLE.columns[:-1])

    with pytest.raises(WarehouseError, match="migrate or drop the table"):
        warehouse.replace_partition(drifted, FEBRUARY, rows(FEBRUARY).drop(columns="scored_at"))

    assert warehouse.list_partitions(TABLE) == [JANUARY]


def test_a_hostile_market_value_is_only_data(warehouse: Warehouse) -> None:
    hostile = Partition("IN'; DROP TABLE serving.scores; --", date(2026, 1, 1))
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY))

    warehouse.replace_partition(TABLE, hostile, rows(hostile))

    assert warehouse.list_partitions(TABLE) == [JANUARY, hostile]
    assert len(warehouse.read_partition(TABLE, hostile)) == 3


def test_latest_row_is_the_keys_row_of_its_latest_month(warehouse: Warehouse) -> None:
    """latest_row finds a key's row in its latest month, nothing for an unknown key or market
    (a hostile value is a bound parameter), and refuses a key name that is not a column."""
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, version=1))
    warehouse.replace_partition(TABLE, FEBRUARY, rows(FEBRUARY, version=2))

    found = warehouse.latest_row(TABLE, "IN", {"id": "k1"})

    assert found[["id", "version"]].to_dict("records") == [{"id": "k1", "version": 2}]
    assert found["month"].iloc[0] == pd.Timestamp(FEBRUARY.month)
    assert warehouse.latest_row(TABLE, "IN", {"id": "k1' OR '1'='1"}).empty
    assert warehouse.latest_row(TABLE, "ID", {"id": "k1"}).empty
    with pytest.raises(WarehouseError, match="no key column"):
        warehouse.latest_row(TABLE, "IN", {"id = id; --": "k1"})


def test_constant_columns_are_added_at_the_swap(warehouse: Warehouse) -> None:
    """Constant columns are added at the swap: the partition reads back as if every row had
    carried them (a NULL and a timestamp included); a name that is not a column is refused."""
    constants = {
        "note": None,
        "version": 7,
        "scored_at": pd.Timestamp("2026-11-23 10:00:01.5", tz="UTC"),
    }
    written = rows(JANUARY, count=4)

    count = warehouse.replace_partition(
        TABLE, JANUARY, written.drop(columns=list(constants)), constants=constants
    )

    expected = written.assign(**constants)
    found = warehouse.read_partition(TABLE, JANUARY).sort_values("id", ignore_index=True)
    assert count == 4
    assert found.drop(columns="month").astype(object).where(found.notna(), None).to_dict(
        "records"
    ) == expected.drop(columns="month").astype(object).where(expected.notna(), None).to_dict(
        "records"
    )
    with pytest.raises(WarehouseError, match=r"serving\.scores has no column\(s\) \['notes'\]"):
        warehouse.replace_partition(TABLE, FEBRUARY, written, constants={"notes": "x"})
    assert warehouse.list_partitions(TABLE) == [JANUARY]


def test_distinct_values_are_per_partition_of_asked_months(warehouse: Warehouse) -> None:
    """distinct_values gives each partition of the asked months with each distinct combination
    of the columns, and nothing for a table that does not exist yet."""
    assert warehouse.distinct_values(TABLE, ["version"], [JANUARY.month]) == []
    mixed = pd.concat([rows(JANUARY, count=2, version=1), rows(JANUARY, version=2).iloc[2:]])
    warehouse.replace_partition(TABLE, JANUARY, mixed)
    warehouse.replace_partition(TABLE, FEBRUARY, rows(FEBRUARY, version=3))

    found = warehouse.distinct_values(TABLE, ["version", "note"], [JANUARY.month])
    everything = warehouse.distinct_values(TABLE, ["version"], [JANUARY.month, FEBRUARY.month])

    assert sorted(found, key=str) == sorted(
        [(JANUARY, (1, "n0")), (JANUARY, (1, None)), (JANUARY, (2, "n2"))], key=str
    )
    assert sorted(everything) == [(JANUARY, (1,)), (JANUARY, (2,)), (FEBRUARY, (3,))]


def test_unmatched_markets_are_counted_per_month_and_value(warehouse: Warehouse) -> None:
    """Rows of the months asked about whose market is not exactly one of the markets are
    counted per month and value ('IN ' and 'in' are not 'IN'); other months are not counted,
    and markets are bound values, so a hostile one only matches nothing."""
    landed = {
        JANUARY: 3,
        Partition("IN ", JANUARY.month): 2,
        Partition("in", JANUARY.month): 1,
        Partition("ID", FEBRUARY.month): 4,
        FEBRUARY: 1,
        Partition("XX", date(2026, 3, 1)): 5,
    }
    for partition, count in landed.items():
        warehouse.replace_partition(TABLE, partition, rows(partition, count))
    months = [JANUARY.month, FEBRUARY.month]

    assert warehouse.unmatched_markets(TABLE, ["IN", "ID'; DROP TABLE x; --"], months) == [
        UnmatchedMarket(JANUARY.month, "IN ", 2),
        UnmatchedMarket(JANUARY.month, "in", 1),
        UnmatchedMarket(FEBRUARY.month, "ID", 4),
    ]
    assert warehouse.unmatched_markets(TABLE, ["IN", "ID", "IN ", "in"], months) == []
    assert warehouse.unmatched_markets(TABLE, ["IN"], [date(2026, 4, 1)]) == []


def test_a_comparison_of_two_tables_equals_a_hand_computation(warehouse: Warehouse) -> None:
    """compare_column's figures equal a hand computation: 200 keys, the challenger a noisy,
    shifted copy of the served scores; keys only one table holds are not compared."""
    rng = np.random.default_rng(7)
    served = rows(JANUARY, count=200).assign(score=rng.gamma(2.0, 10.0, 200))
    challenger = served.assign(score=served["score"] * 1.1 + rng.normal(0, 3, 200) + 2)
    warehouse.replace_partition(TABLE, JANUARY, served)
    warehouse.replace_partition(
        SHADOW, JANUARY, pd.concat([challenger, rows(JANUARY).assign(id=["x0", "x1", "x2"])])
    )

    found = comparison_of(warehouse.compare_column(TABLE, SHADOW, JANUARY, ["id"], "score"))

    s, c = served["score"].to_numpy(), challenger["score"].to_numpy()
    edges = np.sort(s)[::20][1:]  # the lowest served value of deciles 2..10
    top = set(np.argsort(-s)[:20]) & set(np.argsort(-c)[:20])
    assert found.compared_rows == 200
    assert found.mean_abs_diff == pytest.approx(np.abs(c - s).mean())
    assert found.max_abs_diff == pytest.approx(np.abs(c - s).max())
    assert found.mean_diff == pytest.approx((c - s).mean())
    assert found.rank_correlation == pytest.approx(spearmanr(s, c).statistic)
    assert found.top_decile_overlap == pytest.approx(len(top) / 20)
    assert found.served_bins == (20,) * 10
    assert found.challenger_bins == tuple(
        np.bincount(np.searchsorted(edges, c, "right"), minlength=10)
    )
    assert found.psi == pytest.approx(psi(found.served_bins, found.challenger_bins))
    assert found.psi > 0.05  # shifted by 10% and +2: visibly apart


def test_history_keeps_each_replaced_version_once(warehouse: Warehouse) -> None:
    """Replacing v1 by v2 moves v1's rows to history exactly as they were, with when and by
    which run; a rerun of v2 adds nothing; a rollback to v1 and a move to v3 keep each
    replaced version once (its latest rows); other partitions are untouched."""
    first = replace_with_version(warehouse, JANUARY, 1, "run-1")
    replace_with_version(warehouse, FEBRUARY, 1, "run-1")
    assert held_in_history(warehouse, JANUARY) == []

    before = datetime.now(UTC)
    replace_with_version(warehouse, JANUARY, 2, "run-2", count=2)
    after = datetime.now(UTC)

    held = warehouse.read_partition(HISTORY, JANUARY).sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(
        held[TABLE.column_names], warehouse_frame(first), check_dtype=False
    )
    assert set(held["replaced_by_run_id"]) == {"run-2"}
    assert held["replaced_at"].between(before, after).all()
    assert set(warehouse.read_partition(TABLE, JANUARY)["version"]) == {2}

    replace_with_version(warehouse, JANUARY, 2, "run-3")
    assert held_in_history(warehouse, JANUARY) == [(1, "run-2", 3)]

    replace_with_version(warehouse, JANUARY, 1, "run-4", count=4)
    replace_with_version(warehouse, JANUARY, 3, "run-5")
    assert held_in_history(warehouse, JANUARY) == [(1, "run-5", 4), (2, "run-4", 3)]
    assert held_in_history(warehouse, FEBRUARY) == []


def test_history_is_pruned_to_the_last_versions(warehouse: Warehouse) -> None:
    """With keep_versions=1, three versions over one partition leave only the latest replaced
    version in its history; another partition keeps its own."""
    for version in (1, 2, 3):
        replace_with_version(warehouse, JANUARY, version, f"run-{version}", keep_versions=1)
        replace_with_version(warehouse, FEBRUARY, version, f"run-{version}")

    assert held_in_history(warehouse, JANUARY) == [(2, "run-3", 3)]
    assert held_in_history(warehouse, FEBRUARY) == [(1, "run-2", 3), (2, "run-3", 3)]


def test_history_needs_the_new_version(warehouse: Warehouse) -> None:
    """A history whose version column is not a constant of the replace is refused before
    anything is written, naming the table and the column."""
    replace_with_version(warehouse, JANUARY, 1, "run-1")

    with pytest.raises(WarehouseError, match=r"serving\.scores needs a value of 'version'"):
        warehouse.replace_partition(
            TABLE, JANUARY, rows(JANUARY, version=2), history=History(HISTORY, "version", "run-2")
        )

    assert set(warehouse.read_partition(TABLE, JANUARY)["version"]) == {1}
    assert held_in_history(warehouse, JANUARY) == []
