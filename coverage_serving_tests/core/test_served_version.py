"""The one served-version decision against a real sqlite registry: alias, pin, missing alias,
unservable version, a registry that does not answer, one load per process."""

import mlflow
import pytest

from coverage_serving.config import ChallengerConfig, ModelConfig, PromotionGate, ServingConfig
from coverage_serving.core.served_version import (
    APPROVED_TAG,
    SERVED_TAG,
    HeldByGateError,
    Pin,
    load_served_model,
    served_version,
)
from coverage_serving.demo.emulator import free_port
from coverage_serving.errors import (
    RegistryError,
    RegistryUnavailableError,
    ServingError,
    UnservableModelError,
)
from coverage_serving.registry import ModelRegistry
from coverage_serving.settings import LocalState
from coverage_serving_tests.registry_helpers import Constant, register_version

pytestmark = pytest.mark.integration


@pytest.fixture
def store(small_config: ServingConfig) -> ModelConfig:
    return small_config.models["store"]


def test_the_alias_is_resolved_to_the_version_it_points_at(
    state: LocalState, store: ModelConfig, registry: ModelRegistry
) -> None:
    version = register_version(store, state, Constant(), alias="champion")

    ref = served_version(registry, store)
    loaded = load_served_model(registry, store)

    assert (ref.version, ref.alias) == (version, "champion")
    assert (loaded.ref.version, loaded.ref.alias) == (version, "champion")


def test_a_pin_serves_its_version_whatever_the_alias_says(
    state: LocalState, store: ModelConfig, registry: ModelRegistry
) -> None:
    register_version(store, state, Constant(), alias="champion")

    loaded = load_served_model(registry, store, Pin(1, alias="champion"))
    by_hand = load_served_model(registry, store, Pin(1))

    assert (loaded.ref.version, loaded.ref.alias) == (1, "champion")
    assert (by_hand.ref.version, by_hand.ref.alias) == (1, None)


def test_a_version_is_loaded_once_per_process(store: ModelConfig, registry: ModelRegistry) -> None:
    first, second = load_served_model(registry, store), load_served_model(registry, store)
    assert first.pyfunc is second.pyfunc


def test_a_missing_alias_is_named(
    state: LocalState, store: ModelConfig, registry: ModelRegistry
) -> None:
    mlflow.MlflowClient(state.tracking_uri).delete_registered_model_alias(
        store.registered_model, "champion"
    )
    for decide in (served_version, load_served_model):
        with pytest.raises(RegistryError, match="alias 'champion' cannot be resolved"):
            decide(registry, store)


def test_a_missing_pinned_version_is_named(store: ModelConfig, registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="version 9 cannot be resolved"):
        load_served_model(registry, store, Pin(9))


def test_an_unservable_version_is_refused_with_its_reason_before_and_after_loading(
    state: LocalState, store: ModelConfig, registry: ModelRegistry
) -> None:
    register_version(store, state, Constant(), alias="champion", drop_features=("months_open",))

    for decide in (served_version, load_served_model):
        with pytest.raises(UnservableModelError) as refused:
            decide(registry, store)
        assert "model 'store' (coverage_store_model version 2)" in str(refused.value)
        assert "configured feature 'months_open' is not in the signature" in str(refused.value)


def test_a_registry_that_does_not_answer_is_told_from_a_missing_version(
    store: ModelConfig,
) -> None:
    down = ModelRegistry(f"http://127.0.0.1:{free_port()}", allow_pickled_models=True)
    with pytest.raises(RegistryUnavailableError, match="did not answer"):
        served_version(down, store)


@pytest.mark.parametrize("text", ["two", "0", "-1", "1.5", ""])
def test_a_pin_that_is_not_a_version_number_is_refused(text: str) -> None:
    with pytest.raises(ServingError, match=f"model version {text!r} is not a registered version"):
        Pin.parse(text)


def test_a_pin_is_parsed_with_its_alias() -> None:
    assert Pin.parse(" 3 ", "champion") == Pin(3, "champion")
    assert Pin.parse("3", "") == Pin(3, None)


@pytest.fixture
def gated(store: ModelConfig) -> ModelConfig:
    return store.model_copy(
        update={
            "challenger": ChallengerConfig(),
            "promotion_gate": PromotionGate(min_rank_correlation=0.9),
        }
    )


def test_the_first_version_ever_served_passes_the_gate(
    gated: ModelConfig, registry: ModelRegistry
) -> None:
    assert served_version(registry, gated).version == 1  # nothing served before it


def test_a_version_never_compared_is_held_once_another_has_served(
    state: LocalState, gated: ModelConfig, registry: ModelRegistry
) -> None:
    client = mlflow.MlflowClient(state.tracking_uri)
    client.set_model_version_tag(gated.registered_model, "1", SERVED_TAG, "true")
    version = register_version(gated, state, Constant(), alias="champion")

    with pytest.raises(HeldByGateError, match="held by the promotion gate: it was never compared"):
        load_served_model(registry, gated)
    pinned = load_served_model(registry, gated, Pin(version, "champion"))  # a pin is explicit
    client.set_model_version_tag(gated.registered_model, str(version), APPROVED_TAG, "ana: ok")

    assert served_version(registry, gated).version == pinned.ref.version == version
