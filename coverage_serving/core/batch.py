"""The two batch steps of a model: snapshot a feature partition, score it into the output table."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from coverage_serving.config import ModelConfig
from coverage_serving.core.contracts import enforce_input_contract
from coverage_serving.core.scoring import score_partition
from coverage_serving.core.tables import features_table, predictions_table, source_table
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


def refresh_features(warehouse: Warehouse, model: ModelConfig, partition: Partition) -> StepResult:
    """Copy the partition's source rows that pass the input contract into the feature table."""
    result = StepResult()
    with result.timed("read"):
        rows = warehouse.read_partition(source_table(model), partition)
    with result.timed("validate"):
        valid = enforce_input_contract(model, partition, rows)
    with result.timed("write"):
        result.rows = warehouse.replace_partition(features_table(model), partition, valid)
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
