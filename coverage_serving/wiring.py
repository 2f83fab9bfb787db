"""The warehouse and the registry of this deployment, assembled from the environment, the serving
config and the local state without importing Dagster: the CLI, the on-demand service and the
demo open them here, and the Dagster resources (defs/resources.py) build theirs from the same
pieces."""

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial

import duckdb
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from coverage_serving.config import RegistryConfig
from coverage_serving.registry import ModelRegistry, RequestPolicy
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse, Warehouse
from coverage_serving.warehouse.bigquery import (
    BigQueryClients,
    BigQueryWarehouse,
    storage_read_client,
)

WAREHOUSE_VAR = "COVERAGE_SERVING_WAREHOUSE"
# DuckDB's buffer pool defaults to 80% of RAM and keeps the blocks a run touched, so a run's
# memory grew with its partition (3.9 GB at 5M rows). Bounded, it spills to disk instead, and
# rows need no insertion order: 1.3 GB and 30% faster; 128 MB instead of 256 MB took another
# 0.1 GB off at 5M rows at no measurable cost (benchmarks/scale.py).
DUCKDB_SETTINGS: Mapping[str, object] = {"memory_limit": "128MB", "preserve_insertion_order": False}
# Another process may hold the file's lock for a moment (a run's step beside the CLI): wait as
# dagster-duckdb's DuckDBResource does, 10 retries 0.1 s apart doubling (about 100 s in all).
DUCKDB_LOCK_RETRIES = 10
DUCKDB_FIRST_WAIT_SECONDS = 0.1


@contextmanager
def duckdb_connection(
    database: str, settings: Mapping[str, object]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the DuckDB file, closed on every exit."""
    wait = DUCKDB_FIRST_WAIT_SECONDS
    for retry in range(DUCKDB_LOCK_RETRIES + 1):
        try:
            connection = duckdb.connect(database, config=dict(settings))
            break
        except (RuntimeError, duckdb.IOException):
            if retry == DUCKDB_LOCK_RETRIES:
                raise
            time.sleep(wait)
            wait *= 2
    try:
        yield connection
    finally:
        connection.close()


def bigquery_client(
    project: str, location: str | None, api_endpoint: str | None
) -> bigquery.Client:
    """A BigQuery client with Google's standard credentials; with `api_endpoint` (an emulator),
    one that talks to it without credentials."""
    if api_endpoint is None:
        return bigquery.Client(project=project, location=location)
    return bigquery.Client(
        project=project,
        location=location,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": api_endpoint},
    )


@contextmanager
def bigquery_clients(
    rest_client: Callable[[], AbstractContextManager[bigquery.Client]],
    storage_endpoint: str | None,
) -> Iterator[BigQueryClients]:
    """The REST client `rest_client` opens and a Storage Read client with its credentials (on
    `storage_endpoint` for an emulator), both closed on every exit."""
    with rest_client() as client:
        storage = storage_read_client(storage_endpoint, client._credentials)
        try:
            yield BigQueryClients(rest=client, storage=storage)
        finally:
            client.close()
            if storage is not None:
                storage.transport.close()


@dataclass(frozen=True)
class DuckDBTarget:
    """The local warehouse: one DuckDB file."""

    database: str
    settings: Mapping[str, object] = field(default_factory=lambda: DUCKDB_SETTINGS)

    def open(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(partial(duckdb_connection, self.database, self.settings))


@dataclass(frozen=True)
class BigQueryTarget:
    """BigQuery: table `schema.name` is table `name` of dataset `<dataset>_<schema>`."""

    project: str
    dataset: str
    location: str | None = None
    api_endpoint: str | None = None  # only for emulators: the REST endpoint
    storage_endpoint: str | None = None  # only for emulators: the Storage Read gRPC host:port

    def open(self) -> BigQueryWarehouse:
        def rest_client() -> AbstractContextManager[bigquery.Client]:
            return nullcontext(bigquery_client(self.project, self.location, self.api_endpoint))

        connect = partial(bigquery_clients, rest_client, self.storage_endpoint)
        return BigQueryWarehouse(connect, self.project, self.dataset)


WarehouseTarget = DuckDBTarget | BigQueryTarget


def warehouse_target(state: LocalState) -> WarehouseTarget:
    """The one environment switch: COVERAGE_SERVING_WAREHOUSE, duckdb (default) or bigquery."""
    warehouse = os.environ.get(WAREHOUSE_VAR, "duckdb")
    if warehouse == "duckdb":
        return DuckDBTarget(str(state.warehouse_path))
    if warehouse == "bigquery":
        return BigQueryTarget(
            project=_required("BIGQUERY_PROJECT"),
            dataset=_required("BIGQUERY_DATASET"),
            location=os.environ.get("BIGQUERY_LOCATION"),
            api_endpoint=os.environ.get("BIGQUERY_API_ENDPOINT"),
            storage_endpoint=os.environ.get("BIGQUERY_STORAGE_ENDPOINT"),
        )
    raise ValueError(f"{WAREHOUSE_VAR}={warehouse!r} is not supported; expected duckdb or bigquery")


def _required(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"{WAREHOUSE_VAR}=bigquery needs {variable} to be set")
    return value


def open_warehouse(state: LocalState) -> Warehouse:
    return warehouse_target(state).open()


def open_registry(registry: RegistryConfig, state: LocalState) -> ModelRegistry:
    """The registry at the state's tracking URI, with the config's pickle trust and patience."""
    policy = RequestPolicy(
        registry.request_retries, registry.request_backoff_seconds, registry.request_timeout_seconds
    )
    return ModelRegistry(state.tracking_uri, registry.allow_pickled_models, policy)
