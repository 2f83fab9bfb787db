"""The predict body built from a config whose column types the shipped models do not have: an
int key and a nullable float feature, from the JSON values to the frame that is scored."""

from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from coverage_serving.config import ColumnSpec, ColumnType, ModelConfig, ServingConfig
from coverage_serving.online import wire
from coverage_serving.online.served import columns_of_json_rows


@pytest.fixture
def model(small_config: ServingConfig) -> ModelConfig:
    grid = small_config.models["grid"]
    features = {**grid.features, "road_density": ColumnSpec(type=ColumnType.FLOAT, nullable=True)}
    return grid.model_copy(
        update={"keys": {"cell_no": ColumnSpec(type=ColumnType.INT)}, "features": features}
    )


def rows_body(model: ModelConfig, **changes: Any) -> dict[str, Any]:
    row = {"cell_no": 7, **{name: 1 for name in model.features}, **changes}
    return {"market": "IN", "month": "2026-01-01", "rows": [row]}


def test_an_int_key_takes_a_whole_json_number(model: ModelConfig) -> None:
    body = TypeAdapter(wire.predict_request(model, max_rows=10))

    sent = body.validate_python({"market": "IN", "key": {"cell_no": 7.0}})

    assert sent.key.model_dump() == {"cell_no": 7}


@pytest.mark.parametrize("key", ["7", True, 7.5, 2**53, None, {"no": 7}])
def test_an_int_key_refuses_anything_else_naming_it(key: Any, model: ModelConfig) -> None:
    body = TypeAdapter(wire.predict_request(model, max_rows=10))

    with pytest.raises(ValidationError) as refused:
        body.validate_python({"market": "IN", "key": {"cell_no": key}})

    fields = [problem["field"] for problem in wire.body_problems(_from_fastapi(refused))]
    assert fields == ["key.cell_no"]


def test_rows_become_arrays_of_the_config_dtypes(model: ModelConfig) -> None:
    body = TypeAdapter(wire.predict_request(model, max_rows=10))
    # Whole numbers for the floats, a null for the nullable one: nothing to infer a dtype from.
    sent = body.validate_python(rows_body(model, road_density=None))

    columns = columns_of_json_rows(model, [row.model_dump() for row in sent.rows])

    assert columns["cell_no"].dtype == "int64"
    floats = ["centroid_lat", "population", "road_density"]
    assert {str(columns[name].dtype) for name in floats} == {"float64"}
    assert np.isnan(columns["road_density"]).all()
    assert list(columns) == [*model.key_columns, *model.feature_columns]


def _from_fastapi(refused: pytest.ExceptionInfo[ValidationError]) -> list[dict[str, Any]]:
    """The errors as FastAPI reports a body's: located under "body"."""
    return [{**error, "loc": ("body", *error["loc"])} for error in refused.value.errors()]
