"""The partition replace every warehouse runs, written once: stage the rows chunk by chunk, judge
the staged whole, then swap them in with the history statements in one transaction. Each
warehouse supplies only its primitives (its session, DDL, load, count and transaction).

Not in base.py: the history statements (history.py) are built on base.py's table shapes."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

import pandas as pd

from coverage_serving.partition import Partition
from coverage_serving.warehouse.base import (
    Constants,
    History,
    Rows,
    Staged,
    TableSpec,
    Verify,
    check_rows_fit_partition,
    check_staged,
    chunks_of,
)
from coverage_serving.warehouse.dialect import Dialect
from coverage_serving.warehouse.history import Archive, archive_for

DUPLICATE_SAMPLE = 5  # keys named in the refusal of a partition with a key twice
Session = TypeVar("Session")  # what a warehouse holds open for one replace: a connection, a client


class StagedSwap(ABC, Generic[Session]):
    _dialect: Dialect

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
        """Warehouse.replace_partition: the staging table is dropped whatever happens (one a
        killed process leaves behind is never read)."""
        constants = constants or {}
        staged_table = table.without(constants)
        archive = archive_for(self._dialect, table, constants, history) if history else Archive()
        with self._writing(table, partition) as session:
            self._create_if_missing(session, table)
            if history:
                self._create_if_missing(session, history.table)
            staging = self._create_staging(session, staged_table)
            try:
                with self._staging_errors(table, partition):
                    for chunk in chunks_of(rows):
                        check_rows_fit_partition(staged_table, partition, chunk)
                        self._stage(session, staged_table, staging, chunk)
                    staged = self._summarise(session, staging, keys)
                check_staged(table, partition, staged, verify, allow_empty)
                self._swap(session, table, staged_table, partition, staging, constants, archive)
            finally:
                self._drop_staging(session, staging)
        return staged.rows

    def _summarise(self, session: Session, staging: str, keys: Sequence[str]) -> Staged:
        rows = self._count(session, staging)
        if not keys:
            return Staged(rows)
        duplicates = self._duplicate_keys(session, staging, keys)
        return Staged(
            rows,
            duplicated_rows=sum(n for _, n in duplicates),
            duplicate_sample=tuple(key for key, _ in duplicates[:DUPLICATE_SAMPLE]),
        )

    def _staging_errors(
        self, table: TableSpec, partition: Partition
    ) -> AbstractContextManager[object]:
        """Where the warehouse's own errors of staging become a WarehouseError that says the
        old rows are kept, when `_writing` does not already translate them."""
        return nullcontext()

    @abstractmethod
    def _writing(self, table: TableSpec, partition: Partition) -> AbstractContextManager[Session]:
        """The session one replace of the partition runs in."""

    @abstractmethod
    def _create_if_missing(self, session: Session, table: TableSpec) -> None:
        """Create the table from the contract; refuse one whose columns differ from it."""

    @abstractmethod
    def _create_staging(self, session: Session, table: TableSpec) -> str:
        """A new, empty staging table with the table's columns; returns its name."""

    @abstractmethod
    def _stage(self, session: Session, table: TableSpec, staging: str, chunk: pd.DataFrame) -> None:
        """Append one chunk, in the contract's types, to the staging table."""

    @abstractmethod
    def _count(self, session: Session, staging: str) -> int: ...

    @abstractmethod
    def _duplicate_keys(
        self, session: Session, staging: str, keys: Sequence[str]
    ) -> list[tuple[str, int]]:
        """Each key ("/"-joined) the staged rows hold more than once, with its rows, by key."""

    @abstractmethod
    def _swap(
        self,
        session: Session,
        table: TableSpec,
        staged_table: TableSpec,
        partition: Partition,
        staging: str,
        constants: Constants,
        archive: Archive,
    ) -> None:
        """In one transaction: the archive's statements, the DELETE of the partition's rows and
        the INSERT of the staged rows with the constants; on failure, nothing of it."""

    @abstractmethod
    def _drop_staging(self, session: Session, staging: str) -> None: ...
