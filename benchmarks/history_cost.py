"""What keeping replaced predictions costs on DuckDB: the partition swap of a 1M-row prediction
partition without history, with history (keep everything) and with history pruned to the last
version, and the bytes the history table takes. Prints its figures.

    .venv/bin/python benchmarks/history_cost.py [--rows 1000000] [--rescorings 4]

Each case gets its own DuckDB file: the partition is written with version 1, then rescored with
versions 2, 3, ... (each rescoring replaces every row, so with history it archives them all),
the cases taking turns; the seconds are those of each rescoring's replace_partition (staging in
100k-row chunks, the checks, the swap), as the predictions step calls it.
"""

import argparse
import statistics
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from coverage_serving.config import load_serving_config
from coverage_serving.core.tables import history_table, predictions_table
from coverage_serving.lineage import VERSION_COLUMN, Lineage
from coverage_serving.partition import Partition
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving.warehouse.base import History

MODEL = load_serving_config().models["store"]  # one key, one prediction, the lineage
PARTITION = Partition("IN", date(2026, 1, 1))
CHUNK_ROWS = 100_000
CASES = {"no history": None, "history, keep everything": 0, "history, keep_versions=1": 1}


def scored(rows: int, version: int) -> list[pd.DataFrame]:
    """The staged columns of a scored partition (the lineage comes as constants), in chunks."""
    frame = pd.DataFrame(
        {
            "store_id": [f"S-IN-{i:07d}" for i in range(rows)],
            "market": PARTITION.market,
            "month": pd.Timestamp(PARTITION.month),
            "sales_potential": np.random.default_rng(version).random(rows) * 1000,
        }
    )
    return [frame.iloc[start : start + CHUNK_ROWS] for start in range(0, rows, CHUNK_ROWS)]


def lineage(version: int) -> dict[str, object]:
    return Lineage(
        model_name=MODEL.registered_model,
        model_version=version,
        model_alias="champion",
        model_run_id="0" * 32,
        scored_at=pd.Timestamp(datetime.now(UTC)),
        run_id=f"run-{version}",
    ).columns()


def rescore(
    warehouse: DuckDBWarehouse, keep: int | None, chunks: list[pd.DataFrame], version: int
) -> float:
    """Seconds to replace the partition with `version`'s rows (keep None: without history)."""
    history = (
        None
        if keep is None
        else History(history_table(MODEL), VERSION_COLUMN, f"run-{version}", keep or None)
    )
    started = time.perf_counter()
    warehouse.replace_partition(
        predictions_table(MODEL),
        PARTITION,
        iter(chunks),
        constants=lineage(version),
        keys=MODEL.key_columns,
        history=history,
    )
    return time.perf_counter() - started


def history_bytes(path: Path, scratch: Path) -> tuple[int, int]:
    """The bytes the history table takes on its own (copied into an empty DuckDB file, less
    that file's size when empty) and the rows it holds; none without a history table."""
    alone, empty = scratch / f"{path.stem}_history_only.duckdb", scratch / "empty.duckdb"
    with duckdb.connect(str(empty)) as con:
        con.execute("CHECKPOINT")
    with duckdb.connect(str(path)) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name = ?",
            [MODEL.history_table],
        ).fetchall()
        if not tables:
            return 0, 0
        con.execute(f"ATTACH '{alone}' AS alone")
        con.execute(f"CREATE TABLE alone.history AS FROM serving.{MODEL.history_table}")
        [(held,)] = con.execute("SELECT count(*) FROM alone.history").fetchall()
        con.execute("DETACH alone")
    return alone.stat().st_size - empty.stat().st_size, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rescorings", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coverage-serving-history-bench-") as scratch:
        paths = {case: Path(scratch) / f"case_{i}.duckdb" for i, case in enumerate(CASES)}
        warehouses = {
            case: DuckDBWarehouse(DuckDBResource(database=str(path)).get_connection)
            for case, path in paths.items()
        }
        seconds: dict[str, list[float]] = {case: [] for case in CASES}
        # Round by round, every case rescored once: load from other processes hits all alike.
        for version in range(1, args.rescorings + 2):
            chunks = scored(args.rows, version)
            for case, keep in CASES.items():
                taken = rescore(warehouses[case], keep, chunks, version)
                if version > 1:  # the first write replaces nothing
                    seconds[case].append(taken)
        for case, path in paths.items():
            size, held = history_bytes(path, Path(scratch))
            # Bytes a row are MB per 1M rows.
            kept = (
                f"; history {held:,} rows, {size / 1e6:.1f} MB, {size / held:.1f} MB per 1M rows"
                if held
                else ""
            )
            print(
                f"{case}: rescoring {args.rows:,} rows took "
                f"{', '.join(f'{s:.2f}' for s in seconds[case])} s "
                f"(median {statistics.median(seconds[case]):.2f} s){kept}",
                flush=True,
            )


if __name__ == "__main__":
    main()
