"""Demo models, registered the two ways the deployment lecture exports models:
the store model as a pickled scikit-learn pipeline, the grid model in LightGBM's native format."""

import io
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import sklearn
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import (
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from coverage_serving.config import ColumnType, ModelConfig
from coverage_serving.core.reference import log_reference_profile
from coverage_serving.demo.data import GENERATORS
from coverage_serving.partition import Partition
from coverage_serving.registry import experiment_id, registry_client, using_tracking_uri

TRAINING_EXPERIMENT = "coverage-serving-training"
TRAINING_ROWS = 4_000
HOLDOUT_FRACTION = 0.2  # of the training frame, kept out of training to measure the version


def _training_frame(model: ModelConfig, seed: int) -> pd.DataFrame:
    generate = GENERATORS[model.source_table]
    frames = [
        generate(Partition(market, model.first_month), TRAINING_ROWS) for market in model.markets
    ]
    frame = pd.concat(frames, ignore_index=True)
    return frame.sample(frac=0.8, random_state=seed).reset_index(drop=True)


def _sales_potential(x: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    type_factor = x["store_type"].map(
        {"kirana": 1.0, "convenience": 1.4, "pharmacy": 1.2, "supermarket": 3.5}
    )
    return (
        3_000
        * x["population_index"] ** 0.6
        * x["income_index"] ** 0.8
        * type_factor
        * (1 + 0.01 * x["current_sku_count"])
        / (1 + 0.05 * x["competitor_count"])
        * rng.lognormal(0, 0.15, len(x))
    ).to_numpy()


def _is_whitespace(x: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    logit = (
        0.9 * np.log1p(x["population"]) / 3
        + 0.2 * x["road_density"]
        - 0.8 * x["covered_outlet_count"]
        - 1.5
        + rng.normal(0, 0.5, len(x))
    )
    return (logit > 0).astype(int).to_numpy()


def _regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": root_mean_squared_error(y, predicted),
        "mae": mean_absolute_error(y, predicted),
        "r2": r2_score(y, predicted),
    }


def _classification_metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": roc_auc_score(y, probability),
        "log_loss": log_loss(y, probability),
        "brier": brier_score_loss(y, probability),
    }


def _train_store(
    x: pd.DataFrame, y: np.ndarray, seed: int
) -> tuple[Pipeline, Callable[..., object]]:
    categorical = list(x.select_dtypes("object").columns)
    pipeline = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("categories", OneHotEncoder(handle_unknown="ignore"), categorical)],
                    remainder="passthrough",
                ),
            ),
            (
                "regress",
                # Trained on log sales so predictions stay positive.
                TransformedTargetRegressor(
                    HistGradientBoostingRegressor(max_iter=150, random_state=seed),
                    func=np.log1p,
                    inverse_func=np.expm1,
                ),
            ),
        ]
    )
    pipeline.fit(x, y)

    def log(**kwargs: object) -> object:
        # "cloudpickle": the pickled export style; loading it is a trust decision (config).
        return mlflow.sklearn.log_model(
            pipeline,
            serialization_format="cloudpickle",
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", "cloudpickle"],
            **kwargs,
        )

    return pipeline, log


def _train_grid(x: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[object, Callable[..., object]]:
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": seed, "num_leaves": 31},
        lgb.Dataset(x, y),
        num_boost_round=120,
    )

    def log(**kwargs: object) -> object:
        return mlflow.lightgbm.log_model(
            booster, pip_requirements=[f"lightgbm=={lgb.__version__}"], **kwargs
        )

    return booster, log


@dataclass(frozen=True)
class _Trainer:
    target: Callable[[pd.DataFrame, np.random.Generator], np.ndarray]
    train: Callable[[pd.DataFrame, np.ndarray, int], tuple[Any, Callable[..., object]]]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]


TRAINERS = {
    "stores": _Trainer(_sales_potential, _train_store, _regression_metrics),
    "grid_cells": _Trainer(_is_whitespace, _train_grid, _classification_metrics),
}


def train_demo_model(model: ModelConfig, tracking_uri: str, alias: str | None) -> int:
    """Train, log and register a new version of the model; move `alias` to it if given. Its
    metrics on a holdout of the training frame are logged to its run and its logged model.

    Requirements are stated rather than inferred: inference runs the model in a subprocess,
    which costs seconds per model and adds nothing for these two known libraries."""
    if model.source_table not in TRAINERS:
        raise ValueError(
            f"model {model.name!r}: no demo trainer for source table {model.source_table!r}"
        )
    client = registry_client(tracking_uri)
    training = experiment_id(tracking_uri, TRAINING_EXPERIMENT)
    seed = len(_versions(client, model.registered_model)) + 1
    frame = _training_frame(model, seed)
    features = frame[model.feature_columns].astype(
        {n: "float64" for n, s in model.features.items() if s.type == ColumnType.FLOAT}
    )
    trainer = TRAINERS[model.source_table]
    target = trainer.target(features, np.random.default_rng(seed))
    features, holdout, target, holdout_target = train_test_split(
        features, target, test_size=HOLDOUT_FRACTION, random_state=seed
    )
    estimator, log = trainer.train(features, target, seed)
    example = features.head(5)
    with (
        using_tracking_uri(tracking_uri),
        mlflow.start_run(experiment_id=training, run_name=f"demo-{model.name}-{seed}"),
    ):
        mlflow.log_params(
            {"demo_seed": seed, "training_rows": len(features), "holdout_rows": len(holdout)}
        )
        with warnings.catch_warnings():
            # MLflow hints that int columns cannot hold missing values; the config already
            # refuses nullable int features, so the hint does not apply.
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            signature = infer_signature(example, estimator.predict(example))
        predictions = pd.DataFrame(
            {model.prediction_columns[0]: estimator.predict(features)}, index=features.index
        )
        # The version's reference for drift checks: its training features and predictions.
        log_reference_profile(model, features, predictions, frame.loc[features.index, "market"])
        with _without_mlflow_chatter():
            info = log(
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=model.registered_model,
            )
        # On the logged model too: MLflow 3 shows a model's metrics with it and its versions.
        mlflow.log_metrics(
            trainer.metrics(holdout_target, estimator.predict(holdout)), model_id=info.model_id
        )
    version = int(info.registered_model_version)
    if alias:
        client.set_registered_model_alias(model.registered_model, alias, str(version))
    return version


@contextmanager
def _without_mlflow_chatter() -> Iterator[None]:
    """The demo pickles its sklearn model knowingly (allow_pickled_models in serving.yaml) and
    prints its own line per registration: MLflow's warning and announcement would be noise."""
    flavour_logger = logging.getLogger("mlflow.sklearn")
    level = flavour_logger.level
    flavour_logger.setLevel(logging.ERROR)
    try:
        with redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered"
            yield
    finally:
        flavour_logger.setLevel(level)


def _versions(client: mlflow.MlflowClient, name: str) -> list[object]:
    return list(client.search_model_versions(f"name = '{name}'"))
