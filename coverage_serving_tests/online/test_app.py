"""The on-demand endpoint in process (FastAPI's TestClient) against the real sqlite registry
and DuckDB warehouse of the test state: parity with the batch table, the alias followed, the
limits, and a clear 5xx when the registry or the server fails (bad requests: test_refusals)."""

from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import predictions_table
from coverage_serving.demo.emulator import free_port
from coverage_serving.online import app as online_app
from coverage_serving.registry import ModelRegistry, RequestPolicy
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.online.conftest import PARTITION, client_for, feature_rows, predict
from coverage_serving_tests.registry_helpers import Constant, register_version

KEYS = {"store": "store_id", "grid": "grid_id"}


@pytest.mark.parametrize("name", ["store", "grid"])
def test_predictions_equal_the_batch_table_for_the_same_version(
    name: str, small_config: ServingConfig, warehouse: DuckDBWarehouse, client: TestClient
) -> None:
    model = small_config.models[name]
    rows = feature_rows(small_config, warehouse, name)

    response = predict(client, name, market="IN", month="2026-01-01", rows=rows)

    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["rows"]).set_index(KEYS[name])
    table = warehouse.read_partition(predictions_table(model), PARTITION).set_index(KEYS[name])
    expected = table.loc[served.index]
    for column in model.prediction_columns:
        assert served[column].tolist() == expected[column].tolist()  # bitwise equal floats
    lineage = ["model_name", "model_version", "model_alias", "model_run_id", "market"]
    assert served[lineage].to_dict("list") == expected[lineage].to_dict("list")
    assert set(served["month"]) == {"2026-01-01"}
    assert response.json()["model_version"] == 1
    assert "dagster_run_id" not in served


def test_a_key_is_scored_from_its_latest_feature_row(
    small_config: ServingConfig, warehouse: DuckDBWarehouse, client: TestClient
) -> None:
    [row] = feature_rows(small_config, warehouse, "store")[:1]
    table = warehouse.read_partition(predictions_table(small_config.models["store"]), PARTITION)

    response = predict(client, "store", market="IN", key={"store_id": row["store_id"]})

    assert response.status_code == 200, response.text
    [served] = response.json()["rows"]
    [expected] = table[table["store_id"] == row["store_id"]].to_dict("records")
    assert served["month"] == "2026-01-01"
    assert served["sales_potential"] == expected["sales_potential"]


def test_models_health_readiness_and_openapi(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert {(m["model"], m["version"], m["alias"]) for m in models} == {
        ("store", 1, "champion"),
        ("grid", 1, "champion"),
    }
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    predict_paths = {"/v1/models/store/predict", "/v1/models/grid/predict"}
    assert {"/v1/models", "/v1/models/{model}/refresh", "/readyz", *predict_paths} <= set(paths)


def test_the_served_version_follows_the_alias_and_a_version_can_be_pinned(
    small_config: ServingConfig, batch: LocalState, warehouse: DuckDBWarehouse, client: TestClient
) -> None:
    rows = feature_rows(small_config, warehouse, "store")[:3]
    register_version(small_config.models["store"], batch, Constant())  # version 2, champion

    assert client.post("/v1/models/store/refresh").json()["version"] == 2
    moved = predict(client, "store", market="IN", month="2026-01-01", rows=rows).json()
    pinned = predict(client, "store", market="IN", month="2026-01-01", rows=rows, version=1)

    assert moved["model_version"] == 2
    assert {r["sales_potential"] for r in moved["rows"]} == {100.0}
    assert {r["model_alias"] for r in moved["rows"]} == {"champion"}
    assert pinned.json()["model_version"] == 1
    assert {r["model_alias"] for r in pinned.json()["rows"]} == {None}
    assert {r["sales_potential"] for r in pinned.json()["rows"]} != {100.0}


def test_too_many_rows_and_too_large_a_body_are_refused(
    small_config: ServingConfig, warehouse: DuckDBWarehouse, batch: LocalState
) -> None:
    config = small_config.model_copy(
        update={"online": small_config.online.model_copy(update={"max_rows": 2})}
    )
    registry = ModelRegistry(batch.tracking_uri, allow_pickled_models=True)
    rows = feature_rows(small_config, warehouse, "store")[:3]
    with client_for(config, registry, warehouse) as client:
        many = predict(client, "store", market="IN", month="2026-01-01", rows=rows)
        large = client.post(
            "/v1/models/store/predict",
            content=b" " * (config.online.max_body_bytes + 1),
            headers={"content-type": "application/json"},
        )

    assert many.status_code == 413 and "at most 2" in many.json()["message"]
    assert large.status_code == 413 and "max_body_bytes" in large.json()["message"]


def test_a_registry_that_does_not_answer_leaves_the_service_unready(
    small_config: ServingConfig, warehouse: DuckDBWarehouse
) -> None:
    dead = ModelRegistry(
        f"http://127.0.0.1:{free_port()}",
        allow_pickled_models=True,
        requests=RequestPolicy(0, 0, 1),
    )
    with client_for(small_config, dead, warehouse) as client:
        ready = client.get("/readyz")
        response = predict(client, "store", market="IN", key={"store_id": "x"})

    assert ready.status_code == 503
    assert all("did not answer" in m["last_error"] for m in ready.json()["models"])
    assert response.status_code == 503 and "no loaded version" in response.json()["message"]


def test_a_server_fault_is_a_500_without_internals(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("secret /internal/path")

    monkeypatch.setattr(online_app, "latest_features", broken)

    response = predict(client, "store", market="IN", key={"store_id": "x"})

    assert response.status_code == 500
    assert "secret" not in response.text and "internal error" in response.json()["message"]
