"""The batch tables the on-demand endpoint is compared with."""

from datetime import date

import dagster as dg
import pytest

from coverage_serving.config import ServingConfig
from coverage_serving.definitions import resources_for_deployment
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState

PARTITION = Partition("IN", date(2026, 1, 1))


@pytest.fixture
def batch(
    small_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> LocalState:
    """Both models' feature snapshot and prediction table for PARTITION, scored by Dagster."""
    for model in small_config.models.values():
        result = dg.materialize(
            build_model_assets(model),
            partition_key=PARTITION.key,
            resources=resources_for_deployment(small_config, state),
            instance=instance,
        )
        assert result.success
    return state
