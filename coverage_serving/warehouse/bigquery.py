"""The production warehouse: BigQuery through google-cloud-bigquery, reading large partitions
with the Storage Read API and replacing a partition in one multi-statement transaction."""

import io
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as google_errors
from google.cloud import bigquery

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

BQ_TYPES = {
    "string": "STRING",
    "int": "INT64",
    "float": "FLOAT64",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_MODES = {True: "NULLABLE", False: "REQUIRED"}
STAGING_LIFETIME = timedelta(hours=1)  # a staging table a crash left behind expires by itself


@dataclass(frozen=True)
class BigQueryClients:
    rest: bigquery.Client
    # None when the Storage Read API is not available: reads then go through REST.
    storage: Any | None  # google.cloud.bigquery_storage.BigQueryReadClient


Connect = Callable[[], AbstractContextManager[BigQueryClients]]


def storage_read_client(endpoint: str | None, credentials: Any) -> Any | None:
    """A Storage Read client, on `endpoint` when given (an emulator speaks plain gRPC there);
    None when google-cloud-bigquery-storage is not installed."""
    try:
        from google.cloud.bigquery_storage import BigQueryReadClient
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )
    except ImportError:
        return None
    if endpoint is None:
        return BigQueryReadClient(credentials=credentials)
    import grpc

    # Arrow batches of a whole partition exceed gRPC's 4 MB default message size.
    channel = grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", -1)])
    return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))


