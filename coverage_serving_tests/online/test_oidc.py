"""Bearer tokens of an OpenID Connect provider (online.auth.oidc): the provider is played by a
real HTTP server on this machine serving a JWKS of a key made here, the tokens are signed with
it by PyJWT; API keys keep working beside them."""

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from coverage_serving.config import AuthConfig, OidcConfig, ServingConfig
from coverage_serving.online.app import build_app
from coverage_serving.online.auth import hash_key, new_key
from coverage_serving.online.credentials import keyring_of
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.online.conftest import feature_rows

ISSUER, AUDIENCE, KEY_ID = "https://login.example.test/", "coverage-serving", "key-1"
KEYS_VAR = "TEST_COVERAGE_SERVING_OIDC_API_KEYS"
API_KEY = new_key()
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Provider(ThreadingHTTPServer):
    """Serves the JWKS of SIGNING_KEY at /jwks; counts the requests."""

    fetches = 0


class _Jwks(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, Provider)
        self.server.fetches += 1
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))
        body = json.dumps({"keys": [public | {"kid": KEY_ID, "use": "sig", "alg": "RS256"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def jwks_url(provider: Provider) -> str:
    return f"http://127.0.0.1:{provider.server_address[1]}/jwks"


def started(
    config: ServingConfig, batch: LocalState, warehouse: DuckDBWarehouse, auth: AuthConfig
) -> TestClient:
    online = config.online.model_copy(update={"auth": auth})
    registry = ModelRegistry(batch.tracking_uri, allow_pickled_models=True)
    app = build_app(
        config.model_copy(update={"online": online}), registry, warehouse, keyring_of(auth)
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(
    small_config: ServingConfig,
    batch: LocalState,
    warehouse: DuckDBWarehouse,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    monkeypatch.setenv(
        KEYS_VAR, f"clients: {{bot: {{scopes: [predict], keys: [{hash_key(API_KEY)}]}}}}"
    )
    oidc = OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url(provider))
    with started(small_config, batch, warehouse, AuthConfig(keys_env=KEYS_VAR, oidc=oidc)) as app:
        yield app


@pytest.fixture
def body(small_config: ServingConfig, warehouse: DuckDBWarehouse, batch: LocalState) -> Any:
    rows = feature_rows(small_config, warehouse, "store")[:1]
    return {"market": "IN", "month": "2026-01-01", "rows": rows}


def token(key: Any = SIGNING_KEY, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ana", "exp": now + 300, "iat": now}
    return jwt.encode(payload | claims, key, algorithm="RS256", headers={"kid": KEY_ID})


def predict(client: TestClient, body: Any, credential: str) -> Any:
    headers = {"Authorization": f"Bearer {credential}"}
    return client.post("/v1/models/store/predict", json=body, headers=headers)


def test_a_token_scores_with_the_scopes_it_grants(
    client: TestClient, body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        scored = predict(client, body, token(scope="openid predict"))
    as_list = predict(client, {**body, "version": 1}, token(scope=["predict", "pin"], sub="bo"))

    assert scored.status_code == 200 and as_list.status_code == 200
    assert as_list.json()["model_version"] == 1
    audit = [r.getMessage() for r in caplog.records if r.name == "coverage_serving.audit"]
    assert '"client": "oidc:ana"' in audit[0]


def test_a_scope_the_token_does_not_grant_is_a_403_naming_it(client: TestClient, body: Any) -> None:
    pinned = predict(client, {**body, "version": 1}, token(scope="predict"))
    refresh = client.post(
        "/v1/models/store/refresh", headers={"Authorization": f"Bearer {token(scope='predict')}"}
    )

    assert pinned.status_code == refresh.status_code == 403
    assert "client 'oidc:ana' may not" in pinned.json()["message"]
    assert "scope 'pin'" in pinned.json()["message"]
    assert "scope 'admin'" in refresh.json()["message"]


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        (lambda: token(scope="predict", exp=int(time.time()) - 120), "Signature has expired"),
        (lambda: token(scope="predict", aud="another-service"), "Audience doesn't match"),
        (lambda: token(scope="predict", iss="https://evil.example/"), "Invalid issuer"),
        (lambda: token(OTHER_KEY, scope="predict"), "Signature verification failed"),
        (lambda: token(scope="predict", sub=None), "sub"),
    ],
    ids=["expired", "audience", "issuer", "signature", "no-subject"],
)
def test_a_token_that_does_not_hold_is_a_401_saying_why_and_never_logged(
    client: TestClient, body: Any, caplog: pytest.LogCaptureFixture, sent: Any, problem: str
) -> None:
    credential = sent()
    with caplog.at_level(logging.DEBUG):
        answer = predict(client, body, credential)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json()["message"].startswith("the bearer token is not valid: ")
    assert problem in answer.json()["message"]
    assert credential not in caplog.text + answer.text


def test_api_keys_work_beside_tokens_and_the_keys_are_fetched_once(
    client: TestClient, body: Any, provider: Provider
) -> None:
    answers = [predict(client, body, token(scope="predict")) for _ in range(3)]
    keyed = client.post("/v1/models/store/predict", json=body, headers={"X-API-Key": API_KEY})

    assert [a.status_code for a in answers] == [200, 200, 200] and keyed.status_code == 200
    assert provider.fetches == 1
    assert predict(client, body, new_key()).status_code == 401


def test_a_provider_that_does_not_answer_is_a_503_naming_it(
    small_config: ServingConfig, batch: LocalState, warehouse: DuckDBWarehouse, body: Any
) -> None:
    gone = Provider(("127.0.0.1", 0), _Jwks)
    url = jwks_url(gone)
    gone.server_close()  # nothing listens there any more
    oidc = OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=url)

    with started(small_config, batch, warehouse, AuthConfig(oidc=oidc)) as client:
        answer = predict(client, body, token(scope="predict"))
        missing = client.post("/v1/models/store/predict", json=body)

    assert answer.status_code == 503
    assert f"signing keys could not be fetched from {url}" in answer.json()["message"]
    assert missing.status_code == 401
    assert "or send the OIDC provider's token as the bearer" in missing.json()["message"]


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({}, "give keys_env or keys_file, or oidc, or both"),
        ({"keys_env": "A", "keys_file": "/b"}, "at most one of keys_env and keys_file"),
        (
            {"oidc": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "http://idp/jwks"}},
            "must be an https:// URL (http:// only for localhost)",
        ),
    ],
)
def test_auth_config_mistakes_are_named(auth: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        AuthConfig.model_validate(auth)
