"""Per-partition monitoring checks of a prediction asset, run as a single-run backfill of every
partition against a real DuckDB file and a real sqlite MLflow registry. The demo data shift
one feature in one partition (demo.data.SHIFTED_PARTITION): its check warns with the PSI
computed here by hand; the other partitions pass."""

import logging
from datetime import date
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from coverage_serving import cli
from coverage_serving.config import MonitoringConfig, ServingConfig
from coverage_serving.config.loader import CONFIG_ENV_VAR
from coverage_serving.core.tables import features_table, predictions_table, profiles_table
from coverage_serving.core.tracking import DAGSTER_RUN_TAG, EXPERIMENT
from coverage_serving.definitions import build_definitions
from coverage_serving.defs import predictions
from coverage_serving.defs.partitions import all_partitions_tags
from coverage_serving.demo.data import SHIFTED_FEATURE, SHIFTED_PARTITION
from coverage_serving.demo.models import HOLDOUT_FRACTION, _training_frame
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import DuckDBWarehouse
from coverage_serving_tests.conftest import SMALL_CONFIG

pytestmark = pytest.mark.integration

SHIFTED = Partition(*SHIFTED_PARTITION)
PREVIOUS = Partition(SHIFTED.market, date(2026, 1, 1))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DECILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def score_every_partition(
    config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    model = config.models["store"]
    return (
        build_definitions(config, state)
        .resolve_job_def("score_store")
        .execute_in_process(
            tags=all_partitions_tags(model), instance=instance, raise_on_error=False
        )
    )


def evaluations(
    result: dg.ExecuteInProcessResult, check: str
) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == check and e.partition is not None
    }


def psi_by_hand(current: pd.Series, baseline: pd.Series, reference: pd.Series) -> float:
    """PSI on the reference's deciles: bin i holds edge_i <= x < edge_i+1, empty bins 0.0001."""
    edges = np.unique(np.quantile(reference, DECILES))

    def shares(values: pd.Series) -> np.ndarray:
        bins = np.searchsorted(edges, values.to_numpy(), side="right")
        counts = np.array([(bins == i).sum() for i in range(len(edges) + 1)])
        return np.maximum(counts / len(values), 1e-4)

    a, e = shares(current), shares(baseline)
    return float(((a - e) * np.log(a / e)).sum())


def test_the_shifted_feature_warns_with_its_psi_and_the_rest_pass(
    small_config: ServingConfig,
    state: LocalState,
    instance: dg.DagsterInstance,
    warehouse: DuckDBWarehouse,
) -> None:
    model = small_config.models["store"]

    result = score_every_partition(small_config, state, instance)

    assert result.success
    features = features_table(model)
    # Version 1's reference: the rows it was fitted on, its holdout split off as the demo does.
    training, _ = train_test_split(
        _training_frame(model, seed=1), test_size=HOLDOUT_FRACTION, random_state=1
    )
    expected = psi_by_hand(
        warehouse.read_partition(features, SHIFTED)[SHIFTED_FEATURE],
        warehouse.read_partition(features, PREVIOUS)[SHIFTED_FEATURE],
        training.loc[training["market"] == SHIFTED.market, SHIFTED_FEATURE],
    )
    previous_month = evaluations(result, "feature_drift_previous_month")
    shifted = previous_month[SHIFTED.key]
    assert not shifted.passed
    assert shifted.severity == dg.AssetCheckSeverity.WARN
    assert 0.1 < expected <= 0.25
    assert shifted.metadata["value"].value == pytest.approx(expected, rel=1e-9)
    assert shifted.description == (
        f"model 'store', partition {SHIFTED}, psi of {SHIFTED_FEATURE!r} against {PREVIOUS} "
        f"(version 1): {expected:.4f} > warn threshold 0.1"
    )
    # Every other partition passes both feature checks, each recorded under its partition.
    keys = {"ID|2026-01-01", "ID|2026-02-01", "IN|2026-01-01", "IN|2026-02-01"}
    reference = evaluations(result, "feature_drift_reference")
    assert set(previous_month) == set(reference) == keys
    for key in keys - {SHIFTED.key}:
        assert previous_month[key].passed, previous_month[key].description
        assert reference[key].passed, reference[key].description
    assert evaluations(result, "row_count_change")["IN|2026-02-01"].passed
    # The profiles are stored with their partitions.
    assert len(warehouse.list_partitions(profiles_table(model))) == 4
    # The materialisation carries plain numbers for the Plots tab and the most drifted columns.
    written = {
        m.partition: m.metadata for m in result.asset_materializations_for_node("store_predictions")
    }
    assert isinstance(written[SHIFTED.key]["sales_potential_mean"].value, float)
    assert isinstance(written[SHIFTED.key]["sales_potential_p90"].value, float)
    [first, *_] = written[SHIFTED.key]["most_drifted"].value.records
    assert first.data["column"] == SHIFTED_FEATURE