class BigQueryWarehouse(StagedSwap[bigquery.Client]):
    """Table `schema.name` of the interface is table `name` of dataset `<dataset>_<schema>`."""

    def __init__(self, connect: Connect, project: str, dataset: str) -> None:
        self._connect = connect
        self.project = project
        self.dataset = dataset
        self._dialect = Dialect(
            table=lambda table: f"`{self.table_id(table)}`",
            quote=lambda name: f"`{name}`",
            parameter=lambda name: f"@{name}",
        )

    def table_id(self, table: TableSpec) -> str:
        return f"{self.project}.{self.dataset}_{table.schema}.{table.name}"

    def read_partition(self, table: TableSpec, partition: Partition) -> pd.DataFrame:
        batches = list(self._arrow_batches(table, partition))
        arrow = pa.Table.from_batches(batches) if batches else arrow_schema(table).empty_table()
        return arrow_to_frame(arrow, table)

    def read_batches(
        self,
        table: TableSpec,
        partition: Partition,
        batch_rows: int,
        carried: Sequence[str] = (),
    ) -> Iterator[pd.DataFrame]:
        for batch in self._arrow_batches(table, partition):
            for start in range(0, batch.num_rows, batch_rows):
                rows = pa.Table.from_batches([batch.slice(start, batch_rows)])
                yield arrow_to_frame(rows, table, carried)

    def _arrow_batches(self, table: TableSpec, partition: Partition) -> Iterator[pa.RecordBatch]:
        """The partition's rows as Arrow batches: Storage Read streams when available (a
        read session per query result), else REST pages."""
        with self._connect() as clients, _as_warehouse_errors(table, partition, "reading"):
            self._require_columns(clients.rest, table)
            job = clients.rest.query(
                select_partition_sql(self.table_id(table), table.column_names),
                job_config=partition_parameters(partition),
            )
            if clients.storage is not None:
                streamed = job.result().to_arrow_iterable(bqstorage_client=clients.storage)
                try:
                    first = next(streamed, None)
                except google_errors.GoogleAPICallError:
                    # e.g. no read-session permission: REST is slower but needs none.
                    streamed = None
                if streamed is not None:
                    yield from ([] if first is None else [first])
                    yield from streamed
                    return
            yield from job.result().to_arrow_iterable(bqstorage_client=None)

    @contextmanager
    def _writing(self, table: TableSpec, partition: Partition) -> Iterator[bigquery.Client]:
        with self._connect() as clients, _as_warehouse_errors(table, partition, "replacing"):
            yield clients.rest

    def _drop_staging(self, client: bigquery.Client, staging: str) -> None:
        client.delete_table(staging, not_found_ok=True)

    def list_partitions(self, table: TableSpec) -> list[Partition]:
        with self._connect() as clients, _as_warehouse_errors(table, None, "listing"):
            found = self._columns(clients.rest, table)
            if not found:
                return []
            require_columns(table, self.table_id(table), found)
            listed = clients.rest.query(
                f"SELECT DISTINCT market, month FROM `{self.table_id(table)}` "
                "ORDER BY market, month"
            ).result()
            return [Partition(market=row["market"], month=row["month"]) for row in listed]

    def unmatched_markets(
        self, table: TableSpec, markets: Sequence[str], months: Sequence[date]
    ) -> list[UnmatchedMarket]:
        with self._connect() as clients, _as_warehouse_errors(table, None, "counting"):
            self._require_columns(clients.rest, table)
            found = clients.rest.query(
                unmatched_markets_sql(self.table_id(table)),
                job_config=bigquery.QueryJobConfig(
                    query_parameters=[
                        bigquery.ArrayQueryParameter("months", "DATE", list(months)),
                        bigquery.ArrayQueryParameter("markets", "STRING", list(markets)),
                    ]
                ),
            ).result()
            return [UnmatchedMarket(row["month"], row["market"], row["n"]) for row in found]

    def distinct_values(
        self, table: TableSpec, columns: Sequence[str], months: Sequence[date]
    ) -> list[tuple[Partition, tuple[Any, ...]]]:
        with self._connect() as clients, _as_warehouse_errors(table, None, "reading"):
            try:
                clients.rest.get_table(self.table_id(table))
            except google_errors.NotFound:
                return []
            self._require_columns(clients.rest, table)
            selected = ", ".join(f"`{c}`" for c in columns)
            # The month filter prunes the month partitions: only those months are read.
            found = clients.rest.query(
                f"SELECT DISTINCT market, month, {selected} FROM `{self.table_id(table)}` "
                "WHERE month IN UNNEST(@months) ORDER BY market, month",
                job_config=bigquery.QueryJobConfig(
                    query_parameters=[bigquery.ArrayQueryParameter("months", "DATE", list(months))]
                ),
            ).result()
            return [
                (Partition(row["market"], row["month"]), tuple(row[c] for c in columns))
                for row in found
            ]

    def compare_column(
        self,
        served: TableSpec,
        challenger: TableSpec,
        partition: Partition,
        keys: Sequence[str],
        column: str,
    ) -> dict[str, Any]:
        sql = comparison_sql(self._dialect, served, challenger, keys, column)
        with self._connect() as clients, _as_warehouse_errors(challenger, partition, "comparing"):
            self._require_columns(clients.rest, served)
            self._require_columns(clients.rest, challenger)
            [row] = clients.rest.query(sql, job_config=partition_parameters(partition)).result()
            return dict(row.items())

    def latest_row(self, table: TableSpec, market: str, key: Mapping[str, object]) -> pd.DataFrame:
        require_key_columns(table, key)
        parameters = [bigquery.ScalarQueryParameter("market", "STRING", market)] + [
            bigquery.ScalarQueryParameter(f"key_{i}", BQ_TYPES[table.kind(name)], value)
            for i, (name, value) in enumerate(key.items())
        ]
        with self._connect() as clients, _as_warehouse_errors(table, None, "reading"):
            self._require_columns(clients.rest, table)
            job = clients.rest.query(
                latest_row_sql(self.table_id(table), table.column_names, list(key)),
                job_config=bigquery.QueryJobConfig(query_parameters=parameters),
            )
            # One row: REST, no read session (None would make the library create a client).
            return arrow_to_frame(job.result().to_arrow(create_bqstorage_client=False), table)

    def _swap(
        self,
        client: bigquery.Client,
        table: TableSpec,
        staged_table: TableSpec,
        partition: Partition,
        staging: str,
        constants: Constants,
        archive: Archive,
    ) -> None:
        """Keep the replaced rows as `archive` says, delete the partition's rows and insert the
        staged ones, with the constants, in one transaction: readers see the old rows or the
        new rows. A failed statement rolls the whole script back."""
        job_config = partition_parameters(partition)
        job_config.query_parameters = [
            *job_config.query_parameters,
            *(
                bigquery.ScalarQueryParameter(f"constant_{i}", BQ_TYPES[table.kind(name)], value)
                for i, (name, value) in enumerate(constants.items())
            ),
            *(
                bigquery.ScalarQueryParameter(name, BQ_TYPES[kind], value)
                for name, (kind, value) in archive.parameters.items()
            ),
        ]
        client.query(
            replace_partition_sql(
                self.table_id(table),
                staging,
                staged_table.column_names,
                list(constants),
                archive.statements,
            ),
            job_config=job_config,
        ).result()

    def _create_staging(self, client: bigquery.Client, table: TableSpec) -> str:
        staging_id = f"{self.table_id(table)}__staging_{uuid.uuid4().hex[:12]}"
        staging = bigquery.Table(staging_id, schema=bigquery_schema(table.columns))
        staging.expires = datetime.now(UTC) + STAGING_LIFETIME
        client.create_table(staging)
        return staging_id

    def _stage(
        self, client: bigquery.Client, table: TableSpec, staging_id: str, chunk: pd.DataFrame
    ) -> None:
        """Append one chunk to the staging table: Parquet from an Arrow table typed by the
        contract, so the types are exact (no pandas-gbq inference)."""
        parquet = io.BytesIO()
        pq.write_table(_to_arrow(chunk, table), parquet)
        client.load_table_from_file(
            parquet,
            staging_id,
            rewind=True,
            job_config=bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                schema=bigquery_schema(table.columns),
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            ),
        ).result()

    def _count(self, client: bigquery.Client, staging_id: str) -> int:
        [count] = client.query(f"SELECT count(*) AS n FROM `{staging_id}`").result()
        return int(count["n"])

    def _duplicate_keys(
        self, client: bigquery.Client, staging_id: str, keys: Sequence[str]
    ) -> list[tuple[str, int]]:
        found = client.query(duplicate_keys_sql(staging_id, keys)).result()
        return [(row["key"], row["n"]) for row in found]

    def _create_if_missing(self, client: bigquery.Client, table: TableSpec) -> None:
        """Typed columns as named in the config, partitioned by month on the DATE column,
        clustered by market."""
        table_id = self.table_id(table)
        try:
            existing = client.get_table(table_id)
        except google_errors.NotFound:
            client.create_dataset(table_id.rsplit(".", 1)[0], exists_ok=True)
            client.create_table(prediction_table_definition(table_id, table), exists_ok=True)
            return
        require_contract_columns(table, table_id, [field.name for field in existing.schema])
        _describe(client, existing, table)

    def _columns(self, client: bigquery.Client, table: TableSpec) -> dict[str, str]:
        """The table's columns and their types, in order; none when it does not exist."""
        try:
            schema = client.get_table(self.table_id(table)).schema
        except google_errors.NotFound:
            return {}
        return {field.name: field.field_type for field in schema}

    def _require_columns(self, client: bigquery.Client, table: TableSpec) -> None:
        require_columns(table, self.table_id(table), self._columns(client, table))


