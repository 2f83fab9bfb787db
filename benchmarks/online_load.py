"""Load test of the on-demand endpoint (issue: on-demand scoring). Prints its figures.

    .venv/bin/python benchmarks/online_load.py [--requests 500]

Registers the shipped demo models in a temporary state directory, starts `coverage-serving
serve` as its own process on a free loopback port, and from this process sends a bounded loop
of requests one after another over one keep-alive connection: 1-row and 100-row requests to
each model. Reports p50/p99 latency and requests/s (and rows/s) per case.
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
from datetime import date
from pathlib import Path
from typing import Any

from coverage_serving.config import load_serving_config
from coverage_serving.demo.data import GENERATORS
from coverage_serving.demo.emulator import free_port
from coverage_serving.demo.runner import ensure_demo_models
from coverage_serving.partition import Partition
from coverage_serving.settings import HOME_VAR, LocalState

PARTITION = Partition("IN", date(2026, 1, 1))


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


def measure(port: int, name: str, rows: list[dict[str, Any]], requests: int) -> dict[str, float]:
    body = json.dumps({"market": PARTITION.market, "month": "2026-01-01", "rows": rows})
    headers = {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(10):  # warm-up: first-call costs are not what a steady client sees
        connection.request("POST", f"/v1/models/{name}/predict", body, headers)
        connection.getresponse().read()
    started = time.perf_counter()
    for _ in range(requests):
        sent = time.perf_counter()
        connection.request("POST", f"/v1/models/{name}/predict", body, headers)
        response = connection.getresponse()
        answer = response.read()
        latencies.append(time.perf_counter() - sent)
        if response.status != 200:
            raise SystemExit(f"{name}: HTTP {response.status}: {answer[:500]!r}")
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests_per_s": requests / seconds,
        "rows_per_s": requests * len(rows) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coverage-serving-online-") as home:
        state = LocalState(Path(home))
        state.create()
        ensure_demo_models(load_serving_config(), state)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "coverage_serving.cli", "serve", f"--port={port}"],
            env={**os.environ, HOME_VAR: home},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            print(f"server ready after {wait_until_ready(port, server):.1f}s (models loaded)")
            for name in ("store", "grid"):
                for size in (1, 100):
                    figures = measure(port, name, feature_rows(name, size), args.requests)
                    print(
                        f"{name:5s} {size:3d} row(s)/request, {args.requests} requests: "
                        f"p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms  "
                        f"{figures['requests_per_s']:6.1f} requests/s  "
                        f"{figures['rows_per_s']:8.0f} rows/s",
                        flush=True,
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
