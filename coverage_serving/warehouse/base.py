"""The warehouse interface the scoring core writes through, and the table shapes it needs."""

from dataclasses import dataclass
from typing import Literal, Protocol

import pandas as pd

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


class Warehouse(Protocol):
    def read_partition(self, table: TableSpec, partition: Partition) -> pd.DataFrame:
        """The table's columns for one partition; fails if the table lacks any of them."""
        ...

    def replace_partition(
        self,
        table: TableSpec,
        partition: Partition,
        rows: pd.DataFrame,
        *,
        allow_empty: bool = False,
    ) -> int:
        """Swap the partition's rows for `rows` atomically: readers see old or new, never both.
        No rows is refused unless `allow_empty` (e.g. a partition whose rejections cleared)."""
        ...

    def list_partitions(self, table: TableSpec) -> list[Partition]:
        """The partitions that hold rows, in order; none when the table does not exist yet."""
        ...


def check_rows_fit_partition(
    table: TableSpec, partition: Partition, rows: pd.DataFrame, allow_empty: bool = False
) -> None:
    """Refuse a write that would wipe a partition or put rows into the wrong one."""
    if rows.empty and not allow_empty:
        raise EmptyPartitionError(
            f"refusing to replace partition {partition} of {table.qualified_name} with no rows: "
            "the old rows are kept"
        )
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
