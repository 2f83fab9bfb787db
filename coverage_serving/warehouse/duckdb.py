"""The local warehouse: one DuckDB file, opened through dagster-duckdb's connection factory."""

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from coverage_serving.errors import WarehouseError
from coverage_serving.partition import Partition
from coverage_serving.warehouse.base import (
    Column,
    Constants,
    TableSpec,
    UnmatchedMarket,
    arrow_to_frame,
    require_columns,
    require_contract_columns,
    require_key_columns,
)
from coverage_serving.warehouse.comparison import comparison_sql
from coverage_serving.warehouse.dialect import Dialect
from coverage_serving.warehouse.history import Archive
from coverage_serving.warehouse.staged_swap import StagedSwap

# What a table's parts are commented with now, by COMMENT ON target.
Comments = dict[str, str | None]
SQL_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}

STAGING_SCHEMA = "staging"  # where a partition's new rows wait for the swap

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


def _quote(identifier: str) -> str:
    # Identifiers are validated as plain SQL identifiers by the config; quoting keeps
    # reserved words (e.g. a column named "select") working.
    return f'"{identifier}"'


def _table(table: TableSpec) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


def _staging_prefix(table: TableSpec) -> str:
    # With the schema: source, features and serving tables may share a name.
    return f"{table.schema}_{table.name}_"


def _in_staging(name: str) -> str:
    return f"{_quote(STAGING_SCHEMA)}.{_quote(name)}"


DIALECT = Dialect(table=_table, quote=_quote, parameter=lambda name: f"${name}")


