"""Input and output contracts: Pandera schemas generated from the config, and the signature check.

A violation raises ContractViolation naming the model, the partition, each failing column and
check, how many rows failed and a sample of their keys.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from coverage_serving.config import ColumnType, ModelConfig, PredictionSpec
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.errors import EmptyPartitionError, ServingError, UnservableModelError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import TableSpec

SAMPLE_SIZE = 5

_DTYPES: dict[str, Any] = {
    "string": str,
    "int": "int64",
    "float": "float64",
    "date": "datetime64[ns]",
    "timestamp": pd.DatetimeTZDtype("ns", "UTC"),
}
# The MLflow signature type each config column type must have.
_SIGNATURE_TYPES = {ColumnType.STRING: "string", ColumnType.INT: "long", ColumnType.FLOAT: "double"}

# Text in a numeric column is the dtype check's finding; to_numeric keeps it out of this one.
_FINITE = pa.Check(lambda s: ~np.isinf(pd.to_numeric(s, errors="coerce")), name="finite")


@dataclass(frozen=True)
class Violation:
    column: str | None
    check: str
    rows: int
    sample_keys: list[str]

    def __str__(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        sample = f" (sample keys: {', '.join(self.sample_keys)})" if self.sample_keys else ""
        return f"{where}: {self.check} failed for {self.rows} row(s){sample}"


class ContractViolation(ServingError):
    def __init__(
        self,
        model: str,
        partition: Partition,
        contract: str,
        violations: list[Violation],
        failed_rows: int,
    ) -> None:
        self.model = model
        self.partition = partition
        self.contract = contract
        self.violations = violations
        self.failed_rows = failed_rows
        details = "; ".join(str(v) for v in violations)
        super().__init__(
            f"{contract} contract failed for model {model!r}, partition {partition}: {details}"
        )

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "model": self.model,
            "partition": self.partition.key,
            "contract": self.contract,
            "failed_rows": self.failed_rows,
            "violations": [asdict(v) for v in self.violations],
        }


def input_schema(model: ModelConfig, partition: Partition | None = None) -> pa.DataFrameSchema:
    return _schema(
        features_table(model), model.key_columns, partition, {"contract": "input"}, checks={}
    )


def output_schema(model: ModelConfig, partition: Partition | None = None) -> pa.DataFrameSchema:
    ranges = {name: _range_checks(spec) for name, spec in model.predictions.items()}
    return _schema(
        predictions_table(model), model.key_columns, partition, {"contract": "output"}, ranges
    )


def _range_checks(spec: PredictionSpec) -> list[pa.Check]:
    checks = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    return checks


def _schema(
    table: TableSpec,
    keys: list[str],
    partition: Partition | None,
    metadata: dict[str, str],
    checks: dict[str, list[pa.Check]],
) -> pa.DataFrameSchema:
    partition_checks: dict[str, list[pa.Check]] = {}
    if partition is not None:
        partition_checks = {
            "market": [pa.Check.eq(partition.market)],
            "month": [pa.Check.eq(pd.Timestamp(partition.month))],
        }
    columns = {
        c.name: pa.Column(
            _DTYPES[c.kind],
            nullable=c.nullable,
            coerce=c.kind == "date",  # warehouses hand DATE back at various resolutions
            checks=[
                *([_FINITE] if c.kind == "float" else []),
                *checks.get(c.name, []),
                *partition_checks.get(c.name, []),
            ],
        )
        for c in table.columns
    }
    return pa.DataFrameSchema(
        columns,
        name=table.name,
        unique=keys,
        report_duplicates="all",
        strict="filter",
        ordered=False,
        metadata=metadata,
    )


def enforce_input_contract(
    model: ModelConfig, partition: Partition, frame: pd.DataFrame
) -> pd.DataFrame:
    """The partition's feature rows, typed as the config says, or ContractViolation."""
    if frame.empty:
        raise EmptyPartitionError(
            f"model {model.name!r}, partition {partition}: the source table "
            f"{model.source_table!r} has no rows for this partition; nothing was written"
        )
    # Numbers widen to float64, which is what the signature wants; every other type
    # difference (e.g. text in a numeric column) is a violation, not a conversion.
    widen = {
        name: "float64"
        for name, spec in model.features.items()
        if spec.type == ColumnType.FLOAT
        and name in frame
        and pd.api.types.is_numeric_dtype(frame[name])
        and not pd.api.types.is_bool_dtype(frame[name])
    }
    return _validate(input_schema(model, partition), model, partition, frame.astype(widen))


def enforce_output_contract(
    model: ModelConfig, partition: Partition, frame: pd.DataFrame
) -> pd.DataFrame:
    return _validate(output_schema(model, partition), model, partition, frame)


def check_signature(model: ModelConfig, version: int, signature: dict[str, str] | None) -> None:
    """Fail unless the version's signature takes exactly the configured features and types."""
    where = f"model {model.name!r} ({model.registered_model} version {version})"
    if signature is None:
        raise UnservableModelError(f"{where} has no signature: register it with one")
    problems = []
    for name, spec in model.features.items():
        wanted = _SIGNATURE_TYPES[spec.type]
        if name not in signature:
            problems.append(f"configured feature {name!r} is not in the signature")
        elif signature[name] != wanted:
            problems.append(f"feature {name!r} is {signature[name]} in the signature, not {wanted}")
    problems += [
        f"signature needs {n!r}, which is not configured"
        for n in signature
        if n not in model.features
    ]
    if problems:
        raise UnservableModelError(f"{where} cannot be served: {'; '.join(problems)}")


def _validate(
    schema: pa.DataFrameSchema, model: ModelConfig, partition: Partition, frame: pd.DataFrame
) -> pd.DataFrame:
    try:
        return schema.validate(frame, lazy=True)
    except SchemaErrors as err:
        cases = err.failure_cases
        violations = _violations(cases, frame, model.key_columns)
        # Distinct rows: a row failing two checks is one failed row. Table-level failures
        # (e.g. a missing column) have no row index and count as one.
        failed_rows = max(cases["index"].dropna().nunique(), 1)
        raise ContractViolation(
            model.name, partition, schema.metadata["contract"], violations, failed_rows
        ) from None


def _violations(cases: pd.DataFrame, frame: pd.DataFrame, keys: list[str]) -> list[Violation]:
    # A missing column is reported with the column's name as the failure case.
    missing = cases["check"] == "column_in_dataframe"
    cases = cases.assign(column=cases["column"].mask(missing, cases["failure_case"]))
    violations = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=True):
        rows = group["index"].dropna().unique()
        violations.append(
            Violation(
                column=None if pd.isna(column) else str(column),
                check=str(check),
                rows=max(len(rows), 1),
                sample_keys=_key_sample(frame, keys, rows[:SAMPLE_SIZE]),
            )
        )
    return violations


def _key_sample(frame: pd.DataFrame, keys: list[str], index: np.ndarray) -> list[str]:
    present = [k for k in keys if k in frame]
    if not present or len(index) == 0:
        return []
    sample = frame.loc[list(index), present].astype(str)
    return ["/".join(row) for row in sample.itertuples(index=False)]
