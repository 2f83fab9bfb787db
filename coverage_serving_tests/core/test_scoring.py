"""Scoring with real MLflow pyfunc models, saved to and loaded from tmp_path: no registry,
no Dagster, no warehouse."""

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.core.contracts import ContractViolation
from coverage_serving.core.scoring import (
    predict_in_chunks,
    score_features,
    score_few_rows,
    score_partition,
)
from coverage_serving.core.tables import predictions_table
from coverage_serving.demo.data import stores
from coverage_serving.errors import ModelOutputError
from coverage_serving.lineage import Lineage
from coverage_serving.partition import Partition
from coverage_serving.registry import PICKLE_TRUST_VAR, LoadedModel, ModelVersionRef

# Models saved here take their signature, not an input example.
pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided:UserWarning")

PARTITION = Partition("IN", date(2026, 1, 1))
ROWS = 50
REF = ModelVersionRef(name="m", version=3, alias="champion", run_id="r1", source="s")

Predict = Callable[[pd.DataFrame], Any]


class FunctionModel(mlflow.pyfunc.PythonModel):
    """Predicts fn(features) and records the size of every batch it is asked to score."""

    batches: ClassVar[list[int]] = []

    def __init__(self, fn: Predict) -> None:
        self.fn = fn

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> Any:
        FunctionModel.batches.append(len(model_input))
        return self.fn(model_input)


def _sales(features: pd.DataFrame) -> np.ndarray:
    return features["population_index"].to_numpy() * 1_000


@pytest.fixture(autouse=True)
def _mlflow_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A PythonModel is saved with cloudpickle, which MLflow loads only when trusted.
    monkeypatch.setenv(PICKLE_TRUST_VAR, "true")


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setattr(FunctionModel, "batches", [])
    return FunctionModel.batches


@pytest.fixture
def store(small_config: ServingConfig) -> ModelConfig:
    return small_config.models["store"]


def _served(tmp_path: Path, fn: Predict, signature_features: pd.DataFrame) -> LoadedModel:
    """fn saved as a pyfunc model whose signature takes `signature_features`, loaded back."""
    path = tmp_path / "model"
    mlflow.pyfunc.save_model(
        path=path,
        python_model=FunctionModel(fn),
        signature=infer_signature(signature_features, _sales(signature_features)),
        pip_requirements=[],
    )
    return LoadedModel(ref=REF, pyfunc=mlflow.pyfunc.load_model(str(path)))


def _score(tmp_path: Path, store: ModelConfig, fn: Predict) -> pd.DataFrame:
    features = stores(PARTITION, ROWS)
    model = _served(tmp_path, fn, features[store.feature_columns])
    return score_partition(store, model, PARTITION, features, Lineage.of(model.ref, "run-1"))


def test_each_feature_row_gets_one_prediction_row_with_lineage(
    tmp_path: Path, store: ModelConfig
) -> None:
    before = datetime.now(UTC)
    scored = _score(tmp_path, store, _sales)
    assert sorted(scored.columns) == sorted(predictions_table(store).column_names)
    assert scored["store_id"].tolist() == stores(PARTITION, ROWS)["store_id"].tolist()
    assert set(scored["market"]) == {"IN"}
    assert set(scored["month"]) == {pd.Timestamp(PARTITION.month)}
    lineage = ["model_name", "model_version", "model_alias", "model_run_id", "dagster_run_id"]
    assert scored[lineage].drop_duplicates().to_dict("records") == [
        {
            "model_name": "m",
            "model_version": 3,
            "model_alias": "champion",
            "model_run_id": "r1",
            "dagster_run_id": "run-1",
        }
    ]
    assert scored["model_version"].dtype == "int64"
    assert str(scored["scored_at"].dt.tz) == "UTC"
    assert before <= scored["scored_at"].min() <= datetime.now(UTC)


def test_predictions_are_the_model_applied_to_the_features(
    tmp_path: Path, store: ModelConfig
) -> None:
    scored = _score(tmp_path, store, _sales)
    np.testing.assert_array_equal(scored["sales_potential"], _sales(stores(PARTITION, ROWS)))


def test_a_frame_output_is_read_by_its_prediction_column(
    tmp_path: Path, store: ModelConfig
) -> None:
    scored = _score(
        tmp_path, store, lambda x: pd.DataFrame({"debug": -1.0, "sales_potential": _sales(x)})
    )
    np.testing.assert_array_equal(scored["sales_potential"], _sales(stores(PARTITION, ROWS)))


