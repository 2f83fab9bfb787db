"""Run tags through which a run is pinned to a model version, and the dagster tag this package
reads."""

from collections.abc import Mapping

from coverage_serving.core.served_version import Pin

PINNED_VERSION_TAG = "coverage_serving/model_version"
PINNED_ALIAS_TAG = "coverage_serving/model_alias"

# The code version dagster records on a materialisation; dagster keeps the constant private.
CODE_VERSION_TAG = "dagster/code_version"


def pin_tags(pin: Pin) -> dict[str, str]:
    """The tags of a run that must score with `pin`'s version."""
    return {
        PINNED_VERSION_TAG: str(pin.version),
        **({PINNED_ALIAS_TAG: pin.alias} if pin.alias else {}),
    }


def pin_of(tags: Mapping[str, str]) -> Pin | None:
    """The version a run is pinned to by its tags (a sensor's request, or a person's launch),
    or None when it follows the alias."""
    if PINNED_VERSION_TAG not in tags:
        return None
    return Pin.parse(tags[PINNED_VERSION_TAG], tags.get(PINNED_ALIAS_TAG))