def test_the_drift_command_prints_the_same_checks(
    small_config: ServingConfig,
    state: LocalState,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert score_every_partition(small_config, state, instance).success
    monkeypatch.setenv(CONFIG_ENV_VAR, str(SMALL_CONFIG))
    capsys.readouterr()

    assert cli.main(["drift", "store", "--market", SHIFTED.market]) == 0

    lines = capsys.readouterr().out.splitlines()
    [shifted] = [
        line for line in lines if line.startswith(SHIFTED.key) and "feature_drift_previous" in line
    ]
    assert " warn " in shifted and f"psi of {SHIFTED_FEATURE!r}" in shifted
    assert not any(line.startswith("IN|") for line in lines)


def test_a_blocking_check_keeps_the_old_rows(
    small_config: ServingConfig,
    state: LocalState,
    instance: dg.DagsterInstance,
    warehouse: DuckDBWarehouse,
) -> None:
    store = small_config.models["store"]
    # The shifted feature's PSI (0.1-0.25) is an error under these thresholds.
    monitoring = MonitoringConfig.model_validate(
        {"blocking": ["feature_drift_previous_month"], "psi": {"warn": 0.05, "error": 0.1}}
    )
    strict = store.model_copy(update={"monitoring": monitoring})
    config = small_config.model_copy(update={"models": {"store": strict}})

    result = score_every_partition(config, state, instance)

    assert not result.success
    assert SHIFTED not in warehouse.list_partitions(predictions_table(strict))
    assert PREVIOUS in warehouse.list_partitions(predictions_table(strict))
    blocked = evaluations(result, "feature_drift_previous_month")[SHIFTED.key]
    assert blocked.severity == dg.AssetCheckSeverity.ERROR and not blocked.passed


def test_the_batch_run_holds_the_drift_plots_the_materialisations_link_to(
    small_config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> None:
    result = score_every_partition(small_config, state, instance)

    assert result.success
    client = mlflow.MlflowClient(state.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    [run] = client.search_runs(
        [experiment.experiment_id], f"tags.{DAGSTER_RUN_TAG} = '{result.run_id}'"
    )
    assert run.info.status == "FINISHED"
    # One heat map per market of the run, one prediction distribution per partition.
    logged = sorted(
        Path(item.path).name for item in client.list_artifacts(run.info.run_id, "drift")
    )
    assert logged == [
        "heat_map_ID.png",
        "heat_map_IN.png",
        "predictions_ID_2026-01.png",
        "predictions_ID_2026-02.png",
        "predictions_IN_2026-01.png",
        "predictions_IN_2026-02.png",
    ]
    # Each materialisation links to the folder the plots are in, where each is a real PNG.
    linked = {
        m.metadata["drift_plots"].value
        for m in result.asset_materializations_for_node("store_predictions")
    }
    [folder] = linked
    for name in logged:
        data = (Path(folder) / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 10_000, name


def test_a_plot_that_cannot_be_drawn_does_not_fail_the_run(
    small_config: ServingConfig,
    state: LocalState,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> list[Path]:
        raise ValueError("no room on the canvas")

    monkeypatch.setattr(predictions, "draw_run_plots", broken)

    result = score_every_partition(small_config, state, instance)

    assert result.success
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING and "plots not logged" in entry.user_message
    ]
    assert len(warnings) == 1 and "no room on the canvas" in warnings[0], warnings
