"""The main job of each model: refresh its features and score them, one partition per run."""

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.defs.partitions import model_partitions


def scoring_job_name(model: ModelConfig) -> str:
    return f"score_{model.name}"


def build_scoring_job(model: ModelConfig):  # returns a type dagster does not export
    return dg.define_asset_job(
        name=scoring_job_name(model),
        selection=dg.AssetSelection.groups(model.name),
        partitions_def=model_partitions(model),
        description=f"Refresh {model.features_table} and score it into {model.output_table}.",
    )
