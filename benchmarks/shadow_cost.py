"""What comparing a challenger's shadow partition with the served one costs on DuckDB: the one
comparison query per partition and prediction column (warehouse.base.comparison_sql) at 1M and
5M rows, its peak memory, and the swap of the shadow partition itself. Prints its figures.

    .venv/bin/python benchmarks/shadow_cost.py [--rows 1000000 5000000] [--repeats 3]

Scoring the shadow is a scoring run like the served table's (benchmarks/README.md: about 12 s per
1M rows of the benchmark model on 2 cores); what shadowing adds on top is this comparison.
"""

import argparse
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from coverage_serving.config import load_serving_config
from coverage_serving.core.compare import comparison_of
from coverage_serving.core.tables import predictions_table
from coverage_serving.lineage import Lineage
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelVersionRef
from coverage_serving.warehouse import DuckDBWarehouse

MODEL = load_serving_config().models["store"]
PARTITION = Partition("IN", date(2026, 1, 1))
CHUNK_ROWS = 100_000


def chunks(rows: int, seed: int, shift: float) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frames = []
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        served = rng.gamma(2.0, 500.0, n)
        frames.append(
            pd.DataFrame(
                {
                    "store_id": [f"S{i:09d}" for i in range(start, start + n)],
                    "market": PARTITION.market,
                    "month": pd.Timestamp(PARTITION.month),
                    "sales_potential": served * (1 + shift) + rng.normal(0, 50, n).clip(-served),
                }
            )
        )
    return frames


def main(sizes: list[int], repeats: int) -> None:
    served_table = predictions_table(MODEL)
    shadow_table = replace(served_table, name=MODEL.shadow_table)
    ref = ModelVersionRef(MODEL.registered_model, 1, "champion", None, "bench")
    constants = Lineage.of(ref, "bench").columns()
    for rows in sizes:
        with tempfile.TemporaryDirectory() as scratch:
            database = Path(scratch) / "warehouse.duckdb"
            warehouse = DuckDBWarehouse(
                DuckDBResource(
                    database=str(database), connection_config={"memory_limit": "128MB"}
                ).get_connection
            )
            warehouse.replace_partition(
                served_table, PARTITION, chunks(rows, 1, 0.0), constants=constants
            )
            start = time.perf_counter()
            warehouse.replace_partition(
                shadow_table, PARTITION, chunks(rows, 1, 0.05), constants=constants
            )
            swap = time.perf_counter() - start
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                figures = warehouse.compare_column(
                    served_table, shadow_table, PARTITION, MODEL.key_columns, "sales_potential"
                )
                seconds.append(time.perf_counter() - start)
            comparison = comparison_of(figures)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
        print(
            f"{rows:>10,} rows: comparison {statistics.median(seconds):.2f} s median of "
            f"{repeats} ({min(seconds):.2f}-{max(seconds):.2f}), "
            f"{statistics.median(seconds) / rows * 1e6:.2f} s per 1M rows; shadow swap "
            f"{swap:.2f} s; process peak RSS {peak:.2f} GB; rank correlation "
            f"{comparison.rank_correlation:.4f}, PSI {comparison.psi:.4f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    main(arguments.rows, arguments.repeats)
