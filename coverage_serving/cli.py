"""`coverage-serving`: the demo, its data and its models, and freeing a dead run's pools, from
the command line. Only the commands that run Dagster (demo, demo-data, dev, release-run) import
it: the others assemble the warehouse and registry through coverage_serving/wiring.py."""

import argparse
import logging
import os
import sys
import time

import uvicorn
from fastapi import FastAPI

from coverage_serving.config import ConfigError, ModelConfig, ServingConfig, load_serving_config
from coverage_serving.core.drift_summary import drift_summary
from coverage_serving.core.monitoring import ProfileStore
from coverage_serving.demo.emulator import running_emulator
from coverage_serving.demo.models import train_demo_model
from coverage_serving.errors import ServingError
from coverage_serving.local_servers import Server, run_until_interrupted
from coverage_serving.online.app import build_app
from coverage_serving.online.auth import hash_key, new_key
from coverage_serving.online.credentials import keyring_of
from coverage_serving.online.exposure import require_safe_exposure
from coverage_serving.settings import REPO_ROOT, LocalState
from coverage_serving.warehouse import Warehouse
from coverage_serving.wiring import open_registry, open_warehouse

BIGQUERY_DEMO_DATASET = "coverage"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coverage-serving", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "demo",
        help="create missing demo data and models, score every partition, print the tables",
    )
    commands.add_parser(
        "demo-bigquery",
        help="the demo with sources and predictions in a local BigQuery emulator",
    )
    commands.add_parser("demo-data", help="create the missing partitions of the demo sources")
    dev = commands.add_parser("dev", help="start the Dagster UI and daemon and the MLflow UI")
    dev.add_argument("--dagster-port", type=int, default=3000)
    dev.add_argument("--mlflow-port", type=int, default=5000)
    serve = commands.add_parser(
        "serve", help="the on-demand HTTP endpoint (POST /v1/models/{model}/predict)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes (each loads every model)"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve on a non-loopback address without online.auth (logged as such)",
    )
    commands.add_parser(
        "api-key",
        help="a new API key for a client, and the hash line to add to the keys document",
    )
    drift = commands.add_parser(
        "drift", help="the monitoring checks of every profiled partition of a model"
    )
    drift.add_argument("model", help="model name in the serving config, e.g. store or grid")
    drift.add_argument("--market", help="only this market's partitions")
    train = commands.add_parser("train-demo-model", help="register a new demo model version")
    train.add_argument("model", help="model name in the serving config, e.g. store or grid")
    train.add_argument("--alias", help="move this alias (e.g. champion) to the new version")
    release = commands.add_parser(
        "release-run",
        help="fail a run whose processes are gone and free the pool slots it holds "
        "(what the daemon does by itself under `make dev`)",
    )
    release.add_argument("run_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state = LocalState.from_env()
    state.create()
    os.environ["DAGSTER_HOME"] = str(state.dagster_home)  # one state directory for all
    # MLflow announces at INFO that it creates a new sqlite registry's tables: not news here.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    try:
        if args.command == "release-run":
            return release(args.run_id)
        if args.command == "api-key":
            return api_key()
        config = load_serving_config()
        if args.command == "train-demo-model":
            return train(config, state, args.model, args.alias)
        if args.command == "drift":
            return drift(config, state, args.model, args.market)
        if args.command == "dev":
            return dev(state, args.dagster_port, args.mlflow_port)
        if args.command == "serve":
            return serve(config, args.host, args.port, args.workers, args.insecure)
        if args.command == "demo-bigquery":
            with running_emulator(state.home / "bigquery") as emulator:
                os.environ.update(emulator.environment(BIGQUERY_DEMO_DATASET))
                print(
                    f"BigQuery emulator on {emulator.api_endpoint}, dataset prefix "
                    f"{BIGQUERY_DEMO_DATASET!r}"
                )
                return demo_on_warehouse(config, state, "demo")
        return demo_on_warehouse(config, state, args.command)
    except (ConfigError, ServingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C during `demo` or `drift`: a run it interrupted is marked failed by Dagster.
        print("interrupted", file=sys.stderr)
        return 130


def demo_on_warehouse(config: ServingConfig, state: LocalState, command: str) -> int:
    """Fill in the demo sources of the deployment's warehouse; for `demo`, score them too."""
    from coverage_serving.demo.runner import write_demo_sources

    warehouse = open_warehouse(state)
    written = write_demo_sources(warehouse, config)
    print(f"demo sources: {written} partition(s) generated")
    return demo(config, state, warehouse) if command == "demo" else 0


def serve(config: ServingConfig, host: str, port: int, workers: int, insecure: bool) -> int:
    """Serve every configured model over HTTP until interrupted."""
    configure_online_logging()
    require_safe_exposure(host, keyring_of(config.online.auth) is not None, insecure)
    print(f"on-demand scoring: http://{host}:{port}/v1/models  (OpenAPI: /docs)", flush=True)
    # Each worker process builds its own app (online_app): an import string, not an object.
    uvicorn.run(
        "coverage_serving.cli:online_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # configure_online_logging's, in this process and each worker
        access_log=False,  # the audit line says more, and says it once
    )
    return 0


def online_app() -> FastAPI:
    """The app of one server process, from the environment the serve command runs in."""
    configure_online_logging()
    state = LocalState.from_env()
    config = load_serving_config()
    registry, warehouse = open_registry(config.registry, state), open_warehouse(state)
    return build_app(config, registry, warehouse, keyring_of(config.online.auth))


def configure_online_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def api_key() -> int:
    key = new_key()
    print(f"API key (give it to the client; it is not stored anywhere): {key}")
    print(f"its hash, for the client's keys list in the keys document: {hash_key(key)}")
    return 0


def drift(config: ServingConfig, state: LocalState, name: str, market: str | None) -> int:
    """Print the monitoring checks of the model's profiled partitions, as the UI shows them."""
    model = _configured(config, name)
    store = ProfileStore(open_warehouse(state), model)
    for line in drift_summary(store, open_registry(config.registry, state), model, market):
        print(line)
    return 0


def train(config: ServingConfig, state: LocalState, name: str, alias: str | None) -> int:
    model = _configured(config, name)
    version = train_demo_model(model, state.tracking_uri, alias)
    moved = f"; alias {alias!r} now points at it" if alias else ""
    print(f"registered {model.registered_model} version {version}{moved}")
    return 0


def release(run_id: str) -> int:
    import dagster as dg

    from coverage_serving.instance.pools import release_run

    with dg.DagsterInstance.get() as instance:
        print(release_run(instance, run_id))
    return 0


def _configured(config: ServingConfig, name: str) -> ModelConfig:
    if name not in config.models:
        raise ConfigError(f"no model {name!r} in the serving config {sorted(config.models)}")
    return config.models[name]


def demo(config: ServingConfig, state: LocalState, warehouse: Warehouse) -> int:
    import dagster as dg

    from coverage_serving.definitions import build_definitions
    from coverage_serving.demo.runner import (
        describe_predictions,
        ensure_demo_models,
        record_served_versions,
        run_main_jobs,
    )

    for registered in ensure_demo_models(config, state):
        print(f"demo model registered: {registered}")
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        defs = build_definitions(config, state)
        failed = run_main_jobs(defs, config, instance)
        print(f"main jobs finished in {time.perf_counter() - started:.1f}s")
        # After scoring: a version is compiled against the latest feature partition.
        recorded, unrecorded = record_served_versions(defs, config, state, instance)
        print("\n".join(recorded))
        failed += unrecorded
    for line in describe_predictions(warehouse, config):
        print(line)
    if failed:
        print("failed runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def dev(state: LocalState, dagster_port: int, mlflow_port: int) -> int:
    """Run both UIs on 127.0.0.1 until interrupted; stopping one stops the other."""
    workspace = REPO_ROOT / "workspace.yaml"
    commands = [
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            str(workspace),
            "-h",
            "127.0.0.1",
            "-p",
            str(dagster_port),
        ],
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            state.tracking_uri,
            "--default-artifact-root",
            state.mlflow_artifacts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",  # one person browsing; the default 4 only costs memory
            # Not a line per static file the MLflow UI loads.
            "--uvicorn-opts",
            "--no-access-log",
        ],
    ]
    print(f"Dagster UI: http://127.0.0.1:{dagster_port}  MLflow UI: http://127.0.0.1:{mlflow_port}")
    return run_until_interrupted(
        [
            # `dagster dev` stops its webserver, daemon and code servers itself; interrupted
            # with them, they printed a threading traceback.
            Server("dagster", commands[0]),
            # `mlflow server` only waits on the uvicorn process it starts.
            Server("mlflow", commands[1], interrupt_group=True),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
