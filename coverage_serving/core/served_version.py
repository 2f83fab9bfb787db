"""The one decision of which model version serves a model, and whether it may: the configured
alias (or a pin) resolved to one concrete version, refused with its reason when it cannot score
the configured features, loaded once per process. The assets, the sensors, the on-demand
endpoint, the demo and the benchmarks ask here; nothing else resolves aliases, parses pinned
versions or checks signatures."""

from dataclasses import dataclass

from coverage_serving.config import ModelConfig
from coverage_serving.core.contracts import check_signature
from coverage_serving.errors import ServingError
from coverage_serving.registry import LoadedModel, ModelRegistry, ModelVersionRef, input_types


@dataclass(frozen=True)
class Pin:
    """A version named explicitly instead of followed through the alias. `alias` is the alias
    it was chosen through (the sensor pins the alias's version), None when chosen by hand; it
    is what the rows' lineage records."""

    version: int
    alias: str | None = None

    @classmethod
    def parse(cls, version: str, alias: str | None = None) -> "Pin":
        if not version.strip().isdigit() or int(version) < 1:
            raise ServingError(
                f"model version {version!r} is not a registered version number (1, 2, ...)"
            )
        return cls(int(version), alias or None)


def served_version(
    registry: ModelRegistry, model: ModelConfig, pin: Pin | None = None
) -> ModelVersionRef:
    """The version that serves `model` (the pin's, else the one its alias points at), checked
    servable from its signature without loading it. Raises RegistryError when there is no such
    alias or version, UnservableModelError naming why it cannot serve."""
    ref = _resolve(registry, model, pin)
    check_signature(model, ref.version, registry.signature(ref))
    return ref


def load_served_model(
    registry: ModelRegistry, model: ModelConfig, pin: Pin | None = None
) -> LoadedModel:
    """The version that serves `model`, loaded (once per process and version) and servable:
    what scoring needs. Every row scored with it is of this one version, whatever the alias
    does meanwhile."""
    ref = _resolve(registry, model, pin)
    pyfunc = registry.load(ref)
    check_signature(model, ref.version, input_types(pyfunc.metadata))
    return LoadedModel(ref=ref, pyfunc=pyfunc)


def _resolve(registry: ModelRegistry, model: ModelConfig, pin: Pin | None) -> ModelVersionRef:
    if pin is None:
        return registry.resolve(model.registered_model, model.alias)
    return registry.pinned(model.registered_model, pin.version, pin.alias)
