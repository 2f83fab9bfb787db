"""The warehouse interface the scoring core writes through, and the table shapes it needs."""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal, Protocol

import pandas as pd
import pyarrow as pa

from coverage_serving.errors import EmptyPartitionError, WarehouseError
from coverage_serving.partition import Partition

ColumnKind = Literal["string", "int", "float", "date", "timestamp"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    nullable: bool = False
    description: str | None = None  # what a reader of the warehouse's catalog sees


@dataclass(frozen=True)
class TableSpec:
    """A table partitioned by the `market` and `month` columns it must contain."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    description: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def kind(self, name: str) -> ColumnKind:
        return next(c.kind for c in self.columns if c.name == name)

    def without(self, names: Iterable[str]) -> "TableSpec":
        """The table less the named columns: what is staged row by row when those columns
        are constants added at the swap."""
        dropped = set(names)
        unknown = sorted(dropped - set(self.column_names))
        if unknown:
            raise WarehouseError(f"{self.qualified_name} has no column(s) {unknown}")
        return replace(self, columns=tuple(c for c in self.columns if c.name not in dropped))


# The columns a history table adds to the columns of the table whose replaced rows it keeps.
REPLACED_AT = "replaced_at"  # when the swap that replaced the row ran (its transaction)
REPLACED_BY = "replaced_by_run_id"  # the run whose swap replaced it
REPLACED_COLUMNS = (
    Column(REPLACED_AT, "timestamp", description="when the swap that replaced the row ran"),
    Column(REPLACED_BY, "string", description="the Dagster run whose swap replaced the row"),
)


def history_of(table: TableSpec, name: str) -> TableSpec:
    """The table named `name` that keeps the rows replaced in `table`: its columns, then when
    and by which run they were replaced."""
    return TableSpec(
        table.schema,
        name,
        table.columns + REPLACED_COLUMNS,
        f"Rows replaced in {table.qualified_name} by a rescoring with another version.",
    )


@dataclass(frozen=True)
class History:
    """Where a partition replace keeps the rows it replaces, in the same transaction."""

    table: TableSpec  # history_of(the replaced table, ...)
    # A constant of the replace (e.g. the model version): old rows that hold its new value are
    # not kept, so a rerun with the same value does not fill history with copies.
    version_column: str
    replaced_by: str  # the run that replaces the rows
    keep_versions: int | None = None  # per partition, the last K values replaced; None: all


# A partition's rows: one frame, or chunks of it streamed one at a time.
Rows = pd.DataFrame | Iterable[pd.DataFrame]


@dataclass(frozen=True)
class Staged:
    """What a partition's staged rows look like before they are swapped in."""

    rows: int
    duplicated_rows: int = 0  # rows whose key occurs more than once in the partition
    duplicate_sample: tuple[str, ...] = ()  # a few of those keys, "/"-joined


@dataclass(frozen=True)
class UnmatchedMarket:
    """Rows of a month whose market value is none of the markets asked about."""

    month: date
    market: str | None  # exactly as stored: 'IN ' and 'in' are not 'IN'; None is NULL
    rows: int


# Called with the staged rows' summary before the swap; raising keeps the old rows.
Verify = Callable[[Staged], None]
# Columns with one value for the whole partition (lineage): added by the swap's INSERT, so
# they are not converted, staged and compressed once per row (a third of the staging time).
Constants = Mapping[str, object]


class Warehouse(Protocol):
    def read_partition(self, table: TableSpec, partition: Partition) -> pd.DataFrame:
        """The table's columns for one partition; fails if the table lacks any of them."""
        ...

    def read_batches(
        self,
        table: TableSpec,
        partition: Partition,
        batch_rows: int,
        carried: Sequence[str] = (),
    ) -> Iterator[pd.DataFrame]:
        """The partition in frames of at most `batch_rows` rows, streamed: memory stays
        bounded by the batch, not the partition. The `carried` columns stay Arrow-backed
        (pd.ArrowDtype), for a caller that only writes them back (arrow_to_frame)."""
        ...

    def replace_partition(
        self,
        table: TableSpec,
        partition: Partition,
        rows: Rows,
        *,
        constants: Constants | None = None,
        keys: Sequence[str] = (),
        verify: Verify | None = None,
        allow_empty: bool = False,
        history: History | None = None,
    ) -> int:
        """Stage `rows` (chunk by chunk; every column but the `constants`), let `verify` judge
        the staged whole (its duplicate `keys` included), then swap the partition's rows for
        them, with the constants, atomically: readers see old or new, never both. No rows is
        refused unless `allow_empty`. With `history`, the replaced rows move to its table in
        the same transaction."""
        ...

    def list_partitions(self, table: TableSpec) -> list[Partition]:
        """The partitions that hold rows, in order; none when the table does not exist yet."""
        ...

    def distinct_values(
        self, table: TableSpec, columns: Sequence[str], months: Sequence[date]
    ) -> list[tuple[Partition, tuple[Any, ...]]]:
        """Each partition of those months with each distinct combination of `columns` in its
        rows; none when the table does not exist yet."""
        ...

    def unmatched_markets(
        self, table: TableSpec, markets: Sequence[str], months: Sequence[date]
    ) -> list[UnmatchedMarket]:
        """The rows of those months whose market is none of `markets` (NULL included), counted
        per month and market value, in that order: the rows no partition of `markets` reads."""
        ...

    def compare_column(
        self,
        served: TableSpec,
        challenger: TableSpec,
        partition: Partition,
        keys: Sequence[str],
        column: str,
    ) -> dict[str, Any]:
        """The figures of `comparison_sql` for one partition of two tables: one row."""
        ...

    def latest_row(self, table: TableSpec, market: str, key: Mapping[str, object]) -> pd.DataFrame:
        """The market's row whose key columns equal `key`, from the latest month that has it:
        one row, or none."""
        ...


def require_key_columns(table: TableSpec, key: Mapping[str, object]) -> None:
    """Key names become SQL identifiers: only the table's own columns are accepted."""
    unknown = sorted(set(key) - set(table.column_names))
    if not key or unknown:
        raise WarehouseError(f"{table.qualified_name} has no key column(s) {unknown or '(none)'}")


def require_columns(table: TableSpec, name: str, found: Mapping[str, str]) -> None:
    """Refuse to read table `name` unless it has every column of `table` under its exact name,
    its date columns as DATE; `found` maps its columns to their types (none: no table). A
    column held under another case or with spaces around it is named as it exists."""
    if not found:
        raise WarehouseError(f"table {name} does not exist")
    missing = [c for c in table.column_names if c not in found]
    problems = [f"table {name} has no column(s) {missing}"] if missing else []
    problems += [
        f"{wanted!r} exists as {held!r} (column names must match the config exactly)"
        for wanted in missing
        for held in found
        if held.strip().casefold() == wanted.casefold()
    ]
    # A TIMESTAMP month is not a DATE: compared with the partition's date it matches only rows
    # at midnight (in the session's time zone for TIMESTAMPTZ), and real BigQuery refuses it.
    problems += [
        f"table {name}: column {c.name!r} is {found[c.name]}, expected DATE (the first day of "
        f"the month; store it as DATE, e.g. CAST({c.name} AS DATE))"
        for c in table.columns
        if c.kind == "date" and c.name in found and found[c.name].upper() != "DATE"
    ]
    if problems:
        raise WarehouseError("; ".join(problems))


def require_contract_columns(table: TableSpec, name: str, existing: Sequence[str]) -> None:
    """Refuse to write table `name` unless its columns are the contract's, in order."""
    if list(existing) != table.column_names:
        raise WarehouseError(
            f"table {name} has columns {list(existing)} but the contract expects "
            f"{table.column_names}: migrate or drop the table"
        )


def chunks_of(rows: Rows) -> Iterable[pd.DataFrame]:
    return [rows] if isinstance(rows, pd.DataFrame) else rows


def check_staged(
    table: TableSpec, partition: Partition, staged: Staged, verify: Verify | None, allow_empty: bool
) -> None:
    """Let the caller judge the staged rows; then refuse what no caller may write: no rows
    (a silently wiped partition) or a key twice."""
    if verify is not None:
        verify(staged)
    if staged.rows == 0 and not allow_empty:
        raise EmptyPartitionError(
            f"refusing to replace partition {partition} of {table.qualified_name} with no rows: "
            "the old rows are kept"
        )
    if staged.duplicated_rows:
        raise WarehouseError(
            f"refusing to replace partition {partition} of {table.qualified_name}: "
            f"{staged.duplicated_rows} rows share a key "
            f"(e.g. {', '.join(staged.duplicate_sample)}); the old rows are kept"
        )


def check_rows_fit_partition(table: TableSpec, partition: Partition, rows: pd.DataFrame) -> None:
    """Refuse a chunk that lacks a column or holds rows of another partition."""
    missing = [c for c in table.column_names if c not in rows.columns]
    if missing:
        raise WarehouseError(
            f"rows for {table.qualified_name}, partition {partition}, lack columns {missing}"
        )
    # Vectorised on datetime64: per-row date objects cost a fifth of the staging time. Scored
    # rows already hold datetime64, and `to_datetime` on them still maps every row through its
    # cache of unique values; the market is compared in NumPy, a third of pandas' time on text.
    # Together 2.5 s of a 1M-row run's main thread before, 0.1 s after (py-spy, loaded machine).
    month = rows["month"]
    days = month if pd.api.types.is_datetime64_dtype(month) else pd.to_datetime(month)
    days = days.dt.floor("D")
    stray = (rows["market"].to_numpy() != partition.market) | (
        days != pd.Timestamp(partition.month)
    ).to_numpy()
    if stray.any():
        first = stray.argmax()
        raise WarehouseError(
            f"{int(stray.sum())} rows for {table.qualified_name} do not belong to partition "
            f"{partition} (e.g. market={rows['market'].iloc[first]!r}, "
            f"month={days.iloc[first].date()})"
        )


def arrow_to_frame(
    arrow: pa.Table | pa.RecordBatch, table: TableSpec, carried: Sequence[str] = ()
) -> pd.DataFrame:
    """Rows read from any warehouse as one kind of frame: DATE as datetime64[us], TIMESTAMP
    in UTC, the table's columns in order. The `carried` columns stay in Arrow (pd.ArrowDtype)
    instead of becoming Python objects: a caller that only writes them back (the scored rows'
    keys) saves converting text twice, most of the read's time (benchmarks/README.md)."""
    # Selected and cast in Arrow: pandas conversions after to_pandas copied every chunk.
    arrow = arrow.select(table.column_names)
    # Copied: a column of a batch exported by the warehouse keeps the whole batch alive.
    kept = {name: _copied(arrow.column(name)) for name in carried}
    arrow = arrow.select([name for name in table.column_names if name not in kept])
    for column in table.columns:
        if column.kind == "date":
            index = arrow.schema.get_field_index(column.name)
            arrow = arrow.set_column(
                index, column.name, arrow.column(index).cast(pa.timestamp("us"))
            )
    frame = arrow.to_pandas()
    for name, values in kept.items():
        frame.insert(table.column_names.index(name), name, pd.arrays.ArrowExtensionArray(values))
    for column in table.columns:
        if column.kind == "timestamp":
            frame[column.name] = pd.to_datetime(frame[column.name], utc=True)
    return frame


def _copied(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pa.concat_arrays(values.chunks if isinstance(values, pa.ChunkedArray) else [values])
