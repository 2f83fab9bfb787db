"""Scale benchmarks (issue: chunked scoring with bounded memory). Prints its figures.

    .venv/bin/python benchmarks/scale.py            # everything but Spark (~15 min)
    .venv/bin/python benchmarks/scale.py --spark    # also MLflow spark_udf on local[2]

State lives in $BENCH_HOME (default /tmp/coverage-serving-bench): a DuckDB warehouse with the
benchmark partitions, a sqlite registry with the benchmark model. Every measured run is a fresh
process, so peak RSS is that run's own (ru_maxrss), and product and hand-written script
alternate on the same data.

1. rows/s of one partition (1M, 5M rows) through the Dagster materialisation of the predictions
   asset, against a hand-written read-predict-write script (what the seed's driver does) and the
   model's raw predict; 2. peak RSS of both at 1M, 5M, 10M; 3. 36 x 100k partitions in one run
   against one 3.6M partition; 4. a registry sensor tick with 500 registered versions;
   5. (--spark) the same partition through mlflow.pyfunc.spark_udf on local[2].
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_CONFIG = Path(__file__).with_name("bench_serving.yaml")
SIZES = {"M1": 1_000_000, "M5": 5_000_000, "M10": 10_000_000}
SMALL_MARKETS = ("A", "B", "C")
SMALL_ROWS, BIG_ROWS = 100_000, 3_600_000
MONTH = "2026-01-01"
FEATURES = [f"f{i:02d}" for i in range(30)]
VERSIONS = 500


def environment(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COVERAGE_SERVING_HOME": str(home),
        "COVERAGE_SERVING_CONFIG": str(BENCH_CONFIG),
        "DAGSTER_HOME": str(home / "dagster"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def in_process(home: Path, *args: str, script: str = __file__) -> dict[str, Any]:
    """Run the `args` subcommand of this script (or `script`) in a fresh process; its last line
    is JSON."""
    done = subprocess.run(
        [sys.executable, script, "--home", str(home), *args],
        env=environment(home),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- set-up: data, model, features (each skipped when present) -----------------------------


def prepare(home: Path) -> None:
    from coverage_serving.config import load_serving_config
    from coverage_serving.settings import LocalState

    state = LocalState(home)
    state.create()
    model = load_serving_config(BENCH_CONFIG).models["bench"]
    partitions = {
        f"{m}|{MONTH[:5]}{month:02d}-01": SMALL_ROWS
        for m in SMALL_MARKETS
        for month in range(1, 13)
    }
    partitions |= {f"R|{MONTH}": BIG_ROWS} | {f"{m}|{MONTH}": rows for m, rows in SIZES.items()}
    write_sources(state, model, partitions)
    register_model(state, model)


def write_sources(state: Any, model: Any, partitions: dict[str, int]) -> None:
    import duckdb

    from coverage_serving.core.tables import source_table
    from coverage_serving.warehouse.duckdb import _ddl

    table = source_table(model)
    with duckdb.connect(str(state.warehouse_path)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS source")
        con.execute(f"CREATE TABLE IF NOT EXISTS {table.qualified_name} ({_ddl(table.columns)})")
        present = {
            f"{market}|{month}": n
            for market, month, n in con.execute(
                f"SELECT market, month, count(*) FROM {table.qualified_name} GROUP BY ALL"
            ).fetchall()
        }
        for key, rows in partitions.items():
            if present.get(key) == rows:
                continue
            market, month = key.split("|")
            started = time.perf_counter()
            columns = ", ".join(f"random() * {i + 1} AS {name}" for i, name in enumerate(FEATURES))
            con.execute(
                f"DELETE FROM {table.qualified_name} WHERE market = ? AND month = ?",
                [market, month],
            )
            con.execute(
                f"INSERT INTO {table.qualified_name} SELECT printf('%s-%09d', ?, range), ?, "
                f"?::DATE, {columns} FROM range(?)",
                [market, market, month, rows],
            )
            print(
                f"source {key}: {rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True
            )


def register_model(state: Any, model: Any) -> None:
    import lightgbm as lgb
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    from coverage_serving.registry import using_tracking_uri

    client = mlflow.MlflowClient(state.tracking_uri)
    try:
        client.get_model_version_by_alias(model.registered_model, model.alias)
        return
    except mlflow.exceptions.MlflowException:
        pass
    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.random((50_000, len(FEATURES))) * np.arange(1, 31), columns=FEATURES)
    y = x.to_numpy() @ rng.normal(size=len(FEATURES)) + rng.normal(0, 0.1, len(x))
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 63, "verbose": -1}, lgb.Dataset(x, y), 200
    )
    experiment = client.create_experiment("bench", artifact_location=str(state.mlflow_artifacts))
    with using_tracking_uri(state.tracking_uri), mlflow.start_run(experiment_id=experiment):
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(x.head(), booster.predict(x.head())),
            registered_model_name=model.registered_model,
            pip_requirements=["lightgbm"],
        )
    client.set_registered_model_alias(
        model.registered_model, model.alias, info.registered_model_version
    )


# --- measured runs (each in its own process) -----------------------------------------------


def product_run(home: Path, first: str, last: str, assets: str) -> dict[str, Any]:
    """Materialise `assets` (features, predictions or both) over the rectangle first..last."""
    import dagster as dg

    from coverage_serving.config import load_serving_config
    from coverage_serving.definitions import build_definitions
    from coverage_serving.defs.partitions import partition_range_tags
    from coverage_serving.partition import Partition
    from coverage_serving.registry import _LOADED
    from coverage_serving.settings import LocalState

    config = load_serving_config(BENCH_CONFIG)
    defs = build_definitions(config, LocalState(home))
    selection = {"features": ["bench_features"], "predictions": ["bench_predictions"]}[assets]
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey(key) for key in selection}
    )
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    # The persistent instance in $DAGSTER_HOME, as in a deployment: the scoring run finds the
    # features run's record that the snapshot passed the input contract in force.
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            tags=partition_range_tags(Partition.parse(first), Partition.parse(last)),
            instance=instance,
            run_config=quiet,
            resources=None,
            raise_on_error=True,
        )
        seconds = time.perf_counter() - started
        materialised = result.asset_materializations_for_node(selection[0])
    # Each partition's materialisation records its rows.
    rows = sum(int(m.metadata["dagster/row_count"].value) for m in materialised)
    timings = {
        key: round(sum(float(m.metadata[key].value) for m in materialised if key in m.metadata), 2)
        for key in ("read_seconds", "validate_seconds", "score_seconds")
    }
    return {
        "seconds": seconds,
        "rows": rows,
        "runs": 1,
        **timings,
        "model_loads": len(_LOADED),
        "peak_rss_mb": peak_rss_mb(),
    }


def script_run(home: Path, partition: str) -> dict[str, Any]:
    """What the seed's driver does: the partition into pandas, pyfunc predict, write it back."""
    import duckdb
    import mlflow

    market, month = partition.split("|")
    warehouse = str(home / "warehouse.duckdb")
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    started = time.perf_counter()
    with duckdb.connect(warehouse) as con:
        frame = con.execute(
            "SELECT * FROM features.bench_features WHERE market = ? AND month = ?", [market, month]
        ).df()
    model = mlflow.pyfunc.load_model("models:/coverage_bench_model@champion")
    predicting = time.perf_counter()
    frame["score"] = model.predict(frame[FEATURES])
    predict_seconds = time.perf_counter() - predicting
    with duckdb.connect(warehouse) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS script")
        con.execute(
            "CREATE OR REPLACE TABLE script.bench_predictions AS "
            "SELECT cell_id, market, month, score FROM frame"
        )
    return {
        "seconds": time.perf_counter() - started,
        "rows": len(frame),
        "predict_seconds": predict_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def sensor_tick(home: Path) -> dict[str, Any]:
    """One registry-sensor tick against a registry holding VERSIONS versions of a model."""
    import dagster as dg
    import mlflow

    from coverage_serving.config import load_serving_config
    from coverage_serving.definitions import build_definitions, resources_for_deployment
    from coverage_serving.defs.sensors import registry_sensor_name
    from coverage_serving.registry import using_tracking_uri
    from coverage_serving.settings import LocalState

    state = LocalState(home)
    model = load_serving_config(BENCH_CONFIG).models["bench"]
    client = mlflow.MlflowClient(state.tracking_uri)
    registered = len(client.search_model_versions(f"name = '{model.registered_model}'"))
    source = client.get_model_version(model.registered_model, "1").source
    with using_tracking_uri(state.tracking_uri):  # MLflow 3 sources register only this way
        for _ in range(registered, VERSIONS):
            mlflow.register_model(source, model.registered_model)
    versions = list(range(1, VERSIONS))  # the cursor knows all but the newest
    cursor = json.dumps({"versions": versions, "served": 1, "moves": 0})
    config = load_serving_config(BENCH_CONFIG)
    name = registry_sensor_name(model)
    [sensor] = [s for s in build_definitions(config, state).sensors or [] if s.name == name]
    registry = resources_for_deployment(config, state)["registry"]
    timings = []
    for _ in range(3):
        with dg.build_sensor_context(cursor=cursor, resources={"registry": registry}) as context:
            started = time.perf_counter()
            result = sensor(context)
            timings.append(time.perf_counter() - started)
    requests = len(result.run_requests or []) if isinstance(result, dg.SensorResult) else 0
    return {"versions": VERSIONS, "tick_seconds": timings, "run_requests": requests}


# --- the report ----------------------------------------------------------------------------


def report(home: Path, spark: bool) -> None:
    in_process(home, "prepare")
    # Feature snapshots: the product's features step, timed too.
    every_small = (f"A|{MONTH}", "C|2026-12-01")
    for first, last in [every_small, *[(f"{m}|{MONTH}",) * 2 for m in ("R", *SIZES)]]:
        done = in_process(home, "product", first, last, "features")
        print(
            f"features {first}..{last}: {done['rows']:,} rows in {done['seconds']:.1f}s, "
            f"peak RSS {done['peak_rss_mb']:.0f} MB",
            flush=True,
        )

    print("\n1./2. one partition: product (Dagster predictions asset) vs hand-written script")
    for market, rows in SIZES.items():
        key = f"{market}|{MONTH}"
        for attempt in (1, 2):
            product = in_process(home, "product", key, key, "predictions")
            script = in_process(home, "script", key)
            print(
                f"  {rows:>10,} rows #{attempt}: product {rows / product['seconds']:>9,.0f} rows/s "
                f"({product['seconds']:.1f}s, peak {product['peak_rss_mb']:.0f} MB) | script "
                f"{rows / script['seconds']:>9,.0f} rows/s ({script['seconds']:.1f}s, peak "
                f"{script['peak_rss_mb']:.0f} MB) | raw predict "
                f"{rows / script['predict_seconds']:>9,.0f} rows/s "
                f"| product/script {script['seconds'] / product['seconds']:.2f}x, "
                f"product/raw {script['predict_seconds'] / product['seconds']:.2f}x",
                flush=True,
            )

    print("\n3. rescoring after a new champion: 36 x 100k in one run vs one 3.6M partition")
    for attempt in (1, 2):
        small = in_process(home, "product", *every_small, "predictions")
        big = in_process(home, "product", f"R|{MONTH}", f"R|{MONTH}", "predictions")
        print(
            f"  #{attempt}: 36 x 100k {small['seconds']:.1f}s ({small['runs']} run, "
            f"{small['model_loads']} model load) | 1 x 3.6M {big['seconds']:.1f}s | ratio "
            f"{small['seconds'] / big['seconds']:.2f}",
            flush=True,
        )

    print("\n4. registry sensor tick")
    tick = in_process(home, "sensor")
    print(
        f"  {tick['versions']} versions: ticks "
        f"{', '.join(f'{t:.2f}s' for t in tick['tick_seconds'])}, "
        f"{tick['run_requests']} run request(s)"
    )

    if spark:
        print("\n5. MLflow spark_udf on local[2]")
        for attempt in (1, 2):
            done = in_process(home, "spark", f"M1|{MONTH}")
            product = in_process(home, "product", f"M1|{MONTH}", f"M1|{MONTH}", "predictions")
            print(
                f"  #{attempt}: spark {done['seconds']:.1f}s incl. session start "
                f"{done['start_seconds']:.1f}s | product {product['seconds']:.1f}s | "
                f"product/spark {done['seconds'] / product['seconds']:.2f}x",
                flush=True,
            )


def spark_run(home: Path, partition: str) -> dict[str, Any]:
    """The partition scored with mlflow.pyfunc.spark_udf on local[2], session start included."""
    import duckdb
    import mlflow
    from pyspark.sql import SparkSession

    market, month = partition.split("|")
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    parquet = home / f"spark_{market}.parquet"
    if not parquet.exists():
        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
            con.execute(
                "COPY (SELECT * FROM features.bench_features WHERE market = ? AND month = ?) "
                f"TO '{parquet}' (FORMAT parquet)",
                [market, month],
            )
    started = time.perf_counter()
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers in this venv, not the system's
    spark = (
        SparkSession.builder.master("local[2]").config("spark.driver.memory", "4g").getOrCreate()
    )
    start_seconds = time.perf_counter() - started
    score = mlflow.pyfunc.spark_udf(
        spark, "models:/coverage_bench_model@champion", env_manager="local"
    )
    frame = spark.read.parquet(str(parquet))
    out = home / f"spark_out_{market}.parquet"
    frame.withColumn("score", score(*FEATURES)).select(
        "cell_id", "market", "month", "score"
    ).write.mode("overwrite").parquet(str(out))
    seconds = time.perf_counter() - started
    spark.stop()
    return {"seconds": seconds, "start_seconds": start_seconds}


def bench_parser(description: str) -> argparse.ArgumentParser:
    """Where a benchmark's state lives (--home, else $BENCH_HOME) and the subcommand a measured
    run is (empty: the whole benchmark)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("BENCH_HOME", "/tmp/coverage-serving-bench")),
    )
    parser.add_argument("command", nargs="*")
    return parser


def main() -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--spark", action="store_true")
    args = parser.parse_args()
    home = args.home.resolve()
    if not args.command:
        os.environ.update(environment(home))
        report(home, args.spark)
        return
    command, *rest = args.command
    if command == "prepare":
        prepare(home)
        print(json.dumps({}))
        return
    run = {"product": product_run, "script": script_run, "sensor": sensor_tick, "spark": spark_run}[
        command
    ]
    print(json.dumps(run(home, *rest)))


if __name__ == "__main__":
    main()
