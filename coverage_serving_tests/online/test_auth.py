"""Who may call the endpoint: API keys with scopes, 401/403/429 with JSON bodies naming why,
two valid keys of one client during a rotation, no key in any log line, and the refusal to
serve open on a public address."""

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coverage_serving.config import AuthConfig, ConfigError, ServingConfig
from coverage_serving.online.app import build_app
from coverage_serving.online.auth import hash_key, new_key
from coverage_serving.online.credentials import keyring_of
from coverage_serving.online.exposure import require_safe_exposure
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import HOME_VAR, LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_CONFIG
from coverage_serving_tests.online.conftest import feature_rows

SCORER, OLD_SCORER, PINNER, ADMIN = (new_key() for _ in range(4))
KEYS_VAR = "TEST_COVERAGE_SERVING_API_KEYS"


def keys_document() -> str:
    return f"""
clients:
  dashboard:
    scopes: [predict]
    rate_limit: 5/minute
    keys: [{hash_key(SCORER)}, {hash_key(OLD_SCORER)}]
  analyst:
    scopes: [predict, pin]
    keys: [{hash_key(PINNER)}]
  operator:
    scopes: [admin]
    keys: [{hash_key(ADMIN)}]
"""


@pytest.fixture
def client(
    small_config: ServingConfig,
    batch: LocalState,
    warehouse: DuckDBWarehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    monkeypatch.setenv(KEYS_VAR, keys_document())
    auth = AuthConfig(keys_env=KEYS_VAR)
    config = small_config.model_copy(
        update={"online": small_config.online.model_copy(update={"auth": auth})}
    )
    registry = ModelRegistry(batch.tracking_uri, allow_pickled_models=True)
    app = build_app(config, registry, warehouse, keyring_of(auth))
    with TestClient(app, raise_server_exceptions=False) as started:
        yield started


@pytest.fixture
def body(small_config: ServingConfig, warehouse: DuckDBWarehouse, batch: LocalState) -> Any:
    rows = feature_rows(small_config, warehouse, "store")[:1]
    return {"market": "IN", "month": "2026-01-01", "rows": rows}


def predict(client: TestClient, body: Any, key: str | None, **headers: str) -> Any:
    sent = {**headers, **({"Authorization": f"Bearer {key}"} if key else {})}
    return client.post("/v1/models/store/predict", json=body, headers=sent)


def test_no_key_or_an_unknown_key_is_a_401_saying_which(client: TestClient, body: Any) -> None:
    missing = predict(client, body, None)
    unknown = predict(client, body, new_key())

    assert missing.status_code == unknown.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "no API key" in missing.json()["message"]
    assert "not valid" in unknown.json()["message"]
    assert missing.json()["error"] == "NotAuthenticatedError"


def test_each_protocol_asks_for_a_key(client: TestClient) -> None:
    for path in ["/invocations", "/v2/models/grid/infer", "/v1/models"]:
        method = client.get if path == "/v1/models" else client.post
        assert method(path).status_code == 401, path


def test_a_missing_scope_is_a_403_naming_it(client: TestClient, body: Any) -> None:
    pin = predict(client, {**body, "version": 1}, SCORER)
    refresh = client.post("/v1/models/store/refresh", headers={"X-API-Key": SCORER})
    score_as_admin = predict(client, body, ADMIN)

    assert pin.status_code == refresh.status_code == score_as_admin.status_code == 403
    assert "scope 'pin'" in pin.json()["message"] and "'dashboard'" in pin.json()["message"]
    assert "scope 'admin'" in refresh.json()["message"]
    assert "scope 'predict'" in score_as_admin.json()["message"]


def test_scopes_allow_scoring_pinning_and_refreshing(client: TestClient, body: Any) -> None:
    assert predict(client, body, SCORER).status_code == 200
    assert predict(client, {**body, "version": 1}, PINNER).json()["model_version"] == 1
    refresh = client.post("/v1/models/store/refresh", headers={"X-API-Key": ADMIN})
    assert refresh.status_code == 200


def test_both_keys_of_a_rotation_work_and_share_the_clients_limit(
    client: TestClient, body: Any
) -> None:
    answers = [predict(client, body, key) for key in [SCORER, OLD_SCORER] * 3]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert "rate limit of 5 per 1 minute" in answers[-1].json()["message"]
    # Another client has its own budget.
    assert predict(client, body, PINNER).status_code == 200


def test_no_key_reaches_a_log_line_or_an_answer(
    client: TestClient, body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        answers = [
            predict(client, body, SCORER),
            predict(client, body, new_key()),
            predict(client, {**body, "version": 1}, SCORER),
            client.post("/v1/models/store/refresh", headers={"X-API-Key": PINNER}),
            client.post("/invocations", headers={"X-API-Key": OLD_SCORER}, content=b"x"),
        ]
    audit = [r.getMessage() for r in caplog.records if r.name == "coverage_serving.audit"]

    assert len(audit) == len(answers)
    assert '"client": "dashboard"' in audit[0] and '"rows": 1' in audit[0]
    assert "latitude" not in audit[0]  # no feature values
    text = caplog.text + "".join(a.text + str(a.headers) for a in answers)
    for key in [SCORER, OLD_SCORER, PINNER, ADMIN]:
        assert key not in text
        assert hash_key(key) not in text


def test_a_keys_document_that_is_wrong_names_what_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEYS_VAR, f"clients: {{a: {{scopes: [predict], keys: [{SCORER}]}}}}")
    with pytest.raises(ConfigError, match=r"keys\.0") as refused:
        keyring_of(AuthConfig(keys_env=KEYS_VAR))
    assert SCORER not in str(refused.value)
    monkeypatch.delenv(KEYS_VAR)
    with pytest.raises(ConfigError, match=rf"{KEYS_VAR} is not set"):
        keyring_of(AuthConfig(keys_env=KEYS_VAR))


def test_serving_open_is_allowed_only_on_loopback_or_when_insecure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_safe_exposure("127.0.0.1", authenticated=False, insecure=False)
    require_safe_exposure("::1", authenticated=False, insecure=False)
    require_safe_exposure("0.0.0.0", authenticated=True, insecure=False)
    with pytest.raises(ConfigError, match=r"refusing to serve on 0\.0\.0\.0"):
        require_safe_exposure("0.0.0.0", authenticated=False, insecure=False)
    with caplog.at_level(logging.WARNING):
        require_safe_exposure("0.0.0.0", authenticated=False, insecure=True)
    assert "WITHOUT authentication (--insecure)" in caplog.text


@pytest.mark.e2e
def test_the_server_refuses_to_start_open_on_every_address(tmp_path: Any) -> None:
    served = subprocess.run(
        [sys.executable, "-m", "coverage_serving.cli", "serve", "--host=0.0.0.0", "--port=1"],
        env={**os.environ, HOME_VAR: str(tmp_path), "COVERAGE_SERVING_CONFIG": str(SMALL_CONFIG)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert served.returncode == 2, served.stderr[-2000:]
    assert "refusing to serve on 0.0.0.0 without authentication" in served.stderr
