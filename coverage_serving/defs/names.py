"""What a model's assets and their checks are called: asset keys derived from the config, and
check names as a type, so code never matches a check by its spelling."""

from enum import StrEnum

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.tables import PredictionTarget, served_target


class CheckName(StrEnum):
    INPUT_CONTRACT = "input_contract"
    OUTPUT_CONTRACT = "output_contract"
    SERVABLE = "servable"
    REJECTED_ROWS = "rejected_rows"
    UNMATCHED_MARKETS = "unmatched_markets"
    CHALLENGER_COMPARISON = "challenger_comparison"


# Dagster takes a check name as a plain str (its serdes refuses unknown enums): `.value`.
# The check that reports each contract of core.contracts (ContractViolation.contract).
CONTRACT_CHECKS = {"input": CheckName.INPUT_CONTRACT, "output": CheckName.OUTPUT_CONTRACT}


def features_asset_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(model.features_table)


def predictions_asset_key(model: ModelConfig) -> dg.AssetKey:
    return prediction_asset_key(model, served_target(model))


def prediction_asset_key(model: ModelConfig, target: PredictionTarget) -> dg.AssetKey:
    return dg.AssetKey(f"{model.name}_{target.name}")


def version_asset_key(model: ModelConfig) -> dg.AssetKey:
    return dg.AssetKey(f"{model.name}_model")


def model_versions_partitions(model: ModelConfig) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{model.name}_model_versions")
