"""The production examples in docs/deploy cannot run here (no Postgres, Kubernetes or Google
credentials), so they are at least loaded and validated against the real config schemas."""

import importlib
from pathlib import Path

import dagster as dg
import pytest
from dagster._config import validate_config  # no public API validates an instance file
from dagster._core.instance.config import dagster_instance_config

from coverage_serving.config import default_config_path, load_serving_config
from coverage_serving.definitions import resources_for_deployment
from coverage_serving.defs.resources import BigQueryWarehouseResource
from coverage_serving.settings import LocalState

DEPLOY = Path(__file__).parents[1] / "docs" / "deploy"
SHIPPED_CONFIG = Path(__file__).parents[1] / "coverage_serving" / "config" / "serving.yaml"


def test_the_example_dagster_yaml_validates_with_its_classes() -> None:
    config, _ = dagster_instance_config(str(DEPLOY))

    assert set(config["storage"]) == {"postgres"}
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 10
    # A run whose pod died is failed and its pool slots freed by the daemon (run monitoring;
    # K8sRunLauncher checks the run's job, supports_check_run_worker_health).
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    for section in ("run_coordinator", "run_launcher"):
        module = importlib.import_module(config[section]["module"])
        configurable = getattr(module, config[section]["class"])
        checked = validate_config(configurable.config_type(), config[section].get("config", {}))
        assert checked.success, (section, checked.errors)


def test_the_example_environment_selects_bigquery_without_an_emulator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for line in (DEPLOY / "production.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("BIGQUERY_API_ENDPOINT", raising=False)
    monkeypatch.delenv("BIGQUERY_STORAGE_ENDPOINT", raising=False)
    assert default_config_path() == Path("/app/config/serving.yaml")
    config = load_serving_config(SHIPPED_CONFIG)  # /app/... is the image's copy of it

    resources = resources_for_deployment(config, LocalState(tmp_path))

    warehouse = resources["warehouse"]
    assert isinstance(warehouse, BigQueryWarehouseResource)
    assert warehouse.bigquery.project == "retail-coverage-prod"
    assert warehouse.bigquery.location == "EU"
    assert warehouse.bigquery.api_endpoint is None and warehouse.storage_endpoint is None
    tracking_uri = resources["registry"].tracking_uri  # type: ignore[attr-defined]
    assert isinstance(tracking_uri, dg.EnvVar)  # resolved at run time, never shown in the UI
    assert tracking_uri.get_value() == "https://mlflow.internal.example.com"
