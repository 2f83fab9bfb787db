"""What profiling costs a partition: the profiler of core.profile over 1M rows of the benchmark
table's shape (30 float features and one prediction, benchmarks/bench_serving.yaml) in the
75k-row chunks the benchmark scores in, binned on reference deciles as in a run.

Prints the seconds per 1M rows (median of 5) and that cost as a share of the product's
materialisation of a 1M-row partition (benchmarks/README.md: about 12 s on 2 vCPUs).
"""

import statistics
import time

import numpy as np
import pandas as pd

from coverage_serving.core.profile import Profiler, decile_edges

ROWS, CHUNK, FEATURES = 1_000_000, 75_000, [f"f{i:02d}" for i in range(30)]
STEP_SECONDS = 12.1  # the product's 1M-row materialisation, median (benchmarks/README.md)


def main() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.normal(size=ROWS) for name in [*FEATURES, "prediction"]})
    edges = {name: decile_edges(frame[name].to_numpy()[:100_000]) for name in frame.columns}
    runs = []
    for _ in range(5):
        features, predictions = Profiler(FEATURES, [], edges), Profiler(["prediction"], [], edges)
        start = time.perf_counter()
        for begin in range(0, ROWS, CHUNK):
            chunk = frame.iloc[begin : begin + CHUNK]
            features.add(chunk)
            predictions.add(chunk)
        runs.append(time.perf_counter() - start)
    median = statistics.median(runs)
    print(f"profiling 1M rows x 31 columns: {median:.3f} s (runs {[round(r, 3) for r in runs]})")
    print(f"share of a {STEP_SECONDS} s 1M-row materialisation: {median / STEP_SECONDS:.1%}")


if __name__ == "__main__":
    main()
