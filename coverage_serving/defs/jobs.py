"""The main job of each model: refresh its features and score them, one partition per run."""

from typing import Any

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.tables import prediction_targets
from coverage_serving.defs.names import (
    features_asset_key,
    model_versions_partitions,
    prediction_asset_key,
    predictions_asset_key,
    version_asset_key,
)
from coverage_serving.defs.partitions import model_partitions

# What define_asset_job returns (an unresolved asset job): a type dagster does not export.
AssetJob = Any


def scoring_job_name(model: ModelConfig) -> str:
    return f"score_{model.name}"


def build_scoring_job(model: ModelConfig) -> AssetJob:
    return dg.define_asset_job(
        name=scoring_job_name(model),
        selection=dg.AssetSelection.assets(features_asset_key(model), predictions_asset_key(model)),
        partitions_def=model_partitions(model),
        description=f"Refresh {model.features_table} and score it into {model.output_table}.",
    )


def build_shadow_job(model: ModelConfig) -> AssetJob | None:
    """Score the challenger into the shadow table and compare it; None without a challenger."""
    if model.challenger is None:
        return None
    shadow = next(target for target in prediction_targets(model) if target.shadow)
    return dg.define_asset_job(
        name=f"shadow_{model.name}",
        selection=dg.AssetSelection.assets(prediction_asset_key(model, shadow)),
        partitions_def=model_partitions(model),
        description=(
            f"Score {model.registered_model}@{model.challenger.alias} into {model.shadow_table} "
            f"and compare it with {model.output_table}."
        ),
    )


def build_versions_job(model: ModelConfig) -> AssetJob:
    return dg.define_asset_job(
        name=f"record_{model.name}_versions",
        selection=dg.AssetSelection.assets(version_asset_key(model)),
        partitions_def=model_versions_partitions(model),
        description=f"Record a registered version of {model.registered_model} and its servability.",
    )
