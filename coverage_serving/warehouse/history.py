"""The statements that keep a partition's replaced rows in its history table, written once for
both warehouses: they differ only in how a name is quoted and a parameter named."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from coverage_serving.errors import WarehouseError
from coverage_serving.warehouse.base import (
    REPLACED_AT,
    REPLACED_BY,
    ColumnKind,
    Constants,
    History,
    TableSpec,
)
from coverage_serving.warehouse.dialect import Dialect


@dataclass(frozen=True)
class Archive:
    """What a swap runs in its transaction before its DELETE to keep the rows it replaces, and
    the values those statements bind (with their kinds) besides the partition's `market` and
    `month`, which every swap binds."""

    statements: tuple[str, ...] = ()
    parameters: Mapping[str, tuple[ColumnKind, object]] = field(default_factory=dict)


def archive_for(
    dialect: Dialect, table: TableSpec, constants: Constants, history: History
) -> Archive:
    """Move the partition's rows of another version than the new one to history, in place of
    what history held of that version (its latest rows replace older ones, as a rerun's do in
    the table); then keep only the last `keep_versions` versions replaced. Refused when the
    constants do not say which version the new rows are: checked before anything is staged."""
    if constants.get(history.version_column) is None:
        raise WarehouseError(
            f"keeping the rows replaced in {table.qualified_name} needs a value of "
            f"{history.version_column!r} among the constants of the replace"
        )
    q, p = dialect.quote, dialect.parameter
    target, archive = dialect.table(table), dialect.table(history.table)
    version = q(history.version_column)
    columns = ", ".join(q(c) for c in table.column_names)
    in_partition = f"market = {p('market')} AND month = {p('month')}"
    replaced = f"{in_partition} AND {version} <> {p('version')}"
    statements = [
        f"DELETE FROM {archive} WHERE {in_partition} AND {version} IN "
        f"(SELECT {version} FROM {target} WHERE {replaced})",
        f"INSERT INTO {archive} ({columns}, {q(REPLACED_AT)}, {q(REPLACED_BY)}) "
        f"SELECT {columns}, CURRENT_TIMESTAMP, {p('replaced_by')} FROM {target} WHERE {replaced}",
    ]
    parameters: dict[str, tuple[ColumnKind, object]] = {
        "version": (table.kind(history.version_column), constants[history.version_column]),
        "replaced_by": ("string", history.replaced_by),
    }
    if history.keep_versions is not None:
        # The partition's versions, the latest replaced first; those after the K-th go.
        ranked = (
            f"SELECT {version}, ROW_NUMBER() OVER (ORDER BY MAX({q(REPLACED_AT)}) DESC) AS n "
            f"FROM {archive} WHERE {in_partition} GROUP BY {version}"
        )
        statements.append(
            f"DELETE FROM {archive} WHERE {in_partition} AND {version} IN "
            f"(SELECT {version} FROM ({ranked}) WHERE n > {p('keep')})"
        )
        parameters["keep"] = ("int", history.keep_versions)
    return Archive(tuple(statements), parameters)
