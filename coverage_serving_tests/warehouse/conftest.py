"""The warehouse the contract tests run on: each of them, a DuckDB file and the BigQuery
emulator (a dataset of the test's own)."""

from pathlib import Path

import pytest

from coverage_serving.settings import LocalState
from coverage_serving.warehouse import Warehouse
from coverage_serving.wiring import DuckDBTarget, open_warehouse


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBTarget(str(tmp_path / "warehouse.duckdb")).open()
    request.getfixturevalue("bigquery_env")
    return open_warehouse(LocalState(tmp_path))
