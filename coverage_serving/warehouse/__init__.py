"""Warehouses behind one small interface: read, atomically replace and list partitions."""

from coverage_serving.warehouse.base import Column, ColumnKind, TableSpec, Warehouse
from coverage_serving.warehouse.duckdb import DuckDBWarehouse

__all__ = ["Column", "ColumnKind", "DuckDBWarehouse", "TableSpec", "Warehouse"]
