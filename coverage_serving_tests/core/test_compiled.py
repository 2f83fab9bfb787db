"""Compiled tree models without Dagster, against a real sqlite registry and the demo models:
bitwise equality on the grid model, and the model's own predict whenever the compiled form
failed, differed, was corrupted or was built for another machine."""

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.core import compiled, native_forest
from coverage_serving.core.compiled import (
    ARTIFACTS,
    MANIFEST_FILE,
    OBJECT_FILE,
    TAG,
    CompiledPredictor,
    compile_version,
)
from coverage_serving.core.contracts import enforce_input_contract
from coverage_serving.core.served_version import load_served_model
from coverage_serving.demo.data import GENERATORS
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry, registry_client, using_tracking_uri
from coverage_serving.settings import LocalState

pytestmark = pytest.mark.integration

PARTITION = Partition("IN", date(2026, 2, 1))


@pytest.fixture
def grid(small_config: ServingConfig) -> ModelConfig:
    return small_config.models["grid"]


@pytest.fixture(autouse=True)
def fresh_process(registry: ModelRegistry, grid: ModelConfig) -> Iterator[None]:
    """Each test loads compiled forms as a new process would, and stores none for the next:
    the state's copies share the session's artifact directory (its path is in the registry)."""
    compiled._LOADED.clear()
    yield
    shutil.rmtree(run_artifacts(registry, grid) / ARTIFACTS, ignore_errors=True)


def run_artifacts(registry: ModelRegistry, model: ModelConfig) -> Path:
    client = registry_client(registry.tracking_uri)
    run_id = client.get_model_version(model.registered_model, "1").run_id
    return Path(urlparse(client.get_run(run_id).info.artifact_uri).path)


def feature_rows(model: ModelConfig, rows: int = 2_000) -> pd.DataFrame:
    frame = GENERATORS[model.source_table](PARTITION, rows)
    return enforce_input_contract(model, PARTITION, frame)[model.feature_columns]


LLVM_FAILS = RuntimeError("LLVM ran out of registers")


def raising(error: Exception) -> Callable[..., None]:
    """A stand-in for a library call that fails with `error`."""

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


def compile_champion(registry: ModelRegistry, model: ModelConfig) -> compiled.CompileReport:
    loaded = load_served_model(registry, model)
    return compile_version(registry, model, loaded, PARTITION, feature_rows(model))


def stored_file(registry: ModelRegistry, model: ModelConfig, name: str) -> Path:
    [found] = (run_artifacts(registry, model) / ARTIFACTS).glob(f"*/{name}")
    return found


def test_the_grid_model_compiles_bitwise_equal_and_scoring_uses_it(
    registry: ModelRegistry, grid: ModelConfig
) -> None:
    report = compile_champion(registry, grid)

    assert report.compiled, report.outcome
    assert report.comparison is not None
    assert report.comparison.rows_compared == 2_000
    assert report.comparison.rows_bitwise_equal == 2_000
    assert report.comparison.max_abs_diff == 0.0
    loaded = load_served_model(registry, grid)
    assert isinstance(loaded.compiled, CompiledPredictor)
    assert loaded.scored_with.startswith("compiled")
    rows = feature_rows(grid, 5_000)
    own = np.asarray(loaded.pyfunc.predict(rows), dtype="float64")
    assert np.array_equal(loaded.predict(rows), own)
    tags = registry_client(registry.tracking_uri).get_model_version(grid.registered_model, "1").tags
    assert tags[TAG] == "compiled"
    assert tags[f"{TAG}.rows_bitwise_equal"] == "2000"
    assert float(tags[f"{TAG}.compile_seconds"]) > 0
    assert int(tags[f"{TAG}.fblocksize"]) in native_forest.BLOCK_SIZES


def registered_estimator(registry: ModelRegistry, grid: ModelConfig, estimator: Any) -> ModelConfig:
    """The grid model's config serving `estimator`, fitted on grid features and registered."""
    rows = feature_rows(grid, 3_000)
    estimator.fit(rows, (np.log1p(rows["population"]) + rows["road_density"]).round())
    name = f"coverage_{type(estimator).__name__.lower()}_model"
    with using_tracking_uri(registry.tracking_uri), mlflow.start_run():
        mlflow.sklearn.log_model(
            estimator,
            name="model",
            serialization_format="cloudpickle",
            signature=infer_signature(rows, estimator.predict(rows)),
            registered_model_name=name,
        )
    registry_client(registry.tracking_uri).set_registered_model_alias(name, grid.alias, "1")
    return grid.model_copy(update={"registered_model": name})


def test_a_pipeline_ending_in_lightgbm_compiles_its_booster_and_keeps_its_steps(
    registry: ModelRegistry, grid: ModelConfig
) -> None:
    regressor = lgb.LGBMRegressor(n_estimators=60, num_leaves=15, verbose=-1)
    model = registered_estimator(
        registry, grid, Pipeline([("scale", StandardScaler()), ("lightgbm", regressor)])
    )

    report = compile_champion(registry, model)
    compiled._LOADED.clear()
    loaded = load_served_model(registry, model)

    assert report.compiled, report.outcome
    assert report.comparison is not None and report.comparison.rows_bitwise_equal == 2_000
    assert isinstance(loaded.compiled, CompiledPredictor)
    fresh = feature_rows(model, 5_000)
    own = np.asarray(loaded.pyfunc.predict(fresh), dtype="float64")
    assert np.array_equal(loaded.predict(fresh), own)


def test_a_lightgbm_classifier_is_not_compiled_its_pyfunc_predicts_labels(
    registry: ModelRegistry, grid: ModelConfig
) -> None:
    classifier = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1)
    model = registered_estimator(registry, grid, classifier)

    report = compile_champion(registry, model)

    assert report.outcome == (
        "not compiled: a LightGBM classifier's pyfunc predicts labels, its forest scores"
    )
    assert load_served_model(registry, model).compiled is None


