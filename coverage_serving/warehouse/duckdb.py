"""The local warehouse: one DuckDB file, opened through dagster-duckdb's connection factory."""

from collections.abc import Callable
from contextlib import AbstractContextManager

import duckdb
import pandas as pd

from coverage_serving.errors import WarehouseError
from coverage_serving.partition import Partition
from coverage_serving.warehouse.base import Column, TableSpec, check_rows_fit_partition

SQL_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


def _quote(identifier: str) -> str:
    # Identifiers are validated as plain SQL identifiers by the config; quoting keeps
    # reserved words (e.g. a column named "select") working.
    return f'"{identifier}"'


def _table(table: TableSpec) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


class DuckDBWarehouse:
    def __init__(self, connect: Connect) -> None:
        self._connect = connect

    def read_partition(self, table: TableSpec, partition: Partition) -> pd.DataFrame:
        columns = ", ".join(_quote(c) for c in table.column_names)
        with self._connect() as con:
            self._require_columns(con, table)
            return con.execute(
                f"SELECT {columns} FROM {_table(table)} WHERE market = ? AND month = ?",
                [partition.market, partition.month],
            ).df()

    def replace_partition(
        self,
        table: TableSpec,
        partition: Partition,
        rows: pd.DataFrame,
        *,
        allow_empty: bool = False,
    ) -> int:
        check_rows_fit_partition(table, partition, rows, allow_empty)
        names = ", ".join(_quote(c) for c in table.column_names)
        casts = ", ".join(f"CAST({_quote(c.name)} AS {SQL_TYPES[c.kind]})" for c in table.columns)
        with self._connect() as con:
            self._create_if_missing(con, table)
            con.register("staged_rows", rows[table.column_names])
            try:
                con.execute("BEGIN TRANSACTION")
                con.execute(
                    f"DELETE FROM {_table(table)} WHERE market = ? AND month = ?",
                    [partition.market, partition.month],
                )
                con.execute(
                    f"INSERT INTO {_table(table)} ({names}) SELECT {casts} FROM staged_rows"
                )
                con.execute("COMMIT")
            except duckdb.Error as err:
                con.execute("ROLLBACK")
                raise WarehouseError(
                    f"replacing partition {partition} of {table.qualified_name} failed, "
                    f"old rows kept: {err}"
                ) from err
            finally:
                con.unregister("staged_rows")
        return len(rows)

    def list_partitions(self, table: TableSpec) -> list[Partition]:
        with self._connect() as con:
            if not self._existing_columns(con, table):
                return []
            found = con.execute(
                f"SELECT DISTINCT market, month FROM {_table(table)} ORDER BY market, month"
            ).fetchall()
        return [Partition(market=market, month=month) for market, month in found]

    def _existing_columns(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> list[str]:
        found = con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [table.schema, table.name],
        ).fetchall()
        return [name for (name,) in found]

    def _require_columns(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> None:
        existing = self._existing_columns(con, table)
        if not existing:
            raise WarehouseError(f"table {table.qualified_name} does not exist")
        missing = [c for c in table.column_names if c not in existing]
        if missing:
            raise WarehouseError(f"table {table.qualified_name} has no column(s) {missing}")

    def _create_if_missing(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> None:
        existing = self._existing_columns(con, table)
        if existing and existing != table.column_names:
            raise WarehouseError(
                f"table {table.qualified_name} has columns {existing} but the contract expects "
                f"{table.column_names}: migrate or drop the table"
            )
        if not existing:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(table.schema)}")
            con.execute(f"CREATE TABLE IF NOT EXISTS {_table(table)} ({_ddl(table.columns)})")


def _ddl(columns: tuple[Column, ...]) -> str:
    return ", ".join(
        f"{_quote(c.name)} {SQL_TYPES[c.kind]}{'' if c.nullable else ' NOT NULL'}" for c in columns
    )
