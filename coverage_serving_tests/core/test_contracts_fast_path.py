"""The contracts' fast path (`_plainly_valid`) against Pandera: never True where Pandera refuses,
and the public enforce functions accept or refuse exactly as the Pandera-only path does.

Each contract is compared with the schema its enforce function validates with: the input
contract's full schema for the partition, and the output contract's prediction columns (the
rest of the output is checked on the whole staged partition, in core.batch)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.errors import SchemaErrors

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.core import contracts
from coverage_serving.core.contracts import (
    ContractViolation,
    enforce_input_contract,
    enforce_output_contract,
    input_schema,
    output_schema,
)
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.demo.data import stores
from coverage_serving.partition import Partition

PARTITION = Partition("IN", date(2026, 1, 1))
OTHER_MARKET = Partition("ID", date(2026, 1, 1))
OTHER_MONTH = Partition("IN", date(2026, 2, 1))
ROWS = 20
SWEEP_SIZE = 200
SWEEP_SEED = 20260101

Mutation = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Contract:
    """One contract as its enforce function runs it: the fast path, the Pandera schema it
    falls back to, the enforce function itself and a frame that passes."""

    name: str
    valid_frame: Callable[[], pd.DataFrame]
    # The frame both the fast path and Pandera see (the input contract widens numbers first).
    prepared: Callable[[ModelConfig, pd.DataFrame], pd.DataFrame]
    plainly_valid: Callable[[ModelConfig, contracts.Rows], bool]
    schema: Callable[[ModelConfig], pa.DataFrameSchema]
    enforce: Callable[[ModelConfig, Partition, pd.DataFrame], pd.DataFrame]


def _feature_rows() -> pd.DataFrame:
    # Dates as datetime64[ns]: what the fast path vouches for (others go to Pandera, which
    # coerces them).
    return stores(PARTITION, ROWS).astype({"month": "datetime64[ns]"})


def _prediction_rows() -> pd.DataFrame:
    return _feature_rows()[["store_id", "market", "month"]].assign(
        sales_potential=np.linspace(0.0, 1_000_000.0, ROWS),
        model_name="coverage_store_model",
        model_version=1,
        model_alias="champion",
        model_run_id=None,
        scored_at=pd.Timestamp("2026-02-03T04:05:06", tz="UTC").as_unit("ns"),
        dagster_run_id="run-1",
    )


def _input_plainly_valid(model: ModelConfig, frame: contracts.Rows) -> bool:
    categories = {n: s.values for n, s in model.features.items() if s.values is not None}
    columns = features_table(model).columns
    return contracts._plainly_valid(columns, model.key_columns, PARTITION, frame, categories, {})


def _output_plainly_valid(model: ModelConfig, frame: contracts.Rows) -> bool:
    ranges = {name: (spec.min, spec.max) for name, spec in model.predictions.items()}
    columns = [c for c in predictions_table(model).columns if c.name in model.predictions]
    return contracts._plainly_valid(columns, [], None, frame, {}, ranges)


def _output_prediction_schema(model: ModelConfig) -> pa.DataFrameSchema:
    """The part of the output schema enforce_output_contract validates: the predictions."""
    schema = output_schema(model, PARTITION)
    return pa.DataFrameSchema(
        {name: schema.columns[name] for name in model.prediction_columns},
        name=schema.name,
        metadata=schema.metadata,
    )


INPUT = Contract(
    name="input",
    valid_frame=_feature_rows,
    prepared=contracts._widened,
    plainly_valid=_input_plainly_valid,
    schema=lambda model: input_schema(model, PARTITION),
    enforce=enforce_input_contract,
)
OUTPUT = Contract(
    name="output",
    valid_frame=_prediction_rows,
    prepared=lambda model, frame: frame,
    plainly_valid=_output_plainly_valid,
    schema=_output_prediction_schema,
    enforce=enforce_output_contract,
)


@pytest.fixture
def store(small_config: ServingConfig) -> ModelConfig:
    return small_config.models["store"]


def _pandera_refusals(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> set[str]:
    """The names of the checks Pandera fails the frame on; empty when it passes."""
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as err:
        return set(err.failure_cases["check"].astype(str))
    return set()


def _pandera_only(
    contract: Contract, model: ModelConfig, frame: pd.DataFrame
) -> pd.DataFrame | ContractViolation:
    """What the enforce function did before the fast path: validate with Pandera."""
    prepared = contract.prepared(model, frame)
    try:
        return contracts._validate(contract.schema(model), model, PARTITION, prepared)
    except ContractViolation as violation:
        return violation


def _enforced(
    contract: Contract, model: ModelConfig, frame: pd.DataFrame
) -> pd.DataFrame | ContractViolation:
    try:
        return contract.enforce(model, PARTITION, frame)
    except ContractViolation as violation:
        return violation


def _assert_enforced_as_by_pandera_alone(
    contract: Contract, model: ModelConfig, frame: pd.DataFrame
) -> None:
    enforced = _enforced(contract, model, frame)
    before = _pandera_only(contract, model, frame)
    if isinstance(before, ContractViolation):
        assert isinstance(enforced, ContractViolation), "the fast path passed a refused frame"
        assert str(enforced) == str(before)
        assert enforced.violations == before.violations
    else:
        assert isinstance(enforced, pd.DataFrame), f"refused a frame Pandera passes: {enforced}"
        pd.testing.assert_frame_equal(enforced, before)


def _set(column: str, row: int, value: Any) -> Mutation:
    """One cell set to `value`, the column's dtype widened to object if it cannot hold it."""

    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        values = frame[column].astype(object)
        values.iloc[row] = value
        inferred = pd.Series(values.tolist(), index=frame.index, name=column)
        same_kind = inferred.dtype == frame[column].dtype
        return frame.assign(**{column: inferred if same_kind else values})

    return mutate


