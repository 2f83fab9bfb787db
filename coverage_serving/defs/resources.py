"""Dagster resources that hand the scoring core its warehouse and registry adapters, built from
the pieces of the Dagster-free wiring (coverage_serving/wiring.py)."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource
from dagster_gcp import BigQueryResource
from google.cloud import bigquery

from coverage_serving.registry import ModelRegistry, RequestPolicy
from coverage_serving.warehouse import Warehouse
from coverage_serving.warehouse.bigquery import BigQueryWarehouse
from coverage_serving.wiring import (
    DuckDBTarget,
    WarehouseTarget,
    bigquery_client,
    bigquery_clients,
)


class WarehouseResource(ConfigurableResource):
    """What assets ask for; each deployment binds one subclass under the key `warehouse`."""

    def open(self) -> Warehouse:
        raise NotImplementedError(f"{type(self).__name__} does not implement open()")


class DuckDBWarehouseResource(WarehouseResource):
    duckdb: DuckDBResource

    def open(self) -> Warehouse:
        return DuckDBTarget(self.duckdb.database, self.duckdb.connection_config).open()


class EndpointBigQueryResource(BigQueryResource):
    """dagster-gcp's BigQueryResource, plus the endpoint override it lacks: its get_client
    builds `bigquery.Client(project, location)` only, so it cannot reach an emulator. With
    `api_endpoint` set, the client talks to it without credentials; without, it is unchanged
    (credentials from `gcp_credentials` or the standard Google mechanisms)."""

    api_endpoint: str | None = None

    @contextmanager
    def get_client(self) -> Iterator[bigquery.Client]:
        if self.api_endpoint is None:
            with super().get_client() as client:
                yield client
            return
        yield bigquery_client(self.project, self.location, self.api_endpoint)


class BigQueryWarehouseResource(WarehouseResource):
    bigquery: EndpointBigQueryResource
    dataset: str
    # Only for emulators: the Storage Read API's gRPC host:port.
    storage_endpoint: str | None = None

    def open(self) -> Warehouse:
        # The client from dagster-gcp's resource: its `gcp_credentials` apply.
        connect = partial(bigquery_clients, self.bigquery.get_client, self.storage_endpoint)
        return BigQueryWarehouse(connect, str(self.bigquery.project), self.dataset)


def warehouse_resource(target: WarehouseTarget) -> WarehouseResource:
    """The resource that opens the warehouse `target` names, configurable in the UI."""
    if isinstance(target, DuckDBTarget):
        return DuckDBWarehouseResource(
            duckdb=DuckDBResource(database=target.database, connection_config=dict(target.settings))
        )
    return BigQueryWarehouseResource(
        bigquery=EndpointBigQueryResource(
            project=target.project, location=target.location, api_endpoint=target.api_endpoint
        ),
        dataset=target.dataset,
        storage_endpoint=target.storage_endpoint,
    )


class RegistryResource(ConfigurableResource):
    """The MLflow model registry (no Dagster integration covers the registry or aliases)."""

    tracking_uri: str
    allow_pickled_models: bool = False
    request_retries: int = 3
    request_backoff_seconds: int = 1
    request_timeout_seconds: int = 10

    def open(self) -> ModelRegistry:
        return ModelRegistry(
            self.tracking_uri,
            self.allow_pickled_models,
            RequestPolicy(
                self.request_retries, self.request_backoff_seconds, self.request_timeout_seconds
            ),
        )
