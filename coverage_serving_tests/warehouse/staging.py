"""The staging tables a warehouse holds: what a killed write leaves behind."""

from pathlib import Path

import duckdb
from google.cloud import bigquery

from coverage_serving.warehouse import TableSpec
from coverage_serving.warehouse.bigquery import BigQueryWarehouse


def duckdb_staging(path: Path) -> dict[str, int]:
    """The staging tables in the DuckDB file and their row counts."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging'"
        ).fetchall()
        return {
            name: con.execute(f'SELECT count(*) FROM staging."{name}"').fetchall()[0][0]
            for (name,) in names
        }


def bigquery_staging(warehouse: BigQueryWarehouse, table: TableSpec) -> list[bigquery.Table]:
    """The staging tables of `table`, beside it in its dataset."""
    dataset = warehouse.table_id(table).rsplit(".", 1)[0]
    with warehouse._connect() as clients:
        return [
            clients.rest.get_table(listed.reference)
            for listed in clients.rest.list_tables(dataset)
            if listed.table_id.startswith(f"{table.name}__staging_")
        ]
