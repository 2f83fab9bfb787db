"""The one decision of which model version serves a model, and whether it may: the configured
alias (or a pin) resolved to one concrete version, refused with its reason when it cannot score
the configured features, loaded once per process. The assets, the sensors, the on-demand
endpoint, the demo and the benchmarks ask here; nothing else resolves aliases, parses pinned
versions or checks signatures."""

from dataclasses import dataclass, replace

from coverage_serving.config import ModelConfig
from coverage_serving.core.compiled import compiled_predictor
from coverage_serving.core.contracts import check_signature
from coverage_serving.errors import ServingError, UnservableModelError
from coverage_serving.registry import LoadedModel, ModelRegistry, ModelVersionRef, input_types

# Tags on a registered version, read by the promotion gate.
APPROVED_TAG = "coverage_serving.approved"  # set by a person: who approved it and why
SERVED_TAG = "coverage_serving.served"  # set by a batch run that filled a served table with it
VERDICT_TAG = "coverage_serving.shadow_verdict"  # set by shadow scoring: passed, or what failed


class HeldByGateError(UnservableModelError):
    """The served alias points at a version the promotion gate holds back."""


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
    registry: ModelRegistry, model: ModelConfig, pin: Pin | None = None, alias: str | None = None
) -> ModelVersionRef:
    """The version that serves `model` (the pin's, else the one `alias`, by default the served
    alias, points at), checked servable from its signature without loading it. Raises
    RegistryError when there is no such alias or version, UnservableModelError naming why it
    cannot serve (HeldByGateError when the promotion gate holds it back)."""
    ref = _resolve(registry, model, pin, alias)
    check_signature(model, ref.version, registry.signature(ref))
    return ref


def load_served_model(
    registry: ModelRegistry, model: ModelConfig, pin: Pin | None = None, alias: str | None = None
) -> LoadedModel:
    """The version that serves `model`, loaded (once per process and version) and servable:
    what scoring needs. Every row scored with it is of this one version, whatever the alias
    does meanwhile. It predicts with its compiled form where one was stored for this machine
    and passed its checks (core.compiled), with the model's own predict otherwise."""
    ref = _resolve(registry, model, pin, alias)
    pyfunc = registry.load(ref)
    check_signature(model, ref.version, input_types(pyfunc.metadata))
    loaded = LoadedModel(ref=ref, pyfunc=pyfunc)
    compiled, scored_with = compiled_predictor(registry, model, loaded)
    return replace(loaded, compiled=compiled, scored_with=scored_with)


def _resolve(
    registry: ModelRegistry, model: ModelConfig, pin: Pin | None, alias: str | None
) -> ModelVersionRef:
    if pin is not None:
        return registry.pinned(model.registered_model, pin.version, pin.alias)
    ref = registry.resolve(model.registered_model, alias or model.alias)
    if ref.alias == model.alias:
        _require_gate_passed(
            registry,
            model,
            ref,
            held=f"@{model.alias} points at {ref.name} version {ref.version},",
            instead="; the tables keep the version they hold. To serve it anyway,",
        )
    return ref


def load_version_named_by_caller(
    registry: ModelRegistry, model: ModelConfig, version: int
) -> LoadedModel:
    """A version a caller names instead of the served one (the on-demand endpoint's "version"):
    servable like any, and under a promotion gate one that passed it, was approved or served
    before; HeldByGateError naming why otherwise. Loaded once per process and version."""
    ref = registry.pinned(model.registered_model, version, None)
    _require_gate_passed(
        registry,
        model,
        ref,
        held=f"{ref.name} version {ref.version} may not be named by a caller, it is",
        instead=". Score with the served version, or",
    )
    return load_served_model(registry, model, Pin(version))


def _require_gate_passed(
    registry: ModelRegistry,
    model: ModelConfig,
    ref: ModelVersionRef,
    held: str,
    instead: str,
) -> None:
    """HeldByGateError unless the gate lets `ref` serve: what is `held` back, why, and what to
    do `instead`."""
    why = _gate_refusal(registry, model, ref)
    if why is not None:
        raise HeldByGateError(
            f"model {model.name!r}: {held} held by the promotion gate: {why}{instead} tag "
            f"version {ref.version} with {APPROVED_TAG} (who approved it, and why)."
        )


def _gate_refusal(registry: ModelRegistry, model: ModelConfig, ref: ModelVersionRef) -> str | None:
    """Why the promotion gate holds `ref` back, None when it does not. With a gate, a version
    may serve only if it passed its shadow comparison, a person approved it, or it served
    before (a rollback); the first version ever served has nothing to be compared with and
    passes."""
    tags = ref.tags
    if model.promotion_gate is None or tags.get(APPROVED_TAG) or tags.get(SERVED_TAG):
        return None
    if not registry.has_version_tagged(model.registered_model, SERVED_TAG):
        return None
    verdict = tags.get(VERDICT_TAG)
    if verdict == "passed":
        return None
    return (
        f"its shadow comparison failed: {verdict}" if verdict else "it was never compared in shadow"
    )
