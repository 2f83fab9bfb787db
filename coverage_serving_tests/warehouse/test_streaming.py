"""Streamed reads and chunked, staged writes, on both warehouses (a DuckDB file and the BigQuery
emulator): bounded chunks, and the whole-partition checks on the staged rows before the swap."""

import pandas as pd
import pytest

from coverage_serving.errors import WarehouseError
from coverage_serving.warehouse import Warehouse
from coverage_serving.warehouse.base import Staged
from coverage_serving_tests.warehouse.sample import JANUARY, TABLE, rows

pytestmark = pytest.mark.integration


def chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[start : start + size] for start in range(0, len(frame), size)]


def test_chunks_are_staged_and_swapped_as_one_partition(warehouse: Warehouse) -> None:
    written = rows(JANUARY, count=1_000)
    seen: list[Staged] = []

    count = warehouse.replace_partition(
        TABLE, JANUARY, iter(chunks(written, 300)), keys=["id"], verify=seen.append
    )

    assert count == 1_000
    assert seen == [Staged(rows=1_000)]
    batches = list(warehouse.read_batches(TABLE, JANUARY, batch_rows=256))
    assert all(len(batch) <= 256 for batch in batches)
    streamed = pd.concat(batches).sort_values("id").reset_index(drop=True)
    whole = warehouse.read_partition(TABLE, JANUARY).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(streamed, whole)
    assert len(whole) == 1_000 and whole["id"].is_unique


def test_carried_columns_are_read_arrow_backed_and_written_back_unchanged(
    warehouse: Warehouse,
) -> None:
    written = rows(JANUARY, count=1_000)
    warehouse.replace_partition(TABLE, JANUARY, written, keys=["id"])

    batches = list(warehouse.read_batches(TABLE, JANUARY, batch_rows=256, carried=["id", "note"]))

    assert all(isinstance(batch["id"].dtype, pd.ArrowDtype) for batch in batches)
    assert all(list(batch.columns) == TABLE.column_names for batch in batches)
    warehouse.replace_partition(TABLE, JANUARY, iter(batches), keys=["id"])
    back = warehouse.read_partition(TABLE, JANUARY).sort_values("id").reset_index(drop=True)
    expected = written.sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)


def test_a_key_repeated_across_chunks_is_refused_and_the_old_rows_kept(
    warehouse: Warehouse,
) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=10, version=1))
    first, second = rows(JANUARY, count=6, version=2), rows(JANUARY, count=6, version=2)
    second["id"] = ["k5", "k6", "k7", "k8", "k9", "k10"]  # k5 is in both chunks

    with pytest.raises(WarehouseError, match=r"2 rows share a key \(e.g. k5\)"):
        warehouse.replace_partition(TABLE, JANUARY, iter([first, second]), keys=["id"])

    kept = warehouse.read_partition(TABLE, JANUARY)
    assert len(kept) == 10 and set(kept["version"]) == {1}


def test_a_verify_that_raises_keeps_the_old_rows(warehouse: Warehouse) -> None:
    warehouse.replace_partition(TABLE, JANUARY, rows(JANUARY, count=10, version=1))

    def refuse(staged: Staged) -> None:
        raise WarehouseError(f"refused {staged.rows} staged rows")

    with pytest.raises(WarehouseError, match="refused 4 staged rows"):
        warehouse.replace_partition(
            TABLE, JANUARY, rows(JANUARY, count=4, version=2), verify=refuse
        )

    assert len(warehouse.read_partition(TABLE, JANUARY)) == 10