def _as_type(column: str, dtype: Any) -> Mutation:
    return lambda frame: frame.astype({column: dtype})


def _drop(column: str) -> Mutation:
    return lambda frame: frame.drop(columns=column)


def _rows_of(partition: Partition) -> Mutation:
    """The last two rows replaced by rows of another partition (keys of that partition)."""

    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        other = frame.iloc[-2:].assign(
            market=partition.market,
            month=pd.Timestamp(partition.month).as_unit("ns"),
            store_id=[f"S-{partition.market}-X{i}" for i in range(2)],
        )
        return pd.concat([frame.iloc[:-2], other], ignore_index=True)

    return mutate


def _duplicate_key(frame: pd.DataFrame) -> pd.DataFrame:
    return _set("store_id", 3, frame["store_id"].iloc[4])(frame)


def _extra_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(notes="call back")


# (what is wrong, the mutation, the check Pandera refuses it with; None: Pandera passes it)
INPUT_CASES: list[tuple[str, Mutation, str | None]] = [
    ("missing-feature", _drop("income_index"), "column_in_dataframe"),
    ("missing-key", _drop("store_id"), "column_in_dataframe"),
    ("missing-month", _drop("month"), "column_in_dataframe"),
    ("int-as-float", _as_type("poi_count", "float64"), "dtype('int64')"),
    ("int-as-int32", _as_type("poi_count", "int32"), "dtype('int64')"),
    ("float-as-text", _set("latitude", 3, "north"), "dtype('float64')"),
    ("float-as-object-numbers", _as_type("latitude", object), "dtype('float64')"),
    ("float-as-float32", _as_type("latitude", "float32"), None),  # widened to float64
    ("float-given-as-int", lambda f: f.assign(latitude=f["latitude"].round().astype(int)), None),
    ("float-as-bool", lambda f: f.assign(latitude=True), "dtype('float64')"),
    ("string-as-category", _as_type("channel", "category"), None),
    ("string-as-pandas-string", _as_type("channel", "string"), None),
    ("date-as-iso-text", _as_type("month", str), None),  # Pandera coerces dates
    ("date-as-other-text", _set("month", 3, "January"), "coerce_dtype('datetime64[ns]')"),
    ("date-as-seconds", _as_type("month", "datetime64[s]"), None),  # Pandera coerces dates
    ("date-with-timezone", lambda f: f.assign(month=f["month"].dt.tz_localize("UTC")), None),
    ("null-float", _set("income_index", 3, np.nan), "not_nullable"),
    ("null-string", _set("channel", 3, None), "not_nullable"),
    ("null-key", _set("store_id", 3, None), "not_nullable"),
    ("null-int", _set("poi_count", 3, None), "not_nullable"),
    ("null-month", _set("month", 3, pd.NaT), "not_nullable"),
    ("int-in-string", _set("channel", 3, 3), "dtype('str')"),
    ("bytes-in-string", _set("channel", 3, b"modern"), "dtype('str')"),
    ("float-in-key", _set("store_id", 3, 1.5), "dtype('str')"),
    ("inf-in-float", _set("population_index", 3, np.inf), "finite"),
    ("minus-inf-in-float", _set("population_index", 3, -np.inf), "finite"),
    ("unknown-category", _set("store_type", 4, "hypermarket"), "isin"),
    ("category-other-case", _set("channel", 4, "Modern"), "isin"),
    ("another-market", _rows_of(OTHER_MARKET), "equal_to(IN)"),
    ("another-month", _rows_of(OTHER_MONTH), "equal_to(2026-01-01 00:00:00)"),
    ("month-not-first-day", _set("month", 2, pd.Timestamp("2026-01-15")), "equal_to"),
    ("duplicate-key", _duplicate_key, "multiple_fields_uniqueness"),
    ("extra-column", _extra_column, None),  # filtered, not refused
    ("duplicate-column-label", lambda f: pd.concat([f, f[["latitude"]]], axis=1), None),
]

