"""The training profile a model version may ship: the reference its partitions drift from.

A version ships one when its training run holds the artifact
`monitoring/reference_profiles.json`: a JSON object from each market to a core.profile Profile
(as `Profile.to_json` writes it) of that market's training rows, their features and the
model's predictions on them, each numeric column binned on its own deciles. Per market,
because partitions are per market: a profile of all markets would show every market's
coordinates as drift. `log_reference_profile` writes it from inside the training run; the demo
models do. A market the file lacks, or a version without it, takes the first month the version
scored in that market as reference (core.monitoring).
"""

import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd

from coverage_serving.config import ModelConfig
from coverage_serving.core.profile import Profile, profile_of
from coverage_serving.errors import ServingError
from coverage_serving.registry import ModelRegistry, ModelVersionRef, redact, registry_client

REFERENCE_ARTIFACT = "monitoring/reference_profiles.json"


class ReferenceError(ServingError):
    """A version's training profile exists but cannot be read."""


def training_profile(
    model: ModelConfig, features: pd.DataFrame, predictions: pd.DataFrame
) -> Profile:
    """The profile of a training set: its features and the predictions on them, each numeric
    column binned on its own deciles."""
    frame = pd.concat(
        [features[model.feature_columns], predictions[model.prediction_columns]], axis=1
    )
    return profile_of(
        frame, model.numeric_features + model.prediction_columns, model.categorical_features, {}
    )


def log_reference_profile(
    model: ModelConfig, features: pd.DataFrame, predictions: pd.DataFrame, markets: pd.Series
) -> None:
    """Log the training profile of each market (`markets`: the market of each training row) to
    the active MLflow run, where the version's partitions look for their reference. Call it
    inside the run that logs the model."""
    profiles = {
        str(market): training_profile(
            model, features[markets == market], predictions[markets == market]
        ).to_dict()
        for market in sorted(markets.unique())
    }
    mlflow.log_text(json.dumps(profiles), REFERENCE_ARTIFACT)


def shipped_reference(tracking_uri: str, ref: ModelVersionRef) -> dict[str, Profile] | None:
    """The version's training profile of each market, or None when its run ships none."""
    if ref.run_id is None:
        return None
    client = registry_client(tracking_uri)
    where = f"model {ref.name!r} version {ref.version}: {REFERENCE_ARTIFACT} of run {ref.run_id}"
    try:
        listed = {item.path for item in client.list_artifacts(ref.run_id, "monitoring")}
    except Exception as err:
        raise ReferenceError(f"{where} cannot be listed: {redact(str(err))}") from None
    if REFERENCE_ARTIFACT not in listed:
        return None
    with tempfile.TemporaryDirectory(prefix="coverage-serving-reference-") as scratch:
        try:
            local = client.download_artifacts(ref.run_id, REFERENCE_ARTIFACT, scratch)
            by_market = json.loads(Path(local).read_text())
            return {market: Profile.from_dict(profile) for market, profile in by_market.items()}
        except Exception as err:
            raise ReferenceError(f"{where} cannot be read: {redact(str(err))}") from None


ShippedReferences = Callable[[int], dict[str, Profile] | None]


def shipped_references(registry: ModelRegistry, registered_model: str) -> ShippedReferences:
    """The shipped reference of each version of `registered_model`, read once per version:
    partitions of one market may have been scored by several versions."""

    @functools.cache
    def of(version: int) -> dict[str, Profile] | None:
        ref = registry.pinned(registered_model, version, alias=None)
        return shipped_reference(registry.tracking_uri, ref)

    return of
