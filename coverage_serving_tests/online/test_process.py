"""`coverage-serving serve` as a real process on a free port, called over HTTP."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.demo.emulator import free_port
from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_CONFIG
from coverage_serving_tests.online.conftest import PARTITION
from coverage_serving_tests.processes import answers, stop, wait_for

pytestmark = pytest.mark.e2e


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_the_service_answers_over_http_with_the_batch_tables_predictions(
    small_config: ServingConfig, batch: LocalState, warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    model = small_config.models["grid"]
    features = warehouse.read_partition(features_table(model), PARTITION).head(100)
    table = warehouse.read_partition(predictions_table(model), PARTITION).set_index("grid_id")
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {**os.environ, HOME_VAR: str(batch.home), "COVERAGE_SERVING_CONFIG": str(SMALL_CONFIG)}
    server = subprocess.Popen(
        [sys.executable, "-m", "coverage_serving.cli", "serve", f"--port={port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/readyz (log: {log.name})", lambda: answers(f"{base}/readyz"), 120, 0.5)
        answer = post(
            f"{base}/v1/models/grid/predict",
            {
                "market": "IN",
                "month": "2026-01-01",
                "rows": features[["grid_id", *model.feature_columns]].to_dict("records"),
            },
        )
    finally:
        stop(server, signal.SIGINT, timeout=30)
        log.close()

    served = {row["grid_id"]: row["whitespace_score"] for row in answer["rows"]}
    assert len(served) == 100
    assert served == table.loc[list(served), "whitespace_score"].to_dict()
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]
