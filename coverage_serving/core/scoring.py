"""Score one partition's feature rows with one loaded model version, adding lineage."""

import numpy as np
import pandas as pd

from coverage_serving.config import ModelConfig
from coverage_serving.core.contracts import (
    enforce_input_contract,
    enforce_output_contract,
    plainly_valid_input,
    plainly_valid_output,
)
from coverage_serving.errors import ModelOutputError
from coverage_serving.lineage import Lineage
from coverage_serving.partition import Partition
from coverage_serving.registry import LoadedModel


def score_partition(
    config: ModelConfig,
    model: LoadedModel,
    partition: Partition,
    features: pd.DataFrame,
    lineage: Lineage,
) -> pd.DataFrame:
    """One prediction row per feature row (of a partition, or of one chunk of it), with
    lineage, that passed the output contract. `model` is servable: it came from the one
    served-version decision (core.served_version)."""
    return score_features(config, model, partition, features).assign(**lineage.columns())


def score_features(
    config: ModelConfig, model: LoadedModel, partition: Partition, features: pd.DataFrame
) -> pd.DataFrame:
    """score_partition's rows without the lineage columns: an on-demand response writes its
    lineage as scalars, not as columns of a frame of a row or a few."""
    valid = enforce_input_contract(config, partition, features)
    return score_valid_features(config, model, partition, valid)


# A few rows held as one array per column, in the dtypes of their frame.
Columns = dict[str, np.ndarray]


def score_few_rows(
    config: ModelConfig, model: LoadedModel, partition: Partition, rows: Columns
) -> Columns:
    """score_features for the few rows of an on-demand request, held as arrays: a DataFrame per
    step cost more than the model itself for one row. The same contracts, checked by their
    array fast path; rows it cannot vouch for go through score_features, whose Pandera
    validation names what fails."""
    if not plainly_valid_input(config, partition, rows):
        return _columns(score_features(config, model, partition, pd.DataFrame(rows)))
    features = pd.DataFrame({name: rows[name] for name in config.feature_columns})
    predictions = _predictions(config, model, features)
    scored = {name: rows[name] for name in [*config.key_columns, "market", "month"]}
    scored |= dict(zip(config.prediction_columns, predictions.T, strict=True))
    if not plainly_valid_output(config, scored):
        return _columns(enforce_output_contract(config, partition, pd.DataFrame(scored)))
    return scored


def _columns(frame: pd.DataFrame) -> Columns:
    return {name: frame[name].to_numpy() for name in frame.columns}


def score_valid_features(
    config: ModelConfig, model: LoadedModel, partition: Partition, features: pd.DataFrame
) -> pd.DataFrame:
    """Keys, market, month and predictions for features that already passed the input
    contract, checked by the output contract. Lineage is the caller's to add: the batch adds
    it at the swap, once per partition, not once per row."""
    if not features.index.equals(pd.RangeIndex(len(features))):
        # reset_index copies every column, even when the index is already the default one.
        features = features.reset_index(drop=True)
    predictions = predict_in_chunks(config, model, features[config.feature_columns])
    rows = pd.concat(
        [features[[*config.key_columns, "market", "month"]], predictions], axis="columns"
    )
    return enforce_output_contract(config, partition, rows)


def predict_in_chunks(
    config: ModelConfig, model: LoadedModel, features: pd.DataFrame
) -> pd.DataFrame:
    predictions = _predictions(config, model, features)
    return pd.DataFrame(predictions, columns=config.prediction_columns)


def _predictions(config: ModelConfig, model: LoadedModel, features: pd.DataFrame) -> np.ndarray:
    if 0 < len(features) <= config.chunk_rows:
        return _prediction_columns(config, model, features)
    # Chunks bound the memory pyfunc's signature enforcement and the model take per call.
    chunks = [
        _prediction_columns(config, model, features.iloc[start : start + config.chunk_rows])
        for start in range(0, len(features), config.chunk_rows)
    ]
    return np.vstack([np.empty((0, len(config.prediction_columns))), *chunks])


def _prediction_columns(config: ModelConfig, model: LoadedModel, chunk: pd.DataFrame) -> np.ndarray:
    where = f"model {config.name!r} ({model.ref.name} version {model.ref.version})"
    raw = model.predict(chunk)
    if isinstance(raw, pd.DataFrame) and set(config.prediction_columns) <= set(raw.columns):
        raw = raw[config.prediction_columns]
    try:
        values = np.asarray(raw, dtype="float64")
    except (TypeError, ValueError) as err:
        raise ModelOutputError(f"{where} returned non-numeric predictions: {err}") from err
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    expected = (len(chunk), len(config.prediction_columns))
    if values.shape != expected:
        raise ModelOutputError(
            f"{where} returned predictions of shape {values.shape} for {len(chunk)} rows; "
            f"expected {expected} (one row per feature row, columns {config.prediction_columns})"
        )
    return values