def test_a_new_outcome_replaces_the_figures_of_the_last(
    registry: ModelRegistry, grid: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert compile_champion(registry, grid).compiled

    monkeypatch.setattr(native_forest, "compile_to_module", raising(LLVM_FAILS))
    compile_champion(registry, grid)

    tags = registry_client(registry.tracking_uri).get_model_version(grid.registered_model, "1").tags
    assert tags[TAG].startswith("failed")
    assert f"{TAG}.rows_bitwise_equal" not in tags
    assert f"{TAG}.fblocksize" not in tags
    assert f"{TAG}.settings" in tags


def test_a_compile_failure_is_reported_and_scoring_falls_back(
    registry: ModelRegistry, grid: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native_forest, "compile_to_module", raising(LLVM_FAILS))

    report = compile_champion(registry, grid)
    monkeypatch.undo()
    loaded = load_served_model(registry, grid)

    assert report.outcome == "failed: RuntimeError: LLVM ran out of registers"
    assert loaded.compiled is None
    assert "no compiled form for this machine" in loaded.scored_with
    tags = registry_client(registry.tracking_uri).get_model_version(grid.registered_model, "1").tags
    assert tags[TAG].startswith("failed")


def test_an_artifact_store_that_refuses_the_form_is_a_failure_not_an_error(
    registry: ModelRegistry, grid: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        mlflow.MlflowClient, "log_artifacts", raising(OSError("bucket not writable"))
    )

    report = compile_champion(registry, grid)
    monkeypatch.undo()

    assert report.outcome == "failed: OSError: bucket not writable"
    assert load_served_model(registry, grid).compiled is None


def test_a_form_that_differs_beyond_the_tolerance_is_not_used(
    registry: ModelRegistry, grid: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact = CompiledPredictor.predict
    monkeypatch.setattr(CompiledPredictor, "predict", lambda self, x: exact(self, x) + 1e-12)

    report = compile_champion(registry, grid)
    monkeypatch.undo()
    loaded = load_served_model(registry, grid)

    assert report.outcome.startswith("not used: predictions differ by up to 1e-12")
    assert report.comparison is not None and report.comparison.rows_bitwise_equal == 0
    assert loaded.compiled is None


def test_a_tolerance_in_config_admits_a_form_within_it(
    registry: ModelRegistry, grid: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    tolerant = grid.model_copy(update={"compiled_max_abs_diff": 1e-9})
    exact = CompiledPredictor.predict
    monkeypatch.setattr(CompiledPredictor, "predict", lambda self, x: exact(self, x) + 1e-12)

    assert compile_champion(registry, tolerant).compiled
    monkeypatch.undo()
    assert load_served_model(registry, tolerant).compiled is not None
    # A stricter config does not use the form compared under a looser one.
    compiled._LOADED.clear()
    assert "compiled_max_abs_diff" in load_served_model(registry, grid).scored_with


def test_a_corrupted_compiled_form_is_rejected(registry: ModelRegistry, grid: ModelConfig) -> None:
    assert compile_champion(registry, grid).compiled
    stored = stored_file(registry, grid, OBJECT_FILE)
    corrupted = bytearray(stored.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    stored.write_bytes(bytes(corrupted))

    loaded = load_served_model(registry, grid)

    assert loaded.compiled is None
    assert "checksum differs" in loaded.scored_with


def test_a_form_built_for_another_machine_is_rejected(
    registry: ModelRegistry, grid: ModelConfig
) -> None:
    assert compile_champion(registry, grid).compiled
    manifest_file = stored_file(registry, grid, MANIFEST_FILE)
    manifest = json.loads(manifest_file.read_text())
    manifest["key"]["target"] = "aarch64-unknown-linux-gnu neoverse-v2 +neon"
    manifest_file.write_text(json.dumps(manifest))

    loaded = load_served_model(registry, grid)

    assert loaded.compiled is None
    assert "built under another key (differs in target)" in loaded.scored_with


def test_a_form_the_jit_linker_refuses_is_rejected(
    registry: ModelRegistry, grid: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert compile_champion(registry, grid).compiled

    # A mock: JITLink refuses a forest too large for 32-bit offsets, which no test forest is.
    out_of_range = raising(RuntimeError("relocation target out of range"))
    monkeypatch.setattr(native_forest.llvm.JITLibraryBuilder, "link", out_of_range)
    loaded = load_served_model(registry, grid)

    assert loaded.compiled is None
    assert "compiled form rejected: relocation target out of range" in loaded.scored_with


@pytest.mark.parametrize(
    ("model_name", "allow_pickled", "update", "why"),
    [
        ("grid", True, {"compiled": "off"}, "compiled: off"),
        ("grid", False, {}, "registry.allow_pickled_models: true"),
        ("store", True, {}, "not a LightGBM model"),
    ],
)
def test_models_that_are_not_compiled_keep_their_own_predict(
    state: LocalState,
    small_config: ServingConfig,
    model_name: str,
    allow_pickled: bool,
    update: dict[str, str],
    why: str,
) -> None:
    model = small_config.models[model_name].model_copy(update=update)
    registry = ModelRegistry(state.tracking_uri, allow_pickled_models=allow_pickled)
    if not allow_pickled:  # the grid model loads without pickles; compile it as if trusted
        compile_champion(ModelRegistry(state.tracking_uri, True), model)

    report = compile_champion(registry, model)
    loaded = load_served_model(registry, model)

    assert not report.compiled
    assert why in report.outcome
    assert loaded.compiled is None
    assert why in loaded.scored_with
