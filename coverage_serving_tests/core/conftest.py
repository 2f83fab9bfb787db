"""What the core's tests share."""

import pytest

from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import LocalState


@pytest.fixture
def registry(state: LocalState) -> ModelRegistry:
    """The session's sqlite registry, trusting the pickled demo models."""
    return ModelRegistry(state.tracking_uri, allow_pickled_models=True)
