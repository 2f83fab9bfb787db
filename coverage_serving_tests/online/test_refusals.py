"""What a client can get wrong and what it gets back: a 4xx whose body names the model and the
field at fault, never a 500 (issue 18: a number for a string key was a DuckDB error and a 500).
One case per kind of value, against the app over the real registry and warehouse."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coverage_serving.config import ServingConfig
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.online.conftest import feature_rows, predict

Body = Callable[[dict[str, Any]], Any]
MISSING = object()  # a change that removes the field


def key(**key: Any) -> Body:
    """A key lookup of `key`."""
    return lambda row: {"market": "IN", "key": key}


def rows(**changes: Any) -> Body:
    """Rows of 2026-01 whose one row is a valid store row with `changes`."""

    def body(row: dict[str, Any]) -> dict[str, Any]:
        changed = {
            name: value for name, value in {**row, **changes}.items() if value is not MISSING
        }
        return {"market": "IN", "month": "2026-01-01", "rows": [changed]}

    return body


def request(**changes: Any) -> Body:
    """A valid rows request with `changes` to its top-level fields."""

    def body(row: dict[str, Any]) -> dict[str, Any]:
        changed = {**rows()(row), **changes}
        return {name: value for name, value in changed.items() if value is not MISSING}

    return body


REFUSED = {
    # key lookups
    "a number for a string key": (key(store_id=1), "key.store_id"),
    "a number beyond int64 for a key": (key(store_id=10**30), "key.store_id"),
    "null for a key": (key(store_id=None), "key.store_id"),
    "an object for a key": (key(store_id={"id": "S-IN-000001"}), "key.store_id"),
    "a list for a key": (key(store_id=["S-IN-000001"]), "key.store_id"),
    "true for a key": (key(store_id=True), "key.store_id"),
    "NaN for a key": (key(store_id=float("nan")), "key.store_id"),
    "a lone surrogate in a key": (key(store_id="\ud800"), "key.store_id"),
    "no key column": (key(), "key.store_id"),
    "a column that is not a key": (key(store_id="S-IN-000001", id="x"), "key.id"),
    "a key that is not an object": (lambda row: {"market": "IN", "key": "S"}, "key"),
    # feature rows
    "text in a float": (rows(latitude="north"), "rows[0].latitude"),
    "true in a float": (rows(latitude=True), "rows[0].latitude"),
    "an object in a float": (rows(latitude={"deg": 19.0}), "rows[0].latitude"),
    "a list in a float": (rows(latitude=[19.0]), "rows[0].latitude"),
    "null in a float": (rows(latitude=None), "rows[0].latitude"),
    "a number beyond a double": (rows(latitude=10**400), "rows[0].latitude"),
    "Infinity": (rows(latitude=float("inf")), "rows[0].latitude"),
    "NaN": (rows(latitude=float("nan")), "rows[0].latitude"),
    "a fraction in an int": (rows(poi_count=1.5), "rows[0].poi_count"),
    "an int beyond 2**53": (rows(poi_count=2**63), "rows[0].poi_count"),
    "text in an int": (rows(poi_count="3"), "rows[0].poi_count"),
    "true in an int": (rows(poi_count=True), "rows[0].poi_count"),
    "an unseen category": (rows(store_type="hypermarket"), "rows[0].store_type"),
    "a category in another case": (rows(store_type="Kirana"), "rows[0].store_type"),
    "a number for a string key in a row": (rows(store_id=5), "rows[0].store_id"),
    "a missing feature": (rows(latitude=MISSING), "rows[0].latitude"),
    "a missing key in a row": (rows(store_id=MISSING), "rows[0].store_id"),
    "a row that is not an object": (request(rows=["S-IN-000001"]), "rows[0]"),
    "rows that are not a list": (request(rows={"store_id": "S"}), "rows"),
    "no rows": (request(rows=[]), "rows"),
    # the rest of the request
    "a market the model does not serve": (request(market="XX"), "market"),
    "a market in another case": (request(market="in"), "market"),
    "a hostile market": (request(market="I'N"), "market"),
    "a number for a market": (request(market=1), "market"),
    "a month that is not a first day": (request(month="2026-01-15"), "month"),
    "month 13": (request(month="2026-13-01"), "month"),
    "a month beyond a timestamp": (request(month="9999-12-01"), "month"),
    "a number for a month": (request(month=0), "month"),
    "a month with a time": (request(month="2026-01-01T00:00:00"), "month"),
    "rows without a month": (request(month=MISSING), "month"),
    "a month with a key": (lambda row: {**key(store_id="S")(row), "month": "2026-01-01"}, "month"),
    "version 0": (request(version=0), "version"),
    "a version beyond the registry's": (request(version=2**31), "version"),
    "text for a version": (request(version="1"), "version"),
    "true for a version": (request(version=True), "version"),
    "a fraction for a version": (request(version=1.5), "version"),
    "an unknown field": (request(extra=1), "extra"),
    "both rows and key": (lambda row: {**rows()(row), "key": {"store_id": "S"}}, "body"),
    "neither rows nor key": (request(rows=MISSING, month=MISSING), "body"),
    "a body that is not an object": (lambda row: [rows()(row)], "body"),
    "a body that is not JSON": (lambda row: json.dumps(rows()(row))[:-1], "body"),
}


@pytest.fixture
def store_row(
    small_config: ServingConfig, batch: LocalState, warehouse: DuckDBWarehouse
) -> dict[str, Any]:
    """A valid row of the store model, from the feature snapshot the batch run wrote."""
    return feature_rows(small_config, warehouse, "store")[0]


def test_a_bad_request_gets_a_422_naming_the_model_and_the_field(
    store_row: dict[str, Any], client: TestClient, subtests: pytest.Subtests
) -> None:
    for case, (body, field) in REFUSED.items():
        with subtests.test(case):
            sent = body(store_row)
            # As Python's json module writes it (NaN, Infinity), the way a careless client does.
            content = sent if isinstance(sent, str) else json.dumps(sent)

            response = client.post(
                "/v1/models/store/predict",
                content=content,
                headers={"content-type": "application/json"},
            )

            assert response.status_code == 422, response.text
            answer = response.json()
            assert (answer["error"], answer["model"]) == ("InvalidRequest", "store")
            assert field in [problem["field"] for problem in answer["fields"]], answer
            assert f"{field}: " in answer["message"]


@pytest.mark.parametrize(
    "content",
    [b'{"market": "IN", "key": {"store_id": "\xff"}}', b"[" * 100_000],
    ids=["not UTF-8", "nested too deep"],
)
def test_a_body_that_cannot_be_parsed_gets_a_400(content: bytes, client: TestClient) -> None:
    response = client.post(
        "/v1/models/store/predict", content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "BadRequest",
        "message": "There was an error parsing the body",
    }


@pytest.mark.parametrize(
    ("model", "body", "words"),
    [
        ("price", {"market": "IN", "key": {"id": "x"}}, "model 'price' is not configured"),
        ("store", {"market": "IN", "key": {"store_id": "nope"}}, "no feature row"),
        ("store", {"market": "IN", "key": {"store_id": "x"}, "version": 99}, "version 99"),
    ],
    ids=["unknown model", "unknown key", "unknown version"],
)
def test_what_does_not_exist_gets_a_404_naming_it(
    model: str, body: dict[str, Any], words: str, client: TestClient
) -> None:
    response = predict(client, model, **body)

    assert response.status_code == 404, response.text
    assert words in response.json()["message"]


def test_rows_that_fail_the_input_contract_get_a_422_naming_the_column(
    store_row: dict[str, Any], client: TestClient
) -> None:
    twice = [store_row, store_row]

    response = predict(client, "store", market="IN", month="2026-01-01", rows=twice)

    assert response.status_code == 422, response.text
    answer = response.json()
    assert (answer["contract"], answer["model"]) == ("input", "store")
    assert [v["column"] for v in answer["violations"]] == ["store_id"]


def test_whole_numbers_written_with_a_fraction_are_integers(
    store_row: dict[str, Any], client: TestClient
) -> None:
    whole = {**store_row, "poi_count": float(store_row["poi_count"])}

    response = predict(client, "store", market="IN", month="2026-01-01", rows=[whole], version=1.0)

    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == 1