OUTPUT_CASES: list[tuple[str, Mutation, str | None]] = [
    ("missing-prediction", _drop("sales_potential"), "column_in_dataframe"),
    ("prediction-as-text", _set("sales_potential", 3, "high"), "dtype('float64')"),
    ("prediction-as-object-numbers", _as_type("sales_potential", object), "dtype('float64')"),
    ("prediction-as-int", _as_type("sales_potential", "int64"), "dtype('float64')"),
    ("prediction-as-float32", _as_type("sales_potential", "float32"), "dtype('float64')"),
    ("null-prediction", _set("sales_potential", 3, np.nan), "not_nullable"),
    ("inf-prediction", _set("sales_potential", 3, np.inf), "finite"),
    ("prediction-below-min", _set("sales_potential", 3, -0.5), "greater_than_or_equal_to(0.0)"),
    ("prediction-above-max", _set("sales_potential", 3, 1e6 + 1), "less_than_or_equal_to"),
    ("prediction-at-the-bounds", lambda f: f.assign(sales_potential=[0.0, 1e6] * 10), None),
    # Checked on the whole staged partition (core.batch), not by the per-chunk contract.
    ("another-market", _rows_of(OTHER_MARKET), None),
    ("another-month", _rows_of(OTHER_MONTH), None),
    ("duplicate-key", _duplicate_key, None),
    ("month-as-string", _as_type("month", str), None),
    ("extra-column", _extra_column, None),
]


def _case_ids(cases: list[tuple[str, Mutation, str | None]]) -> list[str]:
    return [name for name, _, _ in cases]


@pytest.mark.parametrize("contract", [INPUT, OUTPUT], ids=lambda c: c.name)
def test_a_valid_frame_takes_the_fast_path_and_pandera_passes_it(
    store: ModelConfig, contract: Contract
) -> None:
    frame = contract.prepared(store, contract.valid_frame())
    assert contract.plainly_valid(store, frame)
    assert _pandera_refusals(contract.schema(store), frame) == set()
    _assert_enforced_as_by_pandera_alone(contract, store, contract.valid_frame())


def _check_case(
    contract: Contract, model: ModelConfig, mutate: Mutation, expected_check: str | None
) -> None:
    frame = mutate(contract.valid_frame())
    prepared = contract.prepared(model, frame)
    refusals = _pandera_refusals(contract.schema(model), prepared)
    if expected_check is None:
        assert refusals == set()
    else:
        assert any(check.startswith(expected_check) for check in refusals), refusals
        assert not contract.plainly_valid(model, prepared)
        with pytest.raises(ContractViolation) as raised:
            contract.enforce(model, PARTITION, frame)
        reported = {v.check for v in raised.value.violations}
        assert reported == refusals
        assert raised.value.contract == contract.name
    _assert_enforced_as_by_pandera_alone(contract, model, frame)


@pytest.mark.parametrize(("case", "mutate", "check"), INPUT_CASES, ids=_case_ids(INPUT_CASES))
def test_input_fast_path_refuses_what_pandera_refuses_and_enforce_reports_the_same_check(
    store: ModelConfig, case: str, mutate: Mutation, check: str | None
) -> None:
    _check_case(INPUT, store, mutate, check)


