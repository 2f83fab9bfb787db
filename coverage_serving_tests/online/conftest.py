"""The batch tables the on-demand endpoint is compared with, and the endpoint in process
(FastAPI's TestClient) over the same registry and warehouse."""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from coverage_serving.config import ServingConfig
from coverage_serving.core.tables import features_table
from coverage_serving.definitions import resources_for_deployment
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.online.app import build_app
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse

PARTITION = Partition("IN", date(2026, 1, 1))
SAMPLE = 25


@pytest.fixture
def batch(
    small_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> LocalState:
    """Both models' feature snapshot and prediction table for PARTITION, scored by Dagster."""
    for model in small_config.models.values():
        result = dg.materialize(
            build_model_assets(model),
            partition_key=PARTITION.key,
            resources=resources_for_deployment(small_config, state),
            instance=instance,
        )
        assert result.success
    return state


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
    """The first SAMPLE rows of the feature snapshot of PARTITION, as a client sends them."""
    model = config.models[name]
    features = warehouse.read_partition(features_table(model), PARTITION).head(SAMPLE)
    return features[[*model.key_columns, *model.feature_columns]].to_dict(orient="records")


def predict(client: TestClient, name: str, **body: Any) -> Any:
    return client.post(f"/v1/models/{name}/predict", json=body)
