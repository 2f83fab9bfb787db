"""Input and output contracts: Pandera schemas generated from the config, and the signature check.

A violation raises ContractViolation naming the model, the partition, each failing column and
check, how many rows failed and a sample of their keys.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from coverage_serving.config import ColumnType, ModelConfig, PredictionSpec
from coverage_serving.core.tables import features_table, predictions_table, rejected_table
from coverage_serving.errors import EmptyPartitionError, ServingError, UnservableModelError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Column, TableSpec

SAMPLE_SIZE = 5

_DTYPES: dict[str, Any] = {
    "string": str,
    "int": "int64",
    "float": "float64",
    "date": "datetime64[ns]",
    "timestamp": pd.DatetimeTZDtype("ns", "UTC"),
}
# Rows as a frame, or as one array per column (an on-demand request's few rows: core.scoring).
Rows = pd.DataFrame | Mapping[str, np.ndarray]
# Up to this many values, membership is checked with a set rather than pandas.
_FEW_ROWS = 64
# The dtype a column of each kind must already have for _plainly_valid to vouch for it.
_PLAIN_DTYPES: dict[str, Any] = {
    "string": np.dtype("object"),
    "int": np.dtype("int64"),
    "float": np.dtype("float64"),
    "date": np.dtype("datetime64[ns]"),
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


class TooManyRejectedRows(ServingError):
    """Under the quarantine policy, more of the partition failed its contract than allowed."""

    contract = "input"

    def __init__(
        self,
        model: ModelConfig,
        partition: Partition,
        rejected: pd.DataFrame,
        rejected_rows: int,
        input_rows: int,
    ) -> None:
        self.model = model.name
        self.partition = partition
        self.rejected_rows = rejected_rows
        self.input_rows = input_rows
        self.max_fraction = model.max_rejected_fraction
        keys = rejected[model.key_columns].astype(str).drop_duplicates()
        self.sample_keys = ["/".join(row) for row in keys.head(SAMPLE_SIZE).itertuples(index=False)]
        reasons = "; ".join(sorted(set(rejected["reason"]))[:SAMPLE_SIZE])
        super().__init__(
            f"input contract failed for model {model.name!r}, partition {partition}: "
            f"{rejected_rows} of {input_rows} row(s) invalid "
            f"({rejected_rows / input_rows:.1%}), more than max_rejected_fraction "
            f"{self.max_fraction:.1%}; nothing was written to the feature table or "
            f"{rejected_table(model).qualified_name} (sample keys: "
            f"{', '.join(self.sample_keys)}; reasons: {reasons})"
        )

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "model": self.model,
            "partition": self.partition.key,
            "contract": "input",
            "rejected_rows": self.rejected_rows,
            "input_rows": self.input_rows,
            "rejected_fraction": self.rejected_rows / self.input_rows,
            "max_rejected_fraction": self.max_fraction,
            "sample_keys": self.sample_keys,
        }


def input_schema(model: ModelConfig, partition: Partition | None = None) -> pa.DataFrameSchema:
    categories = {
        name: [pa.Check.isin(spec.values)]
        for name, spec in model.features.items()
        if spec.values is not None
    }
    return _schema(
        features_table(model),
        model.key_columns,
        partition,
        {"contract": "input"},
        categories,
    )


def contract_version(schema: pa.DataFrameSchema) -> str:
    """A digest of what the schema checks: columns, types, nullability, checks and their
    values. Pandera's repr leaves the checks out, so the digest is built here."""
    described = {
        name: [
            str(column.dtype),
            column.nullable,
            column.coerce,
            [[check.name, check.statistics] for check in column.checks],
        ]
        for name, column in schema.columns.items()
    } | {"unique": schema.unique, "strict": schema.strict}
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def output_schema(model: ModelConfig, partition: Partition | None = None) -> pa.DataFrameSchema:
    ranges = {name: _range_checks(spec) for name, spec in model.predictions.items()}
    return _schema(
        predictions_table(model),
        model.key_columns,
        partition,
        {"contract": "output"},
        ranges,
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
            description=c.description,  # from serving.yaml (core.tables)
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
    _require_rows(model, partition, frame)
    frame = _widened(model, frame)
    if plainly_valid_input(model, partition, frame):
        # What the schema's strict="filter" returns: the table's columns only.
        extra = sorted(set(frame.columns) - set(features_table(model).column_names))
        return frame.drop(columns=extra) if extra else frame
    return _validate(input_schema(model, partition), model, partition, frame)


def plainly_valid_input(model: ModelConfig, partition: Partition, rows: Rows) -> bool:
    """Whether these rows surely pass the input contract, found by the fast path's array
    operations (_plainly_valid); False leaves it to enforce_input_contract to say what fails."""
    categories = {n: s.values for n, s in model.features.items() if s.values is not None}
    columns = features_table(model).columns
    return _plainly_valid(columns, model.key_columns, partition, rows, categories, {})


def plainly_valid_output(model: ModelConfig, rows: Rows) -> bool:
    """Whether these rows' predictions surely pass the output contract (as above)."""
    ranges = {name: (spec.min, spec.max) for name, spec in model.predictions.items()}
    columns = [c for c in predictions_table(model).columns if c.name in model.predictions]
    return _plainly_valid(columns, [], None, rows, {}, ranges)


@dataclass(frozen=True)
class Screened:
    """A partition split by the input contract under the quarantine policy."""

    valid: pd.DataFrame
    # One row per failed check: the row's keys, the failed column and the reason.
    rejected: pd.DataFrame
    rejected_rows: int  # distinct input rows among them
    input_rows: int


def screen_input(model: ModelConfig, partition: Partition, frame: pd.DataFrame) -> Screened:
    """The rows that pass the input contract and why the others did not. A failure that is
    not about rows (a missing column, a column of the wrong type) still fails the partition."""
    _require_rows(model, partition, frame)
    frame = _widened(model, frame)
    schema = input_schema(model, partition)
    try:
        valid = schema.validate(frame, lazy=True)
        no_failures = pd.DataFrame(columns=["index", "column", "check", "failure_case"])
        return Screened(valid, _rejections(model, frame, no_failures), 0, len(frame))
    except SchemaErrors as err:
        cases = err.failure_cases
    if cases["index"].isna().any():
        raise _violation(schema, model, partition, frame, cases)
    bad = cases["index"].unique()
    valid = schema.validate(frame.drop(index=bad), lazy=True)
    return Screened(valid, _rejections(model, frame, cases), len(bad), len(frame))


def _rejections(model: ModelConfig, frame: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    rows = frame.loc[cases["index"].to_numpy(), model.key_columns].reset_index(drop=True)
    return rows.assign(
        failed_column=cases["column"].astype("object").to_numpy(),
        reason=[
            f"{check}: {case!r}"
            for check, case in zip(cases["check"], cases["failure_case"], strict=True)
        ],
    )


def _require_rows(model: ModelConfig, partition: Partition, frame: pd.DataFrame) -> None:
    if frame.empty:
        raise EmptyPartitionError(
            f"model {model.name!r}, partition {partition}: the source table "
            f"{model.source_table!r} has no rows for this partition; nothing was written"
        )


def _widened(model: ModelConfig, frame: pd.DataFrame) -> pd.DataFrame:
    # Numbers widen to float64, which is what the signature wants; every other type
    # difference (e.g. text in a numeric column) is a violation, not a conversion.
    widen = {
        name: "float64"
        for name, spec in model.features.items()
        if spec.type == ColumnType.FLOAT
        and name in frame
        and pd.api.types.is_numeric_dtype(frame[name])
        and not pd.api.types.is_bool_dtype(frame[name])
        and frame[name].dtype != "float64"
    }
    return frame.astype(widen) if widen else frame  # astype({}) would copy the frame


def enforce_output_contract(
    model: ModelConfig, partition: Partition, frame: pd.DataFrame
) -> pd.DataFrame:
    """Scored rows whose prediction columns pass the output contract, or ContractViolation.

    Only the prediction columns are checked row by row: keys, market and month are the input's
    checked columns and lineage is one constant per run; key uniqueness and one prediction per
    feature row are checked on the whole staged partition (core.batch). Re-checking the rest
    per chunk cost a third of the scoring time (0.2 s per 60k rows, measured)."""
    if plainly_valid_output(model, frame):
        return frame
    schema = output_schema(model, partition)
    predictions = pa.DataFrameSchema(
        {name: schema.columns[name] for name in model.prediction_columns},
        name=schema.name,
        metadata=schema.metadata,
    )
    return _validate(predictions, model, partition, frame)


def _plainly_valid(
    columns: Sequence[Column],
    keys: list[str],
    partition: Partition | None,
    rows: Rows,
    categories: dict[str, list[Any]],
    ranges: dict[str, tuple[float | None, float | None]],
) -> bool:
    """Whether every check of the contract's schema passes, found with a few array operations
    instead of building and running a Pandera validation: for a request of a few rows that took
    most of its time. Never True where Pandera would refuse; False sends the rows to Pandera,
    which names what fails (or passes them: this check only has to be sure, not complete)."""
    if isinstance(rows, pd.DataFrame) and not rows.columns.is_unique:
        return False  # a repeated label selects a frame, not a column
    # On numpy arrays, not Series: each Series method costs tens of microseconds, which is
    # most of a one-row request's time.
    count = 0
    for column in columns:
        if column.name not in rows:
            return False
        given = rows[column.name]
        # The column's own dtype: a Series' may be one (category, say) its array does not show.
        if given.dtype != _PLAIN_DTYPES[column.kind]:
            return False
        values = np.asarray(given)
        count = len(values)
        present = ~pd.isna(values)
        if not column.nullable and not present.all():
            return False
        if column.kind == "string" and not all(isinstance(v, str) for v in values[present]):
            return False
        if column.kind == "float" and np.isinf(values).any():
            return False
        low, high = ranges.get(column.name, (None, None))
        if low is not None and (values < low).any():
            return False
        if high is not None and (values > high).any():
            return False
        if column.name in categories and not _all_in(values[present], categories[column.name]):
            return False
    if partition is not None and not (
        (np.asarray(rows["market"]) == partition.market).all()
        and (np.asarray(rows["month"]) == np.datetime64(partition.month, "ns")).all()
    ):
        return False
    # One row has no duplicate: looking for them would cost more than the rest of the checks.
    if not keys or count < 2:
        return True
    return not pd.DataFrame({key: np.asarray(rows[key]) for key in keys}).duplicated().any()


def _all_in(values: np.ndarray, allowed: list[Any]) -> bool:
    if len(values) <= _FEW_ROWS:  # a set's lookups beat building pandas' hash table
        permitted = set(allowed)
        return all(value in permitted for value in values)
    return bool(pd.Series(values).isin(allowed).all())


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
        raise _violation(schema, model, partition, frame, err.failure_cases) from None


def _violation(
    schema: pa.DataFrameSchema,
    model: ModelConfig,
    partition: Partition,
    frame: pd.DataFrame,
    cases: pd.DataFrame,
) -> ContractViolation:
    violations = _violations(cases, frame, model.key_columns)
    # Distinct rows: a row failing two checks is one failed row. Table-level failures
    # (e.g. a missing column) have no row index and count as one.
    failed_rows = max(cases["index"].dropna().nunique(), 1)
    return ContractViolation(
        model.name, partition, schema.metadata["contract"], violations, failed_rows
    )


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
