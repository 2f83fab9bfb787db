"""Schemathesis against the endpoint's own /openapi.json, in process: requests generated from
the document, those it allows and those that break each of its rules (wrong types, nulls, nested
values, huge numbers, odd strings, missing and unknown fields, bodies that are not JSON), each
get a 2xx or a documented 4xx with a body of the documented shape, never a 500. Bounded and
deterministic: a fixed seed, derandomised, no example database."""

import pytest
import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

from coverage_serving.config import ServingConfig
from coverage_serving.online.app import build_app
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 18,
        "generation": {"max-examples": 50, "deterministic": True, "database": "none"},
        # A refused request may also be a 404 (an unknown model), a 413 (too many rows) or a 415
        # (MLflow's /invocations without a JSON or CSV body).
        "checks": {"negative_data_rejection": {"expected-statuses": [400, 404, 413, 415, 422]}},
    }
)


@pytest.fixture
def api(
    request: pytest.FixtureRequest,
    small_config: ServingConfig,
    batch: LocalState,
    warehouse: DuckDBWarehouse,
) -> schemathesis.BaseSchema:
    # Schemathesis 4.32 renames the test node through `_nodeid`, which pytest 9.2 no longer has.
    request.node._nodeid = request.node.nodeid
    registry = ModelRegistry(batch.tracking_uri, allow_pickled_models=True)
    # Thousands of requests a second: the document is under test here, not the rate limit.
    unlimited = small_config.online.model_copy(update={"rate_limit": "1000000/second"})
    app = build_app(small_config.model_copy(update={"online": unlimited}), registry, warehouse)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)

    @schema.hook
    def filter_failure(
        context: schemathesis.HookContext,
        failure: object,
        case: schemathesis.Case,
        response: schemathesis.Response,
    ) -> bool:
        # The one rule JSON Schema cannot state: a key at most once among the rows
        # (uniqueItems compares whole rows). The input contract refuses a repeated key.
        checks = [v["check"] for v in response.json().get("violations", [])]
        repeated_key = checks == ["multiple_fields_uniqueness"]
        # MLflow's and the Open Inference Protocol's bodies are documented as the protocols
        # define them; which rows a model takes only /v1's per-model schema states.
        foreign_protocol = not case.path.startswith("/v1/")
        return not (
            isinstance(failure, RejectedPositiveData) and (repeated_key or foreign_protocol)
        )

    return schema


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
def test_every_request_gets_an_answer_the_openapi_document_lists(case: schemathesis.Case) -> None:
    case.call_and_validate()