@pytest.mark.parametrize(("case", "mutate", "check"), OUTPUT_CASES, ids=_case_ids(OUTPUT_CASES))
def test_output_fast_path_refuses_what_pandera_refuses_and_enforce_reports_the_same_check(
    store: ModelConfig, case: str, mutate: Mutation, check: str | None
) -> None:
    _check_case(OUTPUT, store, mutate, check)


def test_extra_columns_are_filtered_by_the_input_fast_path_as_by_pandera(
    store: ModelConfig,
) -> None:
    frame = _extra_column(_feature_rows())
    assert _input_plainly_valid(store, frame)
    checked = enforce_input_contract(store, PARTITION, frame)
    assert list(checked.columns) == features_table(store).column_names


# Values a random cell is set to: of every column kind, and the bad values of each.
_CELL_VALUES: list[Any] = [
    np.nan,
    None,
    pd.NaT,
    np.inf,
    -np.inf,
    -1.0,
    0.0,
    1e6,
    1e6 + 1,
    7,
    -3,
    True,
    "text",
    "",
    b"bytes",
    "kirana",
    "modern",
    "IN",
    "ID",
    pd.Timestamp("2026-01-01"),
    pd.Timestamp("2026-02-01"),
    pd.Timestamp("2026-01-01", tz="UTC"),
    date(2026, 1, 1),
]
_DTYPES: list[Any] = [
    object,
    str,
    "string",
    "category",
    "float64",
    "float32",
    "int64",
    "int32",
    "bool",
    "datetime64[ns]",
    "datetime64[s]",
]


def _random_mutation(rng: np.random.Generator, frame: pd.DataFrame) -> tuple[str, Mutation]:
    column = str(rng.choice(frame.columns))
    row = int(rng.integers(len(frame)))
    kind = int(rng.integers(8))
    if kind <= 2:  # the most common kind: one bad cell
        value = _CELL_VALUES[int(rng.integers(len(_CELL_VALUES)))]
        return f"{column}[{row}] = {value!r}", _set(column, row, value)
    if kind == 3:
        dtype = _DTYPES[int(rng.integers(len(_DTYPES)))]

        def cast(frame: pd.DataFrame) -> pd.DataFrame:
            try:
                return frame.astype({column: dtype})
            except (TypeError, ValueError):  # not castable: left as it was
                return frame

        return f"{column} as {dtype}", cast
    if kind == 4:
        return f"without {column}", _drop(column)
    if kind == 5:
        source = int(rng.integers(len(frame)))
        return (
            f"{column}[{row}] = {column}[{source}]",
            lambda f: _set(column, row, f[column].iloc[source])(f),
        )
    if kind == 6:
        return f"extra copy of {column}", lambda f: f.assign(**{f"{column}_copy": f[column]})
    return f"{column} twice", lambda f: pd.concat([f, f[[column]]], axis=1)


def _as_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The rows as an on-demand request hands them over (core.scoring.score_few_rows)."""
    return {name: frame[name].to_numpy() for name in frame.columns}


@pytest.mark.parametrize("as_arrays", [False, True], ids=["frame", "arrays"])
@pytest.mark.parametrize("contract", [INPUT, OUTPUT], ids=lambda c: c.name)
def test_random_mutations_never_take_the_fast_path_where_pandera_refuses(
    store: ModelConfig, contract: Contract, as_arrays: bool
) -> None:
    rng = np.random.default_rng(SWEEP_SEED)
    valid = contract.valid_frame()
    schema = contract.schema(store)
    wrongly_passed = []
    refused = fast = 0
    for _ in range(SWEEP_SIZE):
        what, mutate = _random_mutation(rng, valid)
        frame = contract.prepared(store, mutate(valid))
        if as_arrays and not frame.columns.is_unique:
            continue  # arrays by name hold a column once
        rows = _as_arrays(frame) if as_arrays else frame
        # Arrays are what the fallback turns into a frame for Pandera.
        refusals = _pandera_refusals(schema, pd.DataFrame(rows) if as_arrays else frame)
        plainly_valid = contract.plainly_valid(store, rows)
        refused += bool(refusals)
        fast += plainly_valid
        if refusals and plainly_valid:
            wrongly_passed.append(f"{what}: Pandera refuses with {sorted(refusals)}")
    assert wrongly_passed == []
    # The sweep reaches both sides: frames Pandera refuses and frames the fast path passes.
    assert refused >= SWEEP_SIZE // 20, (refused, fast)
    assert fast >= SWEEP_SIZE // 20, (refused, fast)