def _describe(client: bigquery.Client, existing: bigquery.Table, table: TableSpec) -> None:
    """A description edited in serving.yaml reaches a table created before the edit, too: one
    update when the table's or a column's description differs, none otherwise."""
    wanted = {c.name: c.description for c in table.columns}
    schema = [
        bigquery.SchemaField.from_api_repr(
            field.to_api_repr() | {"description": wanted.get(field.name, field.description)}
        )
        for field in existing.schema
    ]
    if existing.description == table.description and schema == existing.schema:
        return
    existing.description = table.description
    existing.schema = schema
    client.update_table(existing, ["description", "schema"])


def bigquery_schema(columns: tuple[Column, ...]) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(
            c.name, BQ_TYPES[c.kind], mode=_MODES[c.nullable], description=c.description
        )
        for c in columns
    ]


def prediction_table_definition(table_id: str, table: TableSpec) -> bigquery.Table:
    definition = bigquery.Table(table_id, schema=bigquery_schema(table.columns))
    definition.description = table.description
    definition.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.MONTH, field="month"
    )
    definition.clustering_fields = ["market"]
    return definition


def select_partition_sql(table_id: str, columns: list[str]) -> str:
    names = ", ".join(f"`{c}`" for c in columns)
    return f"SELECT {names} FROM `{table_id}` WHERE market = @market AND month = @month"


