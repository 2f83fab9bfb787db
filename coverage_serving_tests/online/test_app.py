"""The on-demand endpoint in process (FastAPI's TestClient) against the real sqlite registry
and DuckDB warehouse of the test state: parity with the batch table, the alias followed,
and a clear 4xx/5xx for each bad request."""

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.demo.emulator import free_port
from coverage_serving.online import app as online_app
from coverage_serving.online.app import build_app
from coverage_serving.registry import ModelRegistry, RequestPolicy
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.online.conftest import PARTITION
from coverage_serving_tests.registry_helpers import Constant, register_version

KEYS = {"store": "store_id", "grid": "grid_id"}
SAMPLE = 25


def client_for(config: ServingConfig, registry: ModelRegistry, warehouse: Any) -> TestClient:
    return TestClient(build_app(config, registry, warehouse), raise_server_exceptions=False)


@pytest.fixture
def client(
    small_config: ServingConfig, batch: LocalState, warehouse: DuckDBWarehouse
) -> Iterator[TestClient]:
    registry = ModelRegistry(batch.tracking_uri, allow_pickled_models=True)
    with client_for(small_config, registry, warehouse) as started:
        yield started


def feature_rows(
    config: ServingConfig, warehouse: DuckDBWarehouse, name: str
) -> list[dict[str, Any]]:
    model = config.models[name]
    features = warehouse.read_partition(features_table(model), PARTITION).head(SAMPLE)
    return features[[*model.key_columns, *model.feature_columns]].to_dict(orient="records")


def predict(client: TestClient, name: str, **body: Any) -> Any:
    return client.post(f"/v1/models/{name}/predict", json=body)


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
    assert {"/v1/models", "/v1/models/{model}/predict", "/readyz"} <= set(paths)


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


def _without(row: dict[str, Any], column: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != column}


@pytest.mark.parametrize(
    ("change", "status", "names"),
    [
        (lambda r: _without(r, "latitude"), 422, ["latitude"]),
        (lambda r: {**r, "latitude": "north"}, 422, ["latitude"]),
        (lambda r: {**r, "store_type": "hypermarket"}, 422, ["store_type", "isin"]),
        (lambda r: {**r, "latitude": float("inf")}, 422, ["latitude"]),
        (lambda r: _without(r, "store_id"), 422, ["store_id"]),
    ],
    ids=["missing feature", "text in a float", "unseen category", "inf", "missing key"],
)
def test_a_bad_row_gets_a_422_that_names_the_column(
    change: Any,
    status: int,
    names: list[str],
    small_config: ServingConfig,
    warehouse: DuckDBWarehouse,
    client: TestClient,
) -> None:
    row = change(feature_rows(small_config, warehouse, "store")[0])
    # inf is not JSON: send it as Python's json module would, the way a careless client does.
    body = json.dumps({"market": "IN", "month": "2026-01-01", "rows": [row]})

    response = client.post(
        "/v1/models/store/predict", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == status, response.text
    assert response.json()["contract"] == "input"
    assert all(name in response.json()["message"] for name in names), response.json()


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/models/price/predict", {"market": "IN", "key": {"id": "x"}}, 404, "'price'"),
        ("/v1/models/store/predict", {"market": "IN", "key": {"store_id": "nope"}}, 404, "nope"),
        ("/v1/models/store/predict", {"market": "IN", "key": {"id": "x"}}, 500, "no key column"),
        ("/v1/models/store/predict", {"market": "IN", "rows": []}, 422, "month"),
        ("/v1/models/store/predict", {"market": "IN", "month": "2026-01-01"}, 422, "rows or key"),
        (
            "/v1/models/store/predict",
            {"market": "IN", "month": "2026-01-15", "rows": [{}]},
            422,
            "first day",
        ),
        ("/v1/models/store/predict", {"market": "I'N", "key": {"store_id": "x"}}, 422, "market"),
        ("/v1/models/store/predict", {"market": "IN", "key": {}, "extra": 1}, 422, "extra"),
        (
            "/v1/models/store/predict",
            {"market": "IN", "month": "2026-01-01", "rows": []},
            422,
            "no rows",
        ),
        (
            "/v1/models/store/predict",
            {"market": "IN", "key": {"store_id": "x"}, "version": 99},
            404,
            "version 99",
        ),
    ],
    ids=[
        "unknown model",
        "unknown key",
        "key that is not a key column",
        "rows without month",
        "neither rows nor key",
        "month not a first day",
        "hostile market",
        "unknown field",
        "empty rows",
        "unknown version",
    ],
)
def test_a_bad_request_gets_a_4xx_or_5xx_that_names_the_problem(
    path: str, body: dict[str, Any], status: int, words: str, client: TestClient
) -> None:
    response = client.post(path, json=body)

    assert response.status_code == status, response.text
    assert words in response.text


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