class DuckDBWarehouse(StagedSwap[duckdb.DuckDBPyConnection]):
    _dialect = DIALECT

    def __init__(self, connect: Connect) -> None:
        self._open = connect

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # dagster-duckdb's get_connection closes its connection only when the block ends
        # without an error: close it on every exit, or a failed write keeps the file open (and
        # a later connection with other settings in this process is refused).
        with self._open() as con:
            try:
                yield con
            finally:
                con.close()

    def read_partition(self, table: TableSpec, partition: Partition) -> pd.DataFrame:
        with self._connect() as con:
            return arrow_to_frame(self._select(con, table, partition).to_arrow_table(), table)

    def read_batches(
        self,
        table: TableSpec,
        partition: Partition,
        batch_rows: int,
        carried: Sequence[str] = (),
    ) -> Iterator[pd.DataFrame]:
        with self._connect() as con:
            # A relation streams; an executed statement's Arrow reader copies the whole result.
            reader = self._select(con, table, partition).to_arrow_reader(batch_rows)
            for batch in reader:
                yield arrow_to_frame(batch, table, carried)

    @contextmanager
    def _writing(
        self, table: TableSpec, partition: Partition
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con:
            yield con

    def _create_staging(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> str:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(STAGING_SCHEMA)}")
        self._drop_leftover_staging(con, table)
        # A real table, not TEMP: DuckDB spills it to disk, so a large partition does not
        # have to fit in memory. Its name is unique; a crash leaves only this table behind.
        staging = _in_staging(f"{_staging_prefix(table)}{uuid.uuid4().hex[:12]}")
        con.execute(f"CREATE TABLE {staging} ({_ddl(table.columns)})")
        return staging

    def _drop_staging(self, con: duckdb.DuckDBPyConnection, staging: str) -> None:
        con.execute(f"DROP TABLE IF EXISTS {staging}")

    def _drop_leftover_staging(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> None:
        """Drop the staging tables a killed write of this table left behind, unread. Safe: one
        run at a time writes a table (its pool has one slot) and one process at a time holds
        the file (DuckDB's write lock, held for the whole replace), so a staging table of this
        table that exists now belongs to no write in progress."""
        leftovers = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
            [STAGING_SCHEMA],
        ).fetchall()
        of_this_table = re.compile(re.escape(_staging_prefix(table)) + "[0-9a-f]{12}")
        for (name,) in leftovers:
            if of_this_table.fullmatch(name):
                con.execute(f"DROP TABLE {_in_staging(name)}")

    def latest_row(self, table: TableSpec, market: str, key: Mapping[str, object]) -> pd.DataFrame:
        require_key_columns(table, key)
        with self._connect() as con:
            self._require_columns(con, table)
            columns = ", ".join(_quote(c) for c in table.column_names)
            matches = "".join(f" AND {_quote(name)} = ?" for name in key)
            found = con.sql(
                f"SELECT {columns} FROM {_table(table)} WHERE market = ?{matches} "
                "ORDER BY month DESC LIMIT 1",
                params=[market, *key.values()],
            )
            return arrow_to_frame(found.to_arrow_table(), table)

    def unmatched_markets(
        self, table: TableSpec, markets: Sequence[str], months: Sequence[date]
    ) -> list[UnmatchedMarket]:
        with self._connect() as con:
            self._require_columns(con, table)
            found = con.execute(
                f"SELECT month, market, count(*) FROM {_table(table)} "
                "WHERE list_contains(?::DATE[], month) "
                "AND (market IS NULL OR NOT list_contains(?::VARCHAR[], market)) "
                "GROUP BY month, market ORDER BY month, market NULLS LAST",
                [list(months), list(markets)],
            ).fetchall()
        return [UnmatchedMarket(month, market, rows) for month, market, rows in found]

    def _select(
        self, con: duckdb.DuckDBPyConnection, table: TableSpec, partition: Partition
    ) -> duckdb.DuckDBPyRelation:
        self._require_columns(con, table)
        columns = ", ".join(_quote(c) for c in table.column_names)
        return con.sql(
            f"SELECT {columns} FROM {_table(table)} WHERE market = ? AND month = ?",
            params=[partition.market, partition.month],
        )

    @contextmanager
    def _staging_errors(self, table: TableSpec, partition: Partition) -> Iterator[None]:
        try:
            yield
        except (duckdb.Error, pa.ArrowException) as err:  # Arrow: a value of the wrong type
            raise WarehouseError(
                f"staging rows for partition {partition} of {table.qualified_name} "
                f"failed, old rows kept: {err}"
            ) from err

    def _stage(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableSpec,
        staging: str,
        chunk: pd.DataFrame,
    ) -> None:
        casts = ", ".join(f"CAST({_quote(c.name)} AS {SQL_TYPES[c.kind]})" for c in table.columns)
        # As Arrow: DuckDB scans a pandas text column holding the GIL vector by vector, which
        # stalls behind the scoring threads; one conversion here, then the scan runs without it.
        arrow = pa.Table.from_pandas(chunk[table.column_names], preserve_index=False)
        con.register("staged_chunk", arrow)
        try:
            con.execute(f"INSERT INTO {staging} SELECT {casts} FROM staged_chunk")
        finally:
            con.unregister("staged_chunk")

    def _count(self, con: duckdb.DuckDBPyConnection, staging: str) -> int:
        [(rows,)] = con.execute(f"SELECT count(*) FROM {staging}").fetchall()
        return int(rows)

    def _duplicate_keys(
        self, con: duckdb.DuckDBPyConnection, staging: str, keys: Sequence[str]
    ) -> list[tuple[str, int]]:
        names = ", ".join(_quote(k) for k in keys)
        return con.execute(
            f"SELECT concat_ws('/', {names}) AS key, count(*) AS n FROM {staging} "
            f"GROUP BY ALL HAVING count(*) > 1 ORDER BY key"
        ).fetchall()

    def _swap(
        self,
        con: duckdb.DuckDBPyConnection,
        table: TableSpec,
        staged_table: TableSpec,
        partition: Partition,
        staging: str,
        constants: Constants,
        archive: Archive,
    ) -> None:
        staged = [_quote(c) for c in staged_table.column_names]
        values = [f"CAST(? AS {SQL_TYPES[table.kind(name)]})" for name in constants]
        names = ", ".join([*staged, *(_quote(name) for name in constants)])
        try:
            con.execute("BEGIN TRANSACTION")
            for statement in archive.statements:
                con.execute(statement, _parameters_of(statement, partition, archive))
            con.execute(
                f"DELETE FROM {_table(table)} WHERE market = ? AND month = ?",
                [partition.market, partition.month],
            )
            con.execute(
                f"INSERT INTO {_table(table)} ({names}) "
                f"SELECT {', '.join([*staged, *values])} FROM {staging}",
                list(constants.values()),
            )
            con.execute("COMMIT")
        except duckdb.Error as err:
            con.execute("ROLLBACK")
            raise WarehouseError(
                f"replacing partition {partition} of {table.qualified_name} failed, "
                f"old rows kept: {err}"
            ) from err

    def list_partitions(self, table: TableSpec) -> list[Partition]:
        with self._connect() as con:
            existing = self._existing_columns(con, table)
            if not existing:
                return []
            require_columns(table, table.qualified_name, existing)
            found = con.execute(
                f"SELECT DISTINCT market, month FROM {_table(table)} ORDER BY market, month"
            ).fetchall()
        return [Partition(market=market, month=month) for market, month in found]

    def distinct_values(
        self, table: TableSpec, columns: Sequence[str], months: Sequence[date]
    ) -> list[tuple[Partition, tuple[Any, ...]]]:
        with self._connect() as con:
            if not self._existing_columns(con, table):
                return []
            self._require_columns(con, table)
            selected = ", ".join(_quote(c) for c in columns)
            found = con.execute(
                f"SELECT DISTINCT market, month, {selected} FROM {_table(table)} "
                "WHERE list_contains(?, month) ORDER BY ALL",
                [list(months)],
            ).fetchall()
        return [(Partition(market, month), tuple(values)) for market, month, *values in found]

    def compare_column(
        self,
        served: TableSpec,
        challenger: TableSpec,
        partition: Partition,
        keys: Sequence[str],
        column: str,
    ) -> dict[str, Any]:
        sql = comparison_sql(DIALECT, served, challenger, keys, column)
        with self._connect() as con:
            self._require_columns(con, served)
            self._require_columns(con, challenger)
            relation = con.execute(sql, {"market": partition.market, "month": partition.month})
            names = [d[0] for d in relation.description]
            return dict(zip(names, relation.fetchone() or (), strict=True))

    def _existing_columns(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> dict[str, str]:
        """The table's columns and their types, in order; none when it does not exist."""
        found = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [table.schema, table.name],
        ).fetchall()
        return dict(found)

    def _require_columns(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> None:
        require_columns(table, table.qualified_name, self._existing_columns(con, table))

    def _create_if_missing(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> None:
        existing = list(self._existing_columns(con, table))
        if existing:
            require_contract_columns(table, table.qualified_name, existing)
        else:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(table.schema)}")
            con.execute(f"CREATE TABLE IF NOT EXISTS {_table(table)} ({_ddl(table.columns)})")
        # A description edited in serving.yaml reaches a table created before the edit, too.
        for statement in _comments(table, self._existing_comments(con, table)):
            con.execute(statement)

    def _existing_comments(self, con: duckdb.DuckDBPyConnection, table: TableSpec) -> Comments:
        where = "WHERE schema_name = ? AND table_name = ?"
        [(described,)] = con.execute(
            f"SELECT comment FROM duckdb_tables() {where}", [table.schema, table.name]
        ).fetchall()
        columns = con.execute(
            f"SELECT column_name, comment FROM duckdb_columns() {where}",
            [table.schema, table.name],
        ).fetchall()
        return {f"TABLE {_table(table)}": described} | {
            f"COLUMN {_table(table)}.{_quote(name)}": comment for name, comment in columns
        }


def _parameters_of(statement: str, partition: Partition, archive: Archive) -> dict[str, object]:
    """The named parameters the statement uses: DuckDB refuses any other."""
    values = {"market": partition.market, "month": partition.month} | {
        name: value for name, (_, value) in archive.parameters.items()
    }
    return {name: values[name] for name in re.findall(r"\$(\w+)", statement)}


def _comments(table: TableSpec, existing: Comments) -> list[str]:
    """COMMENT ON statements for the table's parts whose comment (what `duckdb_tables()` and
    `duckdb_columns()` show) is not its description. COMMENT takes no parameter, so the text is
    a quoted literal."""
    described = [(f"TABLE {_table(table)}", table.description)] + [
        (f"COLUMN {_table(table)}.{_quote(c.name)}", c.description) for c in table.columns
    ]
    return [
        f"COMMENT ON {target} IS {_literal(text) if text else 'NULL'}"
        for target, text in described
        if (text or None) != existing.get(target)
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ddl(columns: tuple[Column, ...]) -> str:
    return ", ".join(
        f"{_quote(c.name)} {SQL_TYPES[c.kind]}{'' if c.nullable else ' NOT NULL'}" for c in columns
    )
