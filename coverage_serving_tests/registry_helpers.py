"""Register test versions in a real registry the way a data scientist would: plain MLflow."""

from datetime import date

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from coverage_serving.config import ModelConfig
from coverage_serving.core.contracts import enforce_input_contract
from coverage_serving.demo.data import GENERATORS
from coverage_serving.demo.models import TRAINING_EXPERIMENT
from coverage_serving.partition import Partition
from coverage_serving.registry import experiment_id, using_tracking_uri
from coverage_serving.settings import LocalState

EXAMPLE_PARTITION = Partition("IN", date(2026, 1, 1))


class Constant(mlflow.pyfunc.PythonModel):
    """A valid model for any configured prediction range that includes 100."""

    def predict(self, context: object, model_input: pd.DataFrame) -> pd.Series:
        return pd.Series(100.0, index=model_input.index)


def register_version(
    model: ModelConfig,
    state: LocalState,
    python_model: mlflow.pyfunc.PythonModel,
    alias: str | None = "champion",
    drop_features: tuple[str, ...] = (),
) -> int:
    """Register `python_model` with the model's signature (less `drop_features`); move `alias`."""
    frame = GENERATORS[model.source_table](EXAMPLE_PARTITION, 5)
    example = enforce_input_contract(model, EXAMPLE_PARTITION, frame)[model.feature_columns]
    example = example.drop(columns=list(drop_features))
    client = mlflow.MlflowClient(state.tracking_uri)
    training = experiment_id(state.tracking_uri, TRAINING_EXPERIMENT)
    with using_tracking_uri(state.tracking_uri), mlflow.start_run(experiment_id=training):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            signature=infer_signature(example, [1.0] * len(example)),
            input_example=example,
            # Stated, not inferred: inference starts a subprocess that costs seconds.
            pip_requirements=["mlflow"],
            registered_model_name=model.registered_model,
        )
    version = int(info.registered_model_version)
    if alias:
        client.set_registered_model_alias(model.registered_model, alias, str(version))
    return version
