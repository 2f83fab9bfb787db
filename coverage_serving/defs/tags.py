"""Run tags through which a request pins the model version a run must score with, and the
dagster tag this package reads."""

PINNED_VERSION_TAG = "coverage_serving/model_version"
PINNED_ALIAS_TAG = "coverage_serving/model_alias"

# The code version dagster records on a materialisation; dagster keeps the constant private.
CODE_VERSION_TAG = "dagster/code_version"
