"""The two batch steps of a model: snapshot a feature partition, score it into the output table."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from coverage_serving.config import InvalidRows, ModelConfig
from coverage_serving.core.contracts import (
    TooManyRejectedRows,
    enforce_input_contract,
    screen_input,
)
from coverage_serving.core.scoring import score_partition
from coverage_serving.core.tables import (
    features_table,
    predictions_table,
    rejected_table,
    source_table,
)
from coverage_serving.partition import Partition
from coverage_serving.registry import LoadedModel
from coverage_serving.warehouse import Warehouse

QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)


@dataclass
class StepResult:
    rows: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[f"{step}_seconds"] = round(time.perf_counter() - start, 3)


def refresh_features(
    warehouse: Warehouse, model: ModelConfig, partition: Partition, dagster_run_id: str
) -> StepResult:
    """Copy the partition's source rows that pass the input contract into the feature table.
    Under the quarantine policy the invalid rows go to the rejected table instead, unless
    there are more of them than the model allows."""
    result = StepResult()
    with result.timed("read"):
        rows = warehouse.read_partition(source_table(model), partition)
    if model.invalid_rows == InvalidRows.FAIL:
        with result.timed("validate"):
            valid = enforce_input_contract(model, partition, rows)
        with result.timed("write"):
            result.rows = warehouse.replace_partition(features_table(model), partition, valid)
        return result
    rejected = rejected_table(model)
    with result.timed("validate"):
        screened = screen_input(model, partition, rows)
        if screened.rejected_fraction > model.max_rejected_fraction:
            raise TooManyRejectedRows(model, partition, screened, rejected.qualified_name)
    with result.timed("write"):
        # Rejections first: a row missing from the feature table always has its reason.
        rejections = screened.rejected.assign(
            market=partition.market, month=partition.month, dagster_run_id=dagster_run_id
        )
        warehouse.replace_partition(rejected, partition, rejections, allow_empty=True)
        result.rows = warehouse.replace_partition(features_table(model), partition, screened.valid)
    result.details = {
        "rejected_rows": screened.rejected_rows,
        "rejected_fraction": screened.rejected_fraction,
        "rejected_table": rejected.qualified_name,
    }
    return result


def score_into_table(
    warehouse: Warehouse,
    model: ModelConfig,
    loaded: LoadedModel,
    partition: Partition,
    dagster_run_id: str,
) -> StepResult:
    """Score the partition's feature snapshot and swap it into the prediction table."""
    result = StepResult()
    with result.timed("read"):
        features = warehouse.read_partition(features_table(model), partition)
    with result.timed("score"):
        predictions = score_partition(model, loaded, partition, features, dagster_run_id)
    with result.timed("write"):
        result.rows = warehouse.replace_partition(predictions_table(model), partition, predictions)
    result.details = {
        "model_name": loaded.ref.name,
        "model_version": loaded.ref.version,
        "model_alias": loaded.ref.alias,
        "model_run_id": loaded.ref.run_id,
        "prediction_quantiles": {
            column: {
                f"p{round(q * 100):02d}": float(v)
                for q, v in predictions[column].quantile(QUANTILES).items()
            }
            | {"mean": float(predictions[column].mean())}
            for column in model.prediction_columns
        },
    }
    return result
