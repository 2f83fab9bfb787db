"""The lineage every prediction row carries: which version of which model scored it, when, and in
which run. One type: the prediction tables' lineage columns are derived from it."""

import types
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, get_args, get_type_hints

import pandas as pd

if TYPE_CHECKING:
    from coverage_serving.registry import ModelVersionRef

# Inside the core a run is any scoring run (a Dagster run, an on-demand request); the tables
# say which kind wrote them.
RUN_ID_COLUMN = "dagster_run_id"
VERSION_COLUMN = "model_version"  # what tells one version's predictions from another's
LineageKind = Literal["string", "int", "timestamp"]
_KINDS: dict[type, LineageKind] = {str: "string", int: "int", pd.Timestamp: "timestamp"}


@dataclass(frozen=True)
class Lineage:
    model_name: str
    model_version: int
    model_alias: str | None
    model_run_id: str | None
    scored_at: pd.Timestamp
    run_id: str

    @classmethod
    def of(cls, ref: "ModelVersionRef", run_id: str) -> "Lineage":
        """The lineage of rows scored now by `ref` in the run `run_id`."""
        return cls(
            model_name=ref.name,
            model_version=ref.version,
            model_alias=ref.alias,
            model_run_id=ref.run_id,
            scored_at=pd.Timestamp(datetime.now(UTC)).as_unit("ns"),
            run_id=run_id,
        )

    def columns(self) -> dict[str, object]:
        """The lineage columns of a prediction table and their one value for the partition."""
        values = asdict(self)
        values[RUN_ID_COLUMN] = values.pop("run_id")
        return values

    def version(self) -> dict[str, object]:
        """The columns that say which model version scored the rows."""
        return {
            "model_name": self.model_name,
            VERSION_COLUMN: self.model_version,
            "model_alias": self.model_alias,
            "model_run_id": self.model_run_id,
        }


def lineage_columns() -> list[tuple[str, LineageKind, bool]]:
    """Each lineage column of a prediction table: its name, kind and whether it may be null."""
    hints = get_type_hints(Lineage)
    columns = []
    for field in fields(Lineage):
        hint = hints[field.name]
        nullable = isinstance(hint, types.UnionType)
        kind = _KINDS[next(t for t in get_args(hint) if t is not type(None)) if nullable else hint]
        columns.append((RUN_ID_COLUMN if field.name == "run_id" else field.name, kind, nullable))
    return columns


LINEAGE_COLUMN_NAMES = tuple(name for name, _, _ in lineage_columns())
