"""Dagster resources that hand the scoring core its warehouse and registry adapters."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource
from dagster_gcp import BigQueryResource
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from coverage_serving.registry import ModelRegistry, RequestPolicy
from coverage_serving.warehouse import DuckDBWarehouse, Warehouse
from coverage_serving.warehouse.bigquery import (
    BigQueryClients,
    BigQueryWarehouse,
    storage_read_client,
)


class WarehouseResource(ConfigurableResource):
    """What assets ask for; each deployment binds one subclass under the key `warehouse`."""

    def open(self) -> Warehouse:
        raise NotImplementedError(f"{type(self).__name__} does not implement open()")


class DuckDBWarehouseResource(WarehouseResource):
    duckdb: DuckDBResource

    def open(self) -> Warehouse:
        return DuckDBWarehouse(self.duckdb.get_connection)


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
        yield bigquery.Client(
            project=self.project,
            location=self.location,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.api_endpoint},
        )


class BigQueryWarehouseResource(WarehouseResource):
    bigquery: EndpointBigQueryResource
    dataset: str
    # Only for emulators: the Storage Read API's gRPC host:port.
    storage_endpoint: str | None = None

    def open(self) -> Warehouse:
        return BigQueryWarehouse(self._clients, str(self.bigquery.project), self.dataset)

    @contextmanager
    def _clients(self) -> Iterator[BigQueryClients]:
        with self.bigquery.get_client() as client:
            storage = storage_read_client(self.storage_endpoint, client._credentials)
            try:
                yield BigQueryClients(rest=client, storage=storage)
            finally:
                client.close()
                if storage is not None:
                    storage.transport.close()


class RegistryResource(ConfigurableResource):
    """The MLflow model registry (dagster-mlflow has nothing for the registry or aliases)."""

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
