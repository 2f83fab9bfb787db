"""What profiling costs a partition. Prints its figures.

    .venv/bin/python benchmarks/profile_overhead.py            # profiler alone, then the step
    .venv/bin/python benchmarks/profile_overhead.py --profiler-only

1. The profiler of core.profile over 1M rows of the benchmark table's shape (30 float features
   and one prediction, benchmarks/bench_serving.yaml) in the 75k-row chunks the benchmark scores
   in, binned on reference deciles as in a run: seconds per 1M rows, median of 5.
2. The whole predictions step of a 1M-row partition (the Dagster materialisation scale.py
   measures, each run its own process) with monitoring and with it switched off in this script
   only: the profilers do nothing, so there is no drift to judge and no plot to draw. The two
   variants alternate, REPEATS runs each, so a load on the machine weighs on both alike.
   State lives in $BENCH_HOME as for scale.py; only the 1M-row partition is written.
"""

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scale

from coverage_serving.core.profile import Profile, Profiler, decile_edges

ROWS, CHUNK, FEATURES = 1_000_000, 75_000, [f"f{i:02d}" for i in range(30)]
STEP_SECONDS = 12.1  # the product's 1M-row materialisation, median (benchmarks/README.md)
PARTITION, REPEATS = "M1|2026-01-01", 3


def profiler_alone() -> None:
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


class _NoProfile(Profiler):
    """A profiler that looks at no chunk: an empty profile, judged against nothing."""

    def add(self, frame: pd.DataFrame) -> None:
        self.profile = Profile(len(frame), {})


def step_run(home: Path, monitoring: str) -> dict[str, Any]:
    """One materialisation of the partition's predictions, in this process."""
    if monitoring == "off":
        from coverage_serving.core import batch
        from coverage_serving.defs import predictions

        batch.Profiler = _NoProfile  # type: ignore[misc]
        predictions.log_plots = lambda *args, **kwargs: None  # nothing profiled, nothing to draw
    return scale.product_run(home, PARTITION, PARTITION, "predictions")


def whole_step(home: Path) -> None:
    os.environ.update(scale.environment(home))
    from coverage_serving.config import load_serving_config
    from coverage_serving.settings import LocalState

    state = LocalState(home)
    state.create()
    model = load_serving_config(scale.BENCH_CONFIG).models["bench"]
    scale.write_sources(state, model, {PARTITION: ROWS})
    scale.register_model(state, model)
    scale.product_run(home, PARTITION, PARTITION, "features")
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(REPEATS):
        for monitoring in seconds:
            run = scale.in_process(home, "step", monitoring, script=__file__)
            assert run["rows"] == ROWS, run
            seconds[monitoring].append(run["seconds"])
            print(f"monitoring {monitoring}: {run['seconds']:.2f} s", flush=True)
    on, off = statistics.median(seconds["on"]), statistics.median(seconds["off"])
    # Under load one slow run moves a median of three; the pairs, run back to back, less so.
    pairs = [round(a - b, 2) for a, b in zip(seconds["on"], seconds["off"], strict=True)]
    print(
        f"1M-row predictions step, median of {REPEATS} alternating runs: with monitoring "
        f"{on:.2f} s, without {off:.2f} s: {on - off:+.2f} s ({(on - off) / off:+.1%}); "
        f"per pair (on - off): {pairs} s"
    )


def main() -> None:
    parser = scale.bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--profiler-only", action="store_true")
    args = parser.parse_args()
    home = args.home.resolve()
    if args.command:  # a measured run, in its own process
        [_, monitoring] = args.command
        print(json.dumps(step_run(home, monitoring)))
        return
    profiler_alone()
    if not args.profiler_only:
        whole_step(home)


if __name__ == "__main__":
    main()
