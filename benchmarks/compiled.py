"""Compiled scoring (issue: compile tree models once per version). Prints its figures.

    .venv/bin/python benchmarks/compiled.py                  # 1M and 5M rows (~10 min)
    .venv/bin/python benchmarks/compiled.py --rss-at-10m     # and the compiled product at 10M

State lives in $BENCH_HOME as for scale.py (same data, same model). Every figure is its own
process, one run each:

1. compiling the benchmark model's champion (core.compiled.compile_version, as the
   `bench_model` asset does): compile seconds, the exactness comparison on the latest feature
   partition, peak RSS;
2. per size (1M, 5M rows): the Dagster materialisation of `bench_predictions` scored with the
   compiled form, the same scored with the model's own predict (`compiled: off`), the
   hand-written script of scale.py and its raw `pyfunc.predict`, with peak RSS.

The compiled form is native code: both product variants run with
`registry.allow_pickled_models: true`, the switch that governs it.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

import scale
import yaml

SIZES = {"M1": 1_000_000, "M5": 5_000_000}
BIG = {"M10": 10_000_000}
VARIANTS = {"compiled": "auto", "own": "off"}


def variant_config(home: Path, variant: str) -> Path:
    """The benchmark config, trusting the registry's native code, with `compiled` set."""
    config = yaml.safe_load(scale.BENCH_CONFIG.read_text())
    config["registry"]["allow_pickled_models"] = True
    config["models"]["bench"]["compiled"] = VARIANTS[variant]
    path = home / f"bench_{variant}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def compile_run(home: Path) -> dict[str, Any]:
    """Compile the champion once, comparing it on the latest feature partition."""
    from coverage_serving.config import load_serving_config
    from coverage_serving.core.compiled import compile_version, latest_feature_rows
    from coverage_serving.core.served_version import load_served_model
    from coverage_serving.definitions import resources_for_deployment
    from coverage_serving.settings import LocalState

    config = load_serving_config(variant_config(home, "compiled"))
    model = config.models["bench"]
    resources = resources_for_deployment(config, LocalState(home))
    registry = resources["registry"].open()
    partition, sample = latest_feature_rows(resources["warehouse"].open(), model)
    loaded = load_served_model(registry, model)
    started = time.perf_counter()
    report = compile_version(registry, model, loaded, partition, sample)
    return {
        **report.figures(),
        "seconds_with_comparison": time.perf_counter() - started,
        "peak_rss_mb": scale.peak_rss_mb(),
    }


def product_run(home: Path, variant: str, partition: str) -> dict[str, Any]:
    scale.BENCH_CONFIG = variant_config(home, variant)
    return scale.product_run(home, partition, partition, "predictions")


def prepare(home: Path, *big: str) -> dict[str, Any]:
    """Sources, the model and the feature snapshots of the measured sizes (each kept if
    present)."""
    from coverage_serving.config import load_serving_config
    from coverage_serving.settings import LocalState

    sizes = SIZES | (BIG if big else {})
    state = LocalState(home)
    state.create()
    model = load_serving_config(scale.BENCH_CONFIG).models["bench"]
    scale.write_sources(state, model, {f"{m}|{scale.MONTH}": rows for m, rows in sizes.items()})
    scale.register_model(state, model)
    for market in sizes:
        key = f"{market}|{scale.MONTH}"
        done = scale.in_process(home, "product", key, key, "features", script=scale.__file__)
        print(f"features {key}: {done['rows']:,} rows in {done['seconds']:.1f}s", flush=True)
    return {}


def report(home: Path, rss_at_10m: bool) -> None:
    # In its own process too: Linux hands a parent's peak RSS down to the children it starts,
    # and writing the sources takes this process to ~1.8 GB.
    scale.in_process(home, "prepare", *(["10m"] if rss_at_10m else []), script=__file__)
    compiled = scale.in_process(home, "compile", script=__file__)
    print(
        f"compile: {compiled['outcome']} in {compiled['compile_seconds']:.1f}s "
        f"({compiled['seconds_with_comparison']:.1f}s with the comparison), "
        f"{compiled['rows_bitwise_equal']:,} of {compiled['rows_compared']:,} rows of "
        f"{compiled['partition']} bitwise equal, max abs diff {compiled['max_abs_diff']:g}, "
        f"peak RSS {compiled['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    for market, rows in SIZES.items():
        key = f"{market}|{scale.MONTH}"
        fast = scale.in_process(home, "product", "compiled", key, script=__file__)
        own = scale.in_process(home, "product", "own", key, script=__file__)
        script = scale.in_process(home, "script", key, script=scale.__file__)
        raw = script["predict_seconds"]
        print(
            f"{rows:>10,} rows: product compiled {fast['seconds']:.2f}s "
            f"({rows / fast['seconds']:,.0f} rows/s, score {fast['score_seconds']:.2f}s, peak "
            f"{fast['peak_rss_mb']:.0f} MB) | product own predict {own['seconds']:.2f}s "
            f"({rows / own['seconds']:,.0f} rows/s, score {own['score_seconds']:.2f}s, peak "
            f"{own['peak_rss_mb']:.0f} MB) | script {script['seconds']:.2f}s (peak "
            f"{script['peak_rss_mb']:.0f} MB) | raw predict {raw:.2f}s | compiled/raw "
            f"{raw / fast['seconds']:.2f}x, compiled/own {own['seconds'] / fast['seconds']:.2f}x, "
            f"compiled/script {script['seconds'] / fast['seconds']:.2f}x",
            flush=True,
        )
    for market, rows in (BIG if rss_at_10m else {}).items():
        key = f"{market}|{scale.MONTH}"
        fast = scale.in_process(home, "product", "compiled", key, script=__file__)
        print(
            f"{rows:>10,} rows: product compiled {fast['seconds']:.2f}s, peak RSS "
            f"{fast['peak_rss_mb']:.0f} MB",
            flush=True,
        )


def main() -> None:
    parser = scale.bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--rss-at-10m", action="store_true")
    args = parser.parse_args()
    home = args.home.resolve()
    if not args.command:
        os.environ.update(scale.environment(home))
        report(home, args.rss_at_10m)
        return
    command, *rest = args.command
    run = {"prepare": prepare, "compile": compile_run, "product": product_run}[command]
    print(json.dumps(run(home, *rest)))


if __name__ == "__main__":
    main()
