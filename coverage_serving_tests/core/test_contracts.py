"""Input and output contracts and the signature check, on demo store rows: no Dagster, no
warehouse, no registry."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.core.contracts import (
    ContractViolation,
    Violation,
    check_signature,
    enforce_input_contract,
    enforce_output_contract,
    input_schema,
    output_schema,
    screen_input,
)
from coverage_serving.core.tables import features_table, predictions_table
from coverage_serving.demo.data import stores
from coverage_serving.errors import EmptyPartitionError, UnservableModelError
from coverage_serving.partition import Partition

PARTITION = Partition("IN", date(2026, 1, 1))
# What MLflow's infer_signature makes of the store features.
STORE_SIGNATURE = {
    "store_type": "string",
    "channel": "string",
    "latitude": "double",
    "longitude": "double",
    "population_index": "double",
    "income_index": "double",
    "poi_count": "long",
    "competitor_count": "long",
    "distance_to_distributor_km": "double",
    "current_sku_count": "long",
    "months_open": "long",
}


@pytest.fixture
def store(small_config: ServingConfig) -> ModelConfig:
    return small_config.models["store"]


def _rows() -> pd.DataFrame:
    return stores(PARTITION, 50)


def _prediction_rows() -> pd.DataFrame:
    return _rows()[["store_id", "market", "month"]].assign(
        sales_potential=1_000.0,
        model_name="coverage_store_model",
        model_version=1,
        model_alias="champion",
        model_run_id=None,
        scored_at=pd.Timestamp.now(tz="UTC").as_unit("ns"),
        dagster_run_id="run-1",
    )


def _input_violation(store: ModelConfig, frame: pd.DataFrame) -> ContractViolation:
    with pytest.raises(ContractViolation) as raised:
        enforce_input_contract(store, PARTITION, frame)
    return raised.value


def test_a_valid_frame_passes_with_int_columns_configured_float_widened(store: ModelConfig) -> None:
    frame = _rows().assign(latitude=lambda f: f["latitude"].round().astype("int64"))
    checked = enforce_input_contract(store, PARTITION, frame)
    assert checked["latitude"].dtype == "float64"
    assert checked["latitude"].tolist() == frame["latitude"].tolist()
    assert checked["poi_count"].dtype == "int64"
    assert checked["store_id"].tolist() == frame["store_id"].tolist()


def test_a_missing_feature_names_model_partition_and_column(store: ModelConfig) -> None:
    violation = _input_violation(store, _rows().drop(columns="income_index"))
    assert "model 'store', partition IN|2026-01-01" in str(violation)
    assert "column 'income_index'" in str(violation)
    assert [v.column for v in violation.violations] == ["income_index"]


def test_text_in_a_numeric_column_is_a_violation_not_a_conversion(store: ModelConfig) -> None:
    violation = _input_violation(
        store, _rows().assign(poi_count=lambda f: f["poi_count"].astype(str))
    )
    assert [(v.column, v.check) for v in violation.violations] == [("poi_count", "dtype('int64')")]


def test_nan_in_a_non_nullable_feature_names_the_row(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[3, "income_index"] = np.nan
    assert _input_violation(store, frame).violations == [
        Violation("income_index", "not_nullable", 1, ["S-IN-000003"])
    ]


def test_infinity_in_a_float_feature_fails_the_finite_check(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[3, "population_index"] = np.inf
    (violation,) = _input_violation(store, frame).violations
    assert violation == Violation("population_index", "finite", 1, ["S-IN-000003"])


def test_text_in_a_float_column_is_one_violation(store: ModelConfig) -> None:
    frame = _rows().astype({"latitude": object})
    frame.loc[3, "latitude"] = "north"
    violation = _input_violation(store, frame)
    assert [(v.column, v.check) for v in violation.violations] == [("latitude", "dtype('float64')")]


def test_a_row_failing_two_checks_counts_once(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[3, ["income_index", "channel"]] = [np.nan, None]
    violation = _input_violation(store, frame)
    assert len(violation.violations) == 2
    assert violation.metadata()["failed_rows"] == 1


def test_a_null_key_is_refused(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[3, "store_id"] = None
    violations = _input_violation(store, frame).violations
    assert [(v.column, v.check, v.rows) for v in violations] == [("store_id", "not_nullable", 1)]


def test_duplicate_keys_are_refused_with_the_duplicated_key(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[3, "store_id"] = "S-IN-000004"
    (violation,) = _input_violation(store, frame).violations
    assert (violation.column, violation.rows) == ("store_id", 2)
    assert set(violation.sample_keys) == {"S-IN-000004"}


@pytest.mark.parametrize(
    ("other", "column"),
    [(Partition("ID", date(2026, 1, 1)), "market"), (Partition("IN", date(2026, 2, 1)), "month")],
)
def test_rows_of_another_partition_are_refused(
    store: ModelConfig, other: Partition, column: str
) -> None:
    frame = pd.concat([_rows().iloc[2:], stores(other, 2)], ignore_index=True)
    (violation,) = _input_violation(store, frame).violations
    assert (violation.column, violation.rows) == (column, 2)
    assert violation.sample_keys == [f"S-{other.market}-000000", f"S-{other.market}-000001"]


def test_an_empty_frame_names_model_and_source_table(store: ModelConfig) -> None:
    with pytest.raises(
        EmptyPartitionError, match=r"model 'store', .* the source table 'stores' has no rows"
    ):
        enforce_input_contract(store, PARTITION, _rows().iloc[:0])


def test_a_category_never_seen_in_training_names_column_and_key(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[4, "store_type"] = "hypermarket"

    violation = _input_violation(store, frame)

    [found] = violation.violations
    assert found.column == "store_type" and found.check.startswith("isin(")
    assert found.sample_keys == [frame.loc[4, "store_id"]]


def test_screening_splits_valid_rows_from_rejected_ones_with_reasons(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[2, "latitude"] = np.nan
    frame.loc[5, "store_type"] = "hypermarket"
    frame.loc[8, "store_id"] = frame.loc[9, "store_id"]

    screened = screen_input(store, PARTITION, frame)

    assert screened.rejected_rows == 4 and screened.input_rows == len(frame)
    assert len(screened.valid) == len(frame) - 4
    reasons = dict(
        zip(screened.rejected["failed_column"], screened.rejected["reason"], strict=True)
    )
    assert reasons["latitude"] == "not_nullable: nan"
    assert reasons["store_type"].endswith(": 'hypermarket'")
    assert sorted(screened.rejected["store_id"]) == sorted(
        [frame.loc[2, "store_id"], frame.loc[5, "store_id"], *[frame.loc[9, "store_id"]] * 2]
    )


def test_screening_still_fails_on_a_missing_column(store: ModelConfig) -> None:
    with pytest.raises(ContractViolation, match="column 'latitude'"):
        screen_input(store, PARTITION, _rows().drop(columns=["latitude"]))


def test_extra_columns_are_dropped(store: ModelConfig) -> None:
    checked = enforce_input_contract(store, PARTITION, _rows().assign(notes="call back"))
    assert sorted(checked.columns) == sorted(features_table(store).column_names)


def test_violation_metadata_lists_each_failing_column(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[[3, 7], "income_index"] = np.nan
    frame.loc[5, "channel"] = None
    metadata = _input_violation(store, frame).metadata()
    assert metadata.pop("message").startswith("input contract failed for model 'store'")
    assert metadata == {
        "error": "ContractViolation",
        "model": "store",
        "partition": "IN|2026-01-01",
        "contract": "input",
        "failed_rows": 3,
        "violations": [
            {
                "column": "channel",
                "check": "not_nullable",
                "rows": 1,
                "sample_keys": ["S-IN-000005"],
            },
            {
                "column": "income_index",
                "check": "not_nullable",
                "rows": 2,
                "sample_keys": ["S-IN-000003", "S-IN-000007"],
            },
        ],
    }


def test_sample_keys_are_capped_but_rows_are_all_counted(store: ModelConfig) -> None:
    frame = _rows()
    frame.loc[:9, "income_index"] = np.nan
    (violation,) = _input_violation(store, frame).violations
    assert violation.rows == 10
    assert violation.sample_keys == [f"S-IN-00000{i}" for i in range(5)]


def test_schemas_have_the_config_tables_columns(store: ModelConfig) -> None:
    assert list(input_schema(store).columns) == features_table(store).column_names
    assert list(output_schema(store).columns) == predictions_table(store).column_names
    assert output_schema(store).metadata == {"contract": "output"}


def test_a_schema_without_partition_accepts_any_market(store: ModelConfig) -> None:
    other = stores(Partition("ID", date(2026, 2, 1)), 5)
    assert len(input_schema(store).validate(other)) == 5


def test_valid_predictions_pass_the_output_contract(store: ModelConfig) -> None:
    rows = _prediction_rows()
    assert len(enforce_output_contract(store, PARTITION, rows)) == len(rows)


def test_a_prediction_below_its_minimum_names_column_and_key(store: ModelConfig) -> None:
    rows = _prediction_rows()
    rows.loc[4, "sales_potential"] = -1.0
    with pytest.raises(ContractViolation) as raised:
        enforce_output_contract(store, PARTITION, rows)
    assert raised.value.contract == "output"
    assert "column 'sales_potential'" in str(raised.value)
    assert "S-IN-000004" in str(raised.value)


def test_a_version_without_signature_is_unservable(store: ModelConfig) -> None:
    with pytest.raises(
        UnservableModelError, match=r"model 'store' \(coverage_store_model version 4\) has no sig"
    ):
        check_signature(store, 4, None)


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        pytest.param(
            {n: t for n, t in STORE_SIGNATURE.items() if n != "poi_count"},
            "configured feature 'poi_count' is not in the signature",
            id="missing",
        ),
        pytest.param(
            {**STORE_SIGNATURE, "store_type": "double"},
            "feature 'store_type' is double in the signature, not string",
            id="wrong-type",
        ),
        pytest.param(
            {**STORE_SIGNATURE, "rainfall_mm": "double"},
            "signature needs 'rainfall_mm', which is not configured",
            id="extra",
        ),
    ],
)
def test_a_signature_mismatch_names_the_feature(
    store: ModelConfig, signature: dict[str, str], problem: str
) -> None:
    with pytest.raises(UnservableModelError) as raised:
        check_signature(store, 4, signature)
    assert "cannot be served" in str(raised.value)
    assert problem in str(raised.value)


def test_a_signature_matching_the_features_exactly_passes(store: ModelConfig) -> None:
    check_signature(store, 4, STORE_SIGNATURE)