def test_chunks_predict_like_one_call_with_one_model_call_per_chunk(
    tmp_path: Path, store: ModelConfig, batches: list[int]
) -> None:
    features = stores(PARTITION, 600)[store.feature_columns]
    model = _served(tmp_path, _sales, features)
    chunked = predict_in_chunks(store, model, features)
    assert batches == [250, 250, 100]
    whole = pd.DataFrame({"sales_potential": model.predict(features)})
    pd.testing.assert_frame_equal(chunked, whole)


@pytest.mark.parametrize("value", [-1.0, np.nan])
def test_a_negative_or_missing_prediction_fails_the_output_contract(
    tmp_path: Path, store: ModelConfig, value: float
) -> None:
    with pytest.raises(ContractViolation) as raised:
        _score(tmp_path, store, lambda x: np.full(len(x), value))
    assert raised.value.contract == "output"
    assert [v.column for v in raised.value.violations] == ["sales_potential"]


@pytest.mark.parametrize(
    ("fn", "problem"),
    [
        pytest.param(
            lambda x: np.zeros(len(x) - 1),
            r"predictions of shape \(49, 1\) for 50 rows; expected \(50, 1\)",
            id="one-row-short",
        ),
        pytest.param(
            lambda x: np.zeros((len(x), 2)),
            r"predictions of shape \(50, 2\) for 50 rows; expected \(50, 1\)",
            id="two-columns",
        ),
        pytest.param(lambda x: np.full(len(x), "high"), "non-numeric predictions", id="text"),
    ],
)
def test_output_that_cannot_be_a_prediction_column_is_refused(
    tmp_path: Path, store: ModelConfig, fn: Predict, problem: str
) -> None:
    with pytest.raises(
        ModelOutputError, match=rf"model 'store' \(m version 3\) returned {problem}"
    ):
        _score(tmp_path, store, fn)


def _as_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in frame.columns}


@pytest.mark.parametrize("rows", [1, 3])
def test_few_rows_held_as_arrays_score_as_a_frame_does(
    tmp_path: Path, store: ModelConfig, rows: int
) -> None:
    features = stores(PARTITION, rows)
    model = _served(tmp_path, _sales, features[store.feature_columns])

    few = score_few_rows(store, model, PARTITION, _as_arrays(features))

    expected = score_features(store, model, PARTITION, features)
    assert list(few) == list(expected.columns)
    for name, values in few.items():
        assert values.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(values, expected[name].to_numpy())


@pytest.mark.parametrize(
    ("column", "value", "contract"),
    [("population_index", np.inf, "input"), ("store_type", "kiosk", "input")],
)
def test_few_rows_that_break_a_contract_are_refused_naming_it(
    tmp_path: Path, store: ModelConfig, column: str, value: object, contract: str
) -> None:
    features = stores(PARTITION, 2)
    model = _served(tmp_path, _sales, features[store.feature_columns])
    rows = _as_arrays(features)
    rows[column] = rows[column].copy()
    rows[column][1] = value

    with pytest.raises(ContractViolation) as raised:
        score_few_rows(store, model, PARTITION, rows)

    assert raised.value.contract == contract
    assert [v.column for v in raised.value.violations] == [column]
    assert raised.value.violations[0].sample_keys == [features["store_id"].iloc[1]]


def test_a_few_rows_negative_prediction_fails_the_output_contract(
    tmp_path: Path, store: ModelConfig
) -> None:
    features = stores(PARTITION, 2)
    model = _served(tmp_path, lambda x: np.full(len(x), -1.0), features[store.feature_columns])

    with pytest.raises(ContractViolation) as raised:
        score_few_rows(store, model, PARTITION, _as_arrays(features))

    assert raised.value.contract == "output"
    assert [v.column for v in raised.value.violations] == ["sales_potential"]


def test_a_null_in_an_int_column_of_few_rows_is_a_violation_naming_it(
    tmp_path: Path, store: ModelConfig
) -> None:
    features = stores(PARTITION, 2)
    model = _served(tmp_path, _sales, features[store.feature_columns])
    rows = _as_arrays(features)
    # What online.served.columns_of_json_rows hands over for a null in an int column.
    rows["poi_count"] = np.array([None, 3], dtype=object)

    with pytest.raises(ContractViolation) as raised:
        score_few_rows(store, model, PARTITION, rows)

    assert raised.value.contract == "input"
    assert "poi_count" in {v.column for v in raised.value.violations}
