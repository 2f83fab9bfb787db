"""Dagster resources that hand the scoring core its warehouse and registry adapters."""

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from coverage_serving.registry import ModelRegistry
from coverage_serving.warehouse import DuckDBWarehouse, Warehouse


class WarehouseResource(ConfigurableResource):
    """What assets ask for; each deployment binds one subclass under the key `warehouse`."""

    def open(self) -> Warehouse:
        raise NotImplementedError(f"{type(self).__name__} does not implement open()")


class DuckDBWarehouseResource(WarehouseResource):
    duckdb: DuckDBResource

    def open(self) -> Warehouse:
        return DuckDBWarehouse(self.duckdb.get_connection)


class RegistryResource(ConfigurableResource):
    """The MLflow model registry (dagster-mlflow has nothing for the registry or aliases)."""

    tracking_uri: str
    allow_pickled_models: bool = False

    def open(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.allow_pickled_models)
