"""Clients teams already have, against `coverage-serving serve` as a live process: MLflow's
ScoringServerClient (/ping, /invocations) and tritonclient's HTTP client (the Open Inference
Protocol's /v2), each bit-equal to /v1 and to the batch table for the same rows."""

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
import yaml
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.demo.emulator import free_port
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_CONFIG
from coverage_serving_tests.online.conftest import PARTITION
from coverage_serving_tests.processes import answers, state_environment, stop, wait_for

pytestmark = pytest.mark.e2e
ROWS = 20
PARAMETERS = {"market": PARTITION.market, "month": PARTITION.month.isoformat()}


@pytest.fixture
def server(batch: LocalState, tmp_path: Path) -> Iterator[str]:
    """The server on a free loopback port, grid as the default model of /invocations."""
    config = yaml.safe_load(SMALL_CONFIG.read_text())
    config["online"] = {**config.get("online", {}), "default_model": "grid"}
    config_path = tmp_path / "serving.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "coverage_serving.cli", "serve", f"--port={port}"],
            env=state_environment(batch, config_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"127.0.0.1:{port}"
        try:
            wait_for(
                f"/readyz (log: {log_path})", lambda: answers(f"http://{base}/readyz"), 120, 0.2
            )
            yield base
        finally:
            stop(process, signal.SIGINT, timeout=30)


def grid_rows(config: ServingConfig, warehouse: DuckDBWarehouse) -> pd.DataFrame:
    model = config.models["grid"]
    features = warehouse.read_partition(features_table(model), PARTITION).head(ROWS)
    return features[[*model.key_columns, *model.feature_columns]].reset_index(drop=True)


def batch_scores(config: ServingConfig, warehouse: DuckDBWarehouse, keys: list[str]) -> list[float]:
    table = warehouse.read_partition(predictions_table(config.models["grid"]), PARTITION)
    return table.set_index("grid_id").loc[keys, "whitespace_score"].tolist()


def v1_scores(base: str, rows: pd.DataFrame) -> list[float]:
    body = {**PARAMETERS, "rows": rows.to_dict(orient="records")}
    request = urllib.request.Request(
        f"http://{base}/v1/models/grid/predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [row["whitespace_score"] for row in json.load(response)["rows"]]


def test_mlflow_scoring_server_client_gets_the_batch_tables_predictions(
    server: str, small_config: ServingConfig, warehouse: DuckDBWarehouse
) -> None:
    rows = grid_rows(small_config, warehouse)
    host, port = server.split(":")
    client = ScoringServerClient(host, int(port))

    client.wait_server_ready(timeout=30)
    predictions = client.invoke(rows, params=PARAMETERS).get_predictions()

    served = predictions.iloc[:, 0].tolist()
    assert served == batch_scores(small_config, warehouse, rows["grid_id"].tolist())
    assert served == v1_scores(server, rows)


def test_mlflow_invocations_take_every_json_format_and_csv(
    server: str, small_config: ServingConfig, warehouse: DuckDBWarehouse
) -> None:
    rows = grid_rows(small_config, warehouse).head(3)
    records = rows.to_dict(orient="records")
    split = rows.to_dict(orient="split", index=False)
    bodies: list[tuple[str, bytes]] = [
        (
            "application/json",
            json.dumps({"dataframe_records": records, "params": PARAMETERS}).encode(),
        ),
        ("application/json", json.dumps({"dataframe_split": split, "params": PARAMETERS}).encode()),
        ("application/json", json.dumps({"instances": records, "params": PARAMETERS}).encode()),
        ("application/json", json.dumps({"inputs": records, "params": PARAMETERS}).encode()),
        ("text/csv", rows.to_csv(index=False, float_format="%.17g").encode()),
    ]
    expected = batch_scores(small_config, warehouse, rows["grid_id"].tolist())
    query = "?market=IN&month=2026-01-01"
    for content_type, body in bodies:
        url = (
            f"http://{server}/models/grid/invocations{query if content_type == 'text/csv' else ''}"
        )
        request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["predictions"] == expected, content_type
            assert response.headers["X-Model-Version"] == "1"


def test_tritonclient_infers_the_batch_tables_predictions(
    server: str, small_config: ServingConfig, warehouse: DuckDBWarehouse
) -> None:
    rows = grid_rows(small_config, warehouse)
    model = small_config.models["grid"]
    client = triton.InferenceServerClient(server)
    inputs = []
    for name in [*model.key_columns, *model.feature_columns]:
        values = rows[name].to_numpy()
        kind = {"O": "BYTES", "i": "INT64", "f": "FP64"}[values.dtype.kind]
        tensor = triton.InferInput(name, [len(rows)], kind)
        tensor.set_data_from_numpy(
            values.astype(object if kind == "BYTES" else values.dtype), binary_data=False
        )
        inputs.append(tensor)

    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("grid")
    metadata = client.get_model_metadata("grid")
    result = client.infer(
        "grid",
        inputs,
        outputs=[triton.InferRequestedOutput("whitespace_score", binary_data=False)],
        parameters=PARAMETERS,
    )

    assert metadata["versions"] == ["1"]
    served = result.as_numpy("whitespace_score").tolist()
    assert served == batch_scores(small_config, warehouse, rows["grid_id"].tolist())
    assert served == v1_scores(server, rows)
    assert result.get_response()["model_version"] == "1"
    assert np.asarray(served).dtype == np.float64
