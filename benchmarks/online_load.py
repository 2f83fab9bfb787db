"""Load test of the on-demand endpoint (issue: on-demand scoring). Prints its figures.

    .venv/bin/python benchmarks/online_load.py [--requests 500]

Registers the shipped demo models in a temporary state directory and first times each model's
own `pyfunc.predict` in this process (the floor). Then starts `coverage-serving serve` as its own
process on a free loopback port and sends a bounded loop of requests one after another over one
keep-alive connection: 1-row and 100-row requests to each model, p50/p99 latency, requests/s and
the p50 overhead over the in-process predict. Then 8 concurrent clients (a thread and a
keep-alive connection each) against one worker process and against `--workers 2`: requests/s
and errors.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from coverage_serving.config import load_serving_config
from coverage_serving.config.loader import CONFIG_ENV_VAR, default_config_path
from coverage_serving.core.served_version import load_served_model
from coverage_serving.demo.data import GENERATORS
from coverage_serving.demo.emulator import free_port
from coverage_serving.demo.runner import ensure_demo_models
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import HOME_VAR, LocalState

PARTITION = Partition("IN", date(2026, 1, 1))
CONCURRENT_CLIENTS = 8


def feature_rows(name: str, count: int) -> list[dict[str, Any]]:
    model = load_serving_config().models[name]
    frame = GENERATORS[model.source_table](PARTITION, count)
    return frame[[*model.key_columns, *model.feature_columns]].to_dict(orient="records")


def wait_until_ready(port: int, server: subprocess.Popen) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < 120:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server was not ready after 120 s")


def in_process_predict_ms(state: LocalState, name: str, rows: list[dict[str, Any]]) -> float:
    """p50 of the registered model's own pyfunc.predict on these rows, in this process."""
    config = load_serving_config()
    model = config.models[name]
    registry = ModelRegistry(state.tracking_uri, config.registry.allow_pickled_models)
    loaded = load_served_model(registry, model)
    frame = pd.DataFrame(rows)[model.feature_columns]
    for _ in range(20):
        loaded.predict(frame)
    times = []
    for _ in range(300):
        started = time.perf_counter()
        loaded.predict(frame)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def send(connection: http.client.HTTPConnection, name: str, body: bytes) -> float:
    sent = time.perf_counter()
    connection.request("POST", f"/v1/models/{name}/predict", body, HEADERS)
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"{name}: HTTP {response.status}: {answer[:500]!r}")
    return time.perf_counter() - sent


HEADERS = {"Content-Type": "application/json"}


def request_body(rows: list[dict[str, Any]]) -> bytes:
    # Bytes: http.client then sends headers and body in one write. A str body goes in a second
    # write, which Nagle's algorithm holds until the server's delayed ACK (~40 ms on Linux).
    return json.dumps({"market": PARTITION.market, "month": "2026-01-01", "rows": rows}).encode()


def measure(port: int, name: str, rows: list[dict[str, Any]], requests: int) -> dict[str, float]:
    body = request_body(rows)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(10):  # warm-up: first-call costs are not what a steady client sees
        send(connection, name, body)
    started = time.perf_counter()
    latencies = sorted(send(connection, name, body) for _ in range(requests))
    seconds = time.perf_counter() - started
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests_per_s": requests / seconds,
        "rows_per_s": requests * len(rows) / seconds,
    }


def concurrent(
    port: int, name: str, rows: list[dict[str, Any]], requests: int
) -> tuple[float, int]:
    """Requests/s and errors of CONCURRENT_CLIENTS clients sending `requests` each."""
    body = request_body(rows)

    def client() -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        errors = 0
        for _ in range(requests):
            try:
                send(connection, name, body)
            except (RuntimeError, OSError):
                errors += 1
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        return errors

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
        errors = sum(pool.map(lambda _: client(), range(CONCURRENT_CLIENTS)))
    return CONCURRENT_CLIENTS * requests / (time.perf_counter() - started), errors


def report_concurrent(port: int, requests: int, workers: int) -> None:
    rate, errors = concurrent(port, "grid", feature_rows("grid", 1), requests // 4)
    print(
        f"grid 1 row, {CONCURRENT_CLIENTS} concurrent clients, {workers} worker(s): "
        f"{rate:6.1f} requests/s, {errors} errors",
        flush=True,
    )


def unlimited_config(home: str) -> Path:
    """The shipped config with a rate limit no benchmark client reaches: what is measured is the
    request's cost, not the limiter's refusals (test_auth.py covers those)."""
    config = yaml.safe_load(default_config_path().read_text())
    config["online"]["rate_limit"] = "1000000/second"
    path = Path(home) / "serving.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_server(home: str, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coverage_serving.cli",
            "serve",
            f"--port={port}",
            f"--workers={workers}",
        ],
        env={**os.environ, HOME_VAR: home, CONFIG_ENV_VAR: str(unlimited_config(home))},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"{workers} worker(s): ready after {wait_until_ready(port, server):.1f}s", flush=True)
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coverage-serving-online-") as home:
        state = LocalState(Path(home))
        state.create()
        ensure_demo_models(load_serving_config(), state)
        floor = {
            (name, size): in_process_predict_ms(state, name, feature_rows(name, size))
            for name in ("store", "grid")
            for size in (1, 100)
        }
        server, port = start_server(home, workers=1)
        try:
            for name in ("store", "grid"):
                for size in (1, 100):
                    figures = measure(port, name, feature_rows(name, size), args.requests)
                    print(
                        f"{name:5s} {size:3d} row(s)/request, {args.requests} requests: "
                        f"in-process predict p50 {floor[name, size]:5.2f} ms | HTTP p50 "
                        f"{figures['p50_ms']:5.2f} ms  p99 {figures['p99_ms']:5.2f} ms  overhead "
                        f"{figures['p50_ms'] - floor[name, size]:5.2f} ms  "
                        f"{figures['requests_per_s']:6.1f} requests/s  "
                        f"{figures['rows_per_s']:8.0f} rows/s",
                        flush=True,
                    )
            report_concurrent(port, args.requests, workers=1)
        finally:
            server.terminate()
            server.wait(timeout=30)
        server, port = start_server(home, workers=2)
        try:
            report_concurrent(port, args.requests, workers=2)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
