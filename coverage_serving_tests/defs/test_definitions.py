"""The asset graph the serving config produces: a snapshot of the shipped graph, and proof that
a model added to the YAML gets its own assets, checks and job without code."""

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from coverage_serving.config import ServingConfig, load_serving_config
from coverage_serving.definitions import build_definitions
from coverage_serving.demo.models import train_demo_model
from coverage_serving.settings import LocalState
from coverage_serving.wiring import WAREHOUSE_VAR
from coverage_serving_tests.conftest import SMALL_CONFIG

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
UPDATE_VAR = "UPDATE_SNAPSHOTS"


def describe_graph(defs: dg.Definitions) -> dict[str, Any]:
    """Assets (keys, partitions, deps, groups, checks, backfill policy), jobs, sensors and
    schedules, as plain data."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": {
                parent.to_user_string(): type(graph.get_partition_mapping(key, parent)).__name__
                for parent in sorted(node.parent_keys)
            },
            "partitions": _describe_partitions(node.partitions_def),
            # Evaluated per partition (recorded for each one) or once per run.
            "checks": {
                check.name: "per partition"
                if node.assets_def.get_spec_for_check_key(check).partitions_def
                else "per run"
                for check in sorted(node.check_keys)
            },
            "backfill": str(node.backfill_policy.policy_type) if node.backfill_policy else None,
        }
    jobs = {
        job.name: sorted(node.name for node in job.graph.nodes)
        for job in (defs.resolve_job_def(name) for name in _job_names(defs))
    }
    sensors = {
        sensor.name: {
            "jobs": sorted(target.job_name for target in sensor.targets),
            "interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value,
        }
        for sensor in defs.sensors or []
    }
    schedules = {
        schedule.name: {
            "job": schedule.job_name,
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.value,
        }
        for schedule in defs.schedules or []
    }
    return {"assets": assets, "jobs": jobs, "sensors": sensors, "schedules": schedules}


def _job_names(defs: dg.Definitions) -> list[str]:
    return sorted(job.name for job in defs.jobs or [])


def _describe_partitions(partitions: dg.PartitionsDefinition | None) -> dict[str, Any] | None:
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        return {"dynamic": partitions.name}
    if not isinstance(partitions, dg.MultiPartitionsDefinition):
        return None
    dimensions = {d.name: d.partitions_def for d in partitions.partitions_defs}
    monthly = dimensions["month"]
    assert isinstance(monthly, dg.TimeWindowPartitionsDefinition)
    return {
        "market": dimensions["market"].get_partition_keys(),
        "month": {"cron": monthly.cron_schedule, "start": monthly.start.date().isoformat()},
    }


def test_asset_graph_matches_snapshot(tmp_path: Path) -> None:
    shipped = build_definitions(load_serving_config(), LocalState(tmp_path))
    graph = describe_graph(shipped)
    if os.environ.get(UPDATE_VAR):
        SNAPSHOT.write_text(json.dumps(graph, indent=2, sort_keys=True) + "\n")
    assert graph == json.loads(SNAPSHOT.read_text()), (
        f"the asset graph changed; if that is intended, rerun with {UPDATE_VAR}=1 and commit "
        f"{SNAPSHOT.name}"
    )


def test_definitions_module_loads_the_shipped_config() -> None:
    from coverage_serving.definitions import defs

    keys = {key.to_user_string() for key in defs().resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        f"{model}_{asset}"
        for model in ("store", "grid")
        for asset in ("features", "predictions", "shadow_predictions", "model")
    }


def test_descriptions_flow_from_the_config_to_columns_and_checks(tmp_path: Path) -> None:
    config = load_serving_config()
    graph = build_definitions(config, LocalState(tmp_path)).resolve_asset_graph()

    undescribed = [
        key.to_user_string()
        for asset in graph.get_all_asset_keys()
        for key in graph.get(asset).check_keys
        if not graph.get(asset).assets_def.get_spec_for_check_key(key).description
    ]
    assert undescribed == []

    def described(asset: str) -> dict[str, str | None]:
        schema = graph.get(dg.AssetKey(asset)).metadata["dagster/column_schema"]
        return {column.name: column.description for column in schema.columns}

    features, predictions = described("store_features"), described("store_predictions")
    store = config.models["store"]
    assert features["income_index"] == store.features["income_index"].description
    assert features["month"] == "the first day of the partition's month"
    assert predictions["sales_potential"] == store.predictions["sales_potential"].description
    assert predictions["model_version"] == "version of the registered model that scored the row"


def test_unknown_warehouse_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WAREHOUSE_VAR, "snowflake")
    with pytest.raises(ValueError, match="COVERAGE_SERVING_WAREHOUSE='snowflake'"):
        build_definitions(load_serving_config(SMALL_CONFIG), LocalState(tmp_path))


@pytest.fixture
def three_model_config(tmp_path: Path) -> ServingConfig:
    """The small config plus a churn model over the same `stores` source: YAML only."""
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    churn = {
        **raw["models"]["store"],
        "registered_model": "coverage_store_churn_model",
        "output_table": "store_churn_predictions",
        "predictions": {"churn_score": {"min": 0}},
        "markets": ["ID"],
        "last_month": "2026-01-01",
    }
    raw["models"]["store_churn"] = churn
    path = tmp_path / "three_models.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_serving_config(path)


def test_a_third_model_gets_assets_checks_jobs_and_automation(
    three_model_config: ServingConfig,
) -> None:
    defs = build_definitions(three_model_config, LocalState(Path("unused")))
    graph = describe_graph(defs)
    assert graph["assets"]["store_churn_predictions"] == {
        "group": "store_churn",
        "deps": {
            "store_churn_features": "IdentityPartitionMapping",
            "store_churn_model": "AllPartitionMapping",
        },
        "partitions": {"market": ["ID"], "month": {"cron": "0 0 1 * *", "start": "2026-01-01"}},
        "checks": dict.fromkeys(
            [
                "feature_drift_previous_month",
                "feature_drift_reference",
                "output_contract",
                "prediction_drift_previous_month",
                "prediction_drift_reference",
                "row_count_change",
            ],
            "per partition",
        ),
        "backfill": "BackfillPolicyType.SINGLE_RUN",
    }
    assert graph["assets"]["store_churn_features"]["checks"] == {
        "input_contract": "per partition",
        "unmatched_markets": "per partition",
    }
    assert {"store_churn_registry_sensor", "store_churn_new_data_sensor"} <= set(graph["sensors"])
    assert graph["schedules"]["store_churn_monthly_refresh"]["job"] == "score_store_churn"
    assert graph["jobs"]["score_store_churn"] == [
        "store_churn_features",
        "store_churn_predictions",
    ]


@pytest.mark.integration
def test_a_third_model_scores_end_to_end(
    three_model_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> None:
    churn = three_model_config.models["store_churn"]
    train_demo_model(churn, state.tracking_uri, "champion")
    defs = build_definitions(three_model_config, state)

    result = defs.resolve_job_def("score_store_churn").execute_in_process(
        partition_key="ID|2026-01-01", instance=instance
    )

    assert result.success
    written = result.asset_materializations_for_node("store_churn_predictions")
    assert written[0].metadata["dagster/row_count"].value > 0
