"""The main job of each model: refresh its features and score them, one partition per run."""

from typing import Any

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.defs.assets import (
    features_asset_key,
    model_versions_partitions,
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


def build_versions_job(model: ModelConfig) -> AssetJob:
    return dg.define_asset_job(
        name=f"record_{model.name}_versions",
        selection=dg.AssetSelection.assets(version_asset_key(model)),
        partitions_def=model_versions_partitions(model),
        description=f"Record a registered version of {model.registered_model} and its servability.",
    )
