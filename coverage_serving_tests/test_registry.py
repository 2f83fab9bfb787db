"""The registry adapter against a real sqlite MLflow registry holding both demo models."""

import socket
from pathlib import Path

import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.demo.models import train_demo_model
from coverage_serving.errors import ModelLoadError, RegistryError
from coverage_serving.registry import ModelRegistry, redact
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


def test_a_registry_that_does_not_answer_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://user:s3cret@127.0.0.1:{_closed_port()}"
    with pytest.raises(RegistryError, match="did not answer") as raised:
        ModelRegistry(uri, allow_pickled_models=True).resolve("coverage_grid_model", "champion")
    assert "s3cret" not in str(raised.value)


def test_a_version_is_loaded_once_per_process(state: LocalState) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=True)
    ref = registry.resolve("coverage_store_model", "champion")
    first, second = registry.load(ref), registry.load(ref)
    assert first.pyfunc is second.pyfunc
    assert first.input_types is not None
    assert first.input_types["store_type"] == "string"
    assert first.input_types["latitude"] == "double"


def test_a_pickled_model_is_refused_without_trust(state: LocalState) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=False)
    ref = registry.resolve("coverage_store_model", "champion")
    with pytest.raises(ModelLoadError, match="allow_pickled_models: true") as raised:
        registry.load(ref)
    assert "model 'coverage_store_model' version 1" in str(raised.value)


def test_a_native_lightgbm_model_loads_without_pickle_trust(state: LocalState) -> None:
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=False)
    loaded = registry.load(registry.resolve("coverage_grid_model", "champion"))
    assert loaded.input_types is not None
    assert "population" in loaded.input_types


def test_missing_artifacts_fail_to_load(tmp_path: Path, small_config: ServingConfig) -> None:
    # A registry of its own: the shared one's artifacts serve every other test.
    own = LocalState(tmp_path / "own")
    own.create()
    train_demo_model(
        small_config.models["grid"], own.tracking_uri, own.mlflow_artifacts, "champion"
    )
    registry = ModelRegistry(own.tracking_uri, allow_pickled_models=True)
    ref = registry.resolve("coverage_grid_model", "champion")
    [artifact] = own.mlflow_artifacts.rglob("model.lgb")
    artifact.unlink()
    with pytest.raises(ModelLoadError, match="model 'coverage_grid_model' version 1"):
        registry.load(ref)


def test_credentials_are_redacted() -> None:
    assert redact("https://user:pa55@mlflow.example.com/x") == "https://***@mlflow.example.com/x"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
