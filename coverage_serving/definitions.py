"""The one Dagster Definitions of coverage_serving: assets, jobs, sensors and schedules from the
serving config, resources chosen by deployment (coverage_serving/wiring.py)."""

import os

import dagster as dg

from coverage_serving.config import ServingConfig, load_serving_config
from coverage_serving.defs.assets import build_model_assets
from coverage_serving.defs.jobs import build_scoring_job, build_shadow_job, build_versions_job
from coverage_serving.defs.new_data import build_new_data_sensor
from coverage_serving.defs.resources import RegistryResource, warehouse_resource
from coverage_serving.defs.schedules import build_refresh_schedule
from coverage_serving.defs.sensors import build_registry_sensor
from coverage_serving.defs.versions import build_version_asset
from coverage_serving.registry import TRACKING_URI_VAR
from coverage_serving.settings import LocalState
from coverage_serving.wiring import warehouse_target


def resources_for_deployment(config: ServingConfig, state: LocalState) -> dict[str, object]:
    return {
        "warehouse": warehouse_resource(warehouse_target(state)),
        "registry": RegistryResource(
            tracking_uri=_tracking_uri(state),
            allow_pickled_models=config.registry.allow_pickled_models,
            request_retries=config.registry.request_retries,
            request_backoff_seconds=config.registry.request_backoff_seconds,
            request_timeout_seconds=config.registry.request_timeout_seconds,
        ),
    }


def _tracking_uri(state: LocalState) -> str:
    # A tracking URI may carry a password: from the environment it stays an EnvVar, which
    # Dagster resolves at run time and never shows in the UI or stores in run snapshots.
    if os.environ.get(TRACKING_URI_VAR):
        return dg.EnvVar(TRACKING_URI_VAR)  # type: ignore[return-value]
    return state.tracking_uri


def build_definitions(config: ServingConfig, state: LocalState) -> dg.Definitions:
    models = list(config.models.values())
    scoring_jobs = {model.name: build_scoring_job(model) for model in models}
    versions_jobs = {model.name: build_versions_job(model) for model in models}
    shadow_jobs = {model.name: build_shadow_job(model) for model in models}
    automation = config.automation
    return dg.Definitions(
        assets=[
            *(asset for model in models for asset in build_model_assets(model)),
            *(build_version_asset(model) for model in models),
        ],
        jobs=[
            *scoring_jobs.values(),
            *versions_jobs.values(),
            *(job for job in shadow_jobs.values() if job is not None),
        ],
        sensors=[
            *(
                build_registry_sensor(
                    model,
                    scoring_jobs[model.name],
                    versions_jobs[model.name],
                    automation.registry_poll_seconds,
                    shadow_jobs[model.name],
                )
                for model in models
            ),
            *(
                build_new_data_sensor(
                    model, scoring_jobs[model.name], automation.source_poll_seconds
                )
                for model in models
            ),
        ],
        schedules=[
            build_refresh_schedule(model, scoring_jobs[model.name], automation.refresh_cron)
            for model in models
        ],
        resources=resources_for_deployment(config, state),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What workspace.yaml and `[tool.dagster]` load: built when Dagster loads the code
    location, not when this module is imported."""
    return build_definitions(load_serving_config(), LocalState.from_env())
