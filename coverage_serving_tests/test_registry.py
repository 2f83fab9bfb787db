"""The registry adapter against a real sqlite MLflow registry holding both demo models."""

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest
from mlflow.models import Model

from coverage_serving.config import ServingConfig
from coverage_serving.demo.emulator import free_port
from coverage_serving.demo.models import train_demo_model
from coverage_serving.errors import ModelLoadError, RegistryError, RegistryUnavailableError
from coverage_serving.registry import (
    ModelRegistry,
    RequestPolicy,
    environment_warnings,
    input_types,
    redact,
)
from coverage_serving.settings import LocalState

pytestmark = pytest.mark.integration


def test_an_alias_resolves_to_a_pinned_version(state: LocalState) -> None:
    ref = ModelRegistry(state.tracking_uri, allow_pickled_models=True).resolve(
        "coverage_grid_model", "champion"
    )
    assert (ref.name, ref.version, ref.alias) == ("coverage_grid_model", 1, "champion")
    assert ref.uri == "models:/coverage_grid_model/1"
    assert ref.run_id


@pytest.mark.parametrize(
    ("name", "alias"), [("coverage_grid_model", "challenger"), ("no_such_model", "champion")]
)
def test_an_unknown_alias_or_model_names_both(state: LocalState, name: str, alias: str) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=True)
    with pytest.raises(RegistryError, match=f"model '{name}': alias '{alias}' cannot be resolved"):
        registry.resolve(name, alias)


def test_a_registry_that_does_not_answer_is_reported() -> None:
    uri = f"http://user:s3cret@127.0.0.1:{free_port()}"
    registry = ModelRegistry(uri, True, RequestPolicy(retries=0, timeout_seconds=2))
    with pytest.raises(RegistryUnavailableError, match="did not answer") as raised:
        registry.resolve("coverage_grid_model", "champion")
    assert "s3cret" not in str(raised.value)
    assert "***@127.0.0.1" in str(raised.value)


def test_a_failing_registry_is_retried_with_backoff_then_reported() -> None:
    with _unavailable_server() as (uri, hits):
        registry = ModelRegistry(uri, True, RequestPolicy(retries=2, backoff_seconds=1))
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError, match=r"retried 2 time\(s\)"):
            registry.versions("coverage_grid_model")
        elapsed = time.monotonic() - started

    assert len(hits) == 3  # the request and 2 retries, then no more
    # urllib3 waits 0 s, then backoff x 2 = 2 s (+ MLflow's jitter of up to 1 s each).
    assert 1.9 <= elapsed < 6, elapsed
    # The policy is set for the request only; the process's MLflow settings are untouched.
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_an_alias_to_a_deleted_version_names_the_alias(state: LocalState) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=True)
    mlflow.MlflowClient(state.tracking_uri).delete_model_version("coverage_grid_model", "1")

    with pytest.raises(RegistryError, match="alias 'champion' cannot be resolved"):
        registry.resolve("coverage_grid_model", "champion")


def test_a_corrupt_artifact_fails_to_load(tmp_path: Path, small_config: ServingConfig) -> None:
    own = _own_registry(tmp_path, small_config)
    registry = ModelRegistry(own.tracking_uri, allow_pickled_models=True)
    ref = registry.resolve("coverage_grid_model", "champion")
    [artifact] = own.mlflow_artifacts.rglob("model.lgb")
    artifact.write_text("this is not a LightGBM model\n")

    with pytest.raises(ModelLoadError, match="version 1: artifact cannot be loaded"):
        registry.load(ref)


def test_a_version_is_loaded_once_per_process(state: LocalState) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=True)
    ref = registry.resolve("coverage_store_model", "champion")
    first, second = registry.load(ref), registry.load(ref)
    assert first is second
    types = input_types(first.metadata)
    assert types is not None
    assert types["store_type"] == "string"
    assert types["latitude"] == "double"


def test_a_pickled_model_is_refused_without_trust(state: LocalState) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=False)
    ref = registry.resolve("coverage_store_model", "champion")
    with pytest.raises(ModelLoadError, match="allow_pickled_models: true") as raised:
        registry.load(ref)
    assert "model 'coverage_store_model' version 1" in str(raised.value)


def test_a_native_lightgbm_model_loads_without_pickle_trust(state: LocalState) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=False)
    loaded = registry.load(registry.resolve("coverage_grid_model", "champion"))
    assert "population" in (input_types(loaded.metadata) or {})


def test_missing_artifacts_fail_to_load(tmp_path: Path, small_config: ServingConfig) -> None:
    own = _own_registry(tmp_path, small_config)
    registry = ModelRegistry(own.tracking_uri, allow_pickled_models=True)
    ref = registry.resolve("coverage_grid_model", "champion")
    [artifact] = own.mlflow_artifacts.rglob("model.lgb")
    artifact.unlink()
    with pytest.raises(ModelLoadError, match="model 'coverage_grid_model' version 1"):
        registry.load(ref)


def test_unmet_requirements_and_another_python_are_warned_of(tmp_path: Path) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    (tmp_path / "requirements.txt").write_text(
        "mlflow\nnumpy<1\nno-such-package-here==1.0\n-r other.txt\npandas; python_version<'3'\n"
    )
    same_python = Model(flavors={"python_function": {"python_version": f"{running}.99"}})

    [unmet] = environment_warnings(tmp_path, same_python)

    assert unmet.startswith("this environment does not satisfy the model's requirements: numpy")
    assert "required: numpy<1" in unmet
    assert (
        "no-such-package-here (current: uninstalled, required: no-such-package-here==1.0)" in unmet
    )
    assert "mlflow" not in unmet.split(": ", 1)[1] and "pandas" not in unmet
    old_python = Model(flavors={"python_function": {"python_version": "3.8.10"}})
    (tmp_path / "requirements.txt").unlink()
    assert environment_warnings(tmp_path, old_python) == [
        f"saved with Python 3.8.10, running on Python {running}: it may be incompatible"
    ]


def test_a_model_load_gives_the_environment_warnings(
    tmp_path: Path, small_config: ServingConfig, caplog: pytest.LogCaptureFixture
) -> None:
    own = _own_registry(tmp_path, small_config)
    registry = ModelRegistry(own.tracking_uri, allow_pickled_models=False)
    ref = registry.resolve("coverage_grid_model", "champion")
    [model_file] = own.mlflow_artifacts.rglob("model.lgb")
    requirements = model_file.parent / "requirements.txt"
    requirements.write_text(requirements.read_text() + "\nnumpy<1\n")

    registry.load(ref)

    assert "model 'coverage_grid_model' version 1: this environment does not satisfy" in caplog.text
    assert "required: numpy<1" in caplog.text


def test_credentials_are_redacted() -> None:
    assert redact("https://user:pa55@mlflow.example.com/x") == "https://***@mlflow.example.com/x"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def _own_registry(tmp_path: Path, small_config: ServingConfig) -> LocalState:
    # A registry of its own: the loaded-model cache is per process and registry, and the
    # shared registry's artifacts serve every other test.
    own = LocalState(tmp_path / "own")
    own.create()
    train_demo_model(small_config.models["grid"], own.tracking_uri, "champion")
    return own


@contextmanager
def _unavailable_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that answers every request 503, recording the paths it was asked."""
    hits: list[str] = []

    class Unavailable(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_error(503)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