def latest_row_sql(table_id: str, columns: list[str], keys: list[str]) -> str:
    names = ", ".join(f"`{c}`" for c in columns)
    matches = "".join(f" AND `{name}` = @key_{i}" for i, name in enumerate(keys))
    return (
        f"SELECT {names} FROM `{table_id}` WHERE market = @market{matches} "
        "ORDER BY month DESC LIMIT 1"
    )


def unmatched_markets_sql(table_id: str) -> str:
    return (
        f"SELECT month, market, count(*) AS n FROM `{table_id}` "
        "WHERE month IN UNNEST(@months) "
        "AND (market IS NULL OR market NOT IN UNNEST(@markets)) "
        "GROUP BY month, market ORDER BY month, market NULLS LAST"
    )


def replace_partition_sql(
    target: str,
    staging: str,
    staged: Sequence[str],
    constants: Sequence[str] = (),
    before: Sequence[str] = (),
) -> str:
    # @month is bound as a DATE: BigQuery rejects a DATE compared with a timestamp literal
    # (dagster#13147), which the emulator would accept, so the unit tests pin this text.
    # Constant i is the query parameter @constant_i. `before` runs first, in the transaction.
    names = ", ".join(f"`{c}`" for c in [*staged, *constants])
    values = ", ".join(
        [*(f"`{c}`" for c in staged), *(f"@constant_{i}" for i in range(len(constants)))]
    )
    return (
        "BEGIN TRANSACTION;\n"
        + "".join(f"{statement};\n" for statement in before)
        + f"DELETE FROM `{target}` WHERE market = @market AND month = @month;\n"
        f"INSERT INTO `{target}` ({names}) SELECT {values} FROM `{staging}`;\n"
        "COMMIT TRANSACTION;"
    )


def duplicate_keys_sql(table_id: str, keys: Sequence[str]) -> str:
    joined = ", ".join(f"CAST(`{k}` AS STRING)" for k in keys)
    names = ", ".join(f"`{k}`" for k in keys)
    return (
        f"SELECT ARRAY_TO_STRING([{joined}], '/') AS key, count(*) AS n FROM `{table_id}` "
        f"GROUP BY {names} HAVING count(*) > 1 ORDER BY key"
    )


def partition_parameters(partition: Partition) -> bigquery.QueryJobConfig:
    return bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("market", "STRING", partition.market),
            bigquery.ScalarQueryParameter("month", "DATE", partition.month),
        ]
    )


def _to_arrow(rows: pd.DataFrame, table: TableSpec) -> pa.Table:
    """The rows in the Arrow types of the contract."""
    frame = rows[table.column_names].copy()
    for column in table.columns:
        if column.kind == "date":
            frame[column.name] = pd.to_datetime(frame[column.name]).dt.date
        elif column.kind == "timestamp":
            frame[column.name] = pd.to_datetime(frame[column.name], utc=True)
    return pa.Table.from_pandas(frame, schema=arrow_schema(table), preserve_index=False)


def arrow_schema(table: TableSpec) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, ARROW_TYPES[c.kind], nullable=c.nullable) for c in table.columns]
    )


@contextmanager
def _as_warehouse_errors(
    table: TableSpec, partition: Partition | None, action: str
) -> Iterator[None]:
    try:
        yield
    except google_errors.GoogleAPICallError as err:
        where = f"partition {partition} of " if partition else ""
        kept = ", old rows kept" if action == "replacing" else ""
        raise WarehouseError(
            f"{action} {where}{table.qualified_name} in BigQuery failed{kept}: {err.message}"
        ) from None
