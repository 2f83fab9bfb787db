"""Run tags through which a request pins the model version a run must score with."""

PINNED_VERSION_TAG = "coverage_serving/model_version"
PINNED_ALIAS_TAG = "coverage_serving/model_alias"
