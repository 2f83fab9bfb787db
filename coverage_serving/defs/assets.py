"""One factory turns a model's config entry into its feature and prediction assets."""

import warnings

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.contracts import contract_version, input_schema
from coverage_serving.core.tables import prediction_targets
from coverage_serving.defs.features import build_features_asset
from coverage_serving.defs.predictions import build_predictions_asset

# BackfillPolicy is beta in dagster 1.13; it is what makes a backfill one run, so we use it
# knowingly and keep its warning out of every definitions load.
warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)


def build_model_assets(model: ModelConfig) -> list[dg.AssetsDefinition]:
    """The model's feature snapshot and one prediction asset per table it scores into."""
    # The input contract's version marks the snapshots written under it (defs/features.py).
    input_contract_schema = input_schema(model)
    input_contract = contract_version(input_contract_schema)
    return [
        build_features_asset(model, input_contract_schema, input_contract),
        *(
            build_predictions_asset(model, target, input_contract)
            for target in prediction_targets(model)
        ),
    ]
