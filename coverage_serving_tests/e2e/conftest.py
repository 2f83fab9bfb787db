"""The platform as a person runs it: `coverage-serving dev` (Dagster webserver, daemon and
MLflow server as real processes) on free ports, over a scored copy of the test state."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from coverage_serving.config import ServingConfig, load_serving_config
from coverage_serving.definitions import build_definitions
from coverage_serving.demo.emulator import free_port
from coverage_serving.demo.runner import run_main_jobs
from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving_tests.conftest import SMALL_CONFIG
from coverage_serving_tests.processes import answers, stop, wait_for

POLL_SECONDS = 5  # the sensors' interval in this config: the smallest the config allows


@dataclass(frozen=True)
class Platform:
    state: LocalState
    config: ServingConfig
    dagster_url: str
    mlflow_url: str

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        """Ask the Dagster webserver what the UI asks it."""
        request = urllib.request.Request(
            f"{self.dagster_url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]


@pytest.fixture(scope="module")
def platform(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("platform")
    state = LocalState(root / "home")
    subprocess.run(["cp", "-r", str(trained_home), str(state.home)], check=True)
    config_path = root / "serving.yaml"
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    raw["automation"] = {"registry_poll_seconds": POLL_SECONDS, "source_poll_seconds": 5}
    config_path.write_text(yaml.safe_dump(raw))
    config = load_serving_config(config_path)
    # Every table scored with version 1 first, as after `make demo`.
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_main_jobs(build_definitions(config, state), config, instance) == []

    dagster_port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        HOME_VAR: str(state.home),
        "COVERAGE_SERVING_CONFIG": str(config_path),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (root / "dev.log").open("w")
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coverage_serving.cli",
            "dev",
            f"--dagster-port={dagster_port}",
            f"--mlflow-port={mlflow_port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Platform(
        state, config, f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}"
    )
    try:
        for url in (f"{running.dagster_url}/server_info", f"{running.mlflow_url}/health"):
            wait_for(f"{url} to answer (log: {log.name})", lambda url=url: answers(url), 240)
        yield running
    finally:
        stop(dev, signal.SIGTERM, timeout=90)  # what stops `make dev`: both UIs, their workers
        log.close()
