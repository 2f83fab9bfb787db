"""The warehouse interface the scoring core writes through, and the table shapes it needs."""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

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


@dataclass(frozen=True)
class TableSpec:
    """A table partitioned by the `market` and `month` columns it must contain."""

    schema: str
    name: str
    columns: tuple[Column, ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


# A partition's rows: one frame, or chunks of it streamed one at a time.
Rows = pd.DataFrame | Iterable[pd.DataFrame]


@dataclass(frozen=True)
class Staged:
    """What a partition's staged rows look like before they are swapped in."""

    rows: int
    duplicated_rows: int = 0  # rows whose key occurs more than once in the partition
    duplicate_sample: tuple[str, ...] = ()  # a few of those keys, "/"-joined


# Called with the staged rows' summary before the swap; raising keeps the old rows.
Verify = Callable[[Staged], None]


class Warehouse(Protocol):
    def read_partition(self, table: TableSpec, partition: Partition) -> pd.DataFrame:
        """The table's columns for one partition; fails if the table lacks any of them."""
        ...

    def read_batches(
        self, table: TableSpec, partition: Partition, batch_rows: int
    ) -> Iterator[pd.DataFrame]:
        """The partition in frames of at most `batch_rows` rows, streamed: memory stays
        bounded by the batch, not the partition."""
        ...

    def replace_partition(
        self,
        table: TableSpec,
        partition: Partition,
        rows: Rows,
        *,
        keys: Sequence[str] = (),
        verify: Verify | None = None,
        allow_empty: bool = False,
    ) -> int:
        """Stage `rows` (chunk by chunk), let `verify` judge the staged whole (its duplicate
        `keys` included), then swap the partition's rows for them atomically: readers see old
        or new, never both. No rows is refused unless `allow_empty`."""
        ...

    def list_partitions(self, table: TableSpec) -> list[Partition]:
        """The partitions that hold rows, in order; none when the table does not exist yet."""
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
    months = pd.to_datetime(rows["month"]).dt.date
    stray = rows[(rows["market"] != partition.market) | (months != partition.month)]
    if not stray.empty:
        raise WarehouseError(
            f"{len(stray)} rows for {table.qualified_name} do not belong to partition "
            f"{partition} (e.g. market={stray['market'].iloc[0]!r}, month={months[stray.index[0]]})"
        )


def arrow_to_frame(arrow: pa.Table | pa.RecordBatch, table: TableSpec) -> pd.DataFrame:
    """Rows read from any warehouse as one kind of frame: DATE as datetime64[us], TIMESTAMP
    in UTC, the table's columns in order."""
    frame = arrow.to_pandas(date_as_object=False)
    for column in table.columns:
        if column.kind == "date":
            frame[column.name] = pd.to_datetime(frame[column.name]).astype("datetime64[us]")
        elif column.kind == "timestamp":
            frame[column.name] = pd.to_datetime(frame[column.name], utc=True)
    return frame[table.column_names]
