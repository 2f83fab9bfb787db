"""Compiled tree models: a LightGBM version compiled once to native code (lleaves' code
generation, core.native_forest), stored with the version, and scored with only where it
predicted exactly like the model itself.

Compiling (`compile_version`, when the version is recorded) compares the compiled form with the
model's own predict on real feature rows, the latest partition's; it stores the compiled form
only when every prediction is within the model's `compiled_max_abs_diff` (0: bitwise), and
records the comparison on the version either way. Scoring (`compiled_predictor`, from the
served-version decision) uses a stored form only after checking it was built from this very
booster, by these lleaves/llvmlite versions and settings, for this machine's CPU, and that its
bytes are the ones recorded; anything else is the model's own predict, with the reason.

The compiled form is stored as an artifact of the version's run, under `compiled/<key>/`: every
process that scores the version (a Kubernetes pod as much as a laptop) finds it through the
registry it already asks, and a machine with another CPU finds no form of its own key and
predicts as the model does. It is native code run in the scoring process: like a pickle, it is
loaded only with `registry.allow_pickled_models: true`.
"""

import functools
import hashlib
import json
import logging
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import llvmlite.binding as llvm
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from coverage_serving.config import Compiled, ModelConfig
from coverage_serving.core.native_forest import (
    BLOCK_SIZES,
    CODE_MODEL,
    CODEGEN,
    NativeForest,
    Tuning,
    host_cpu_features,
    tuned_object_code,
)
from coverage_serving.core.tables import features_table
from coverage_serving.core.tree_order import ORDER
from coverage_serving.partition import Partition
from coverage_serving.registry import LoadedModel, ModelRegistry, redact, registry_client
from coverage_serving.warehouse import Warehouse

log = logging.getLogger(__name__)

ARTIFACTS = "compiled"  # folder of the version's run holding one compiled form per key
OBJECT_FILE = "forest.o"
MANIFEST_FILE = "manifest.json"
TAG = "coverage_serving.compiled"  # on the version: the outcome; figures under TAG + ".<name>"
SETTINGS_TAG = f"{TAG}.settings"  # the compile_settings the outcome was reached under
SAMPLE_ROWS = 100_000  # real feature rows compared, from the latest partition
OWN_PREDICT = "the model's own predict"
# How the object is built (core.native_forest), part of the key: an object built otherwise is
# another form.
FLAGS: dict[str, Any] = {
    **CODEGEN,
    "fblocksize_tried": list(BLOCK_SIZES),
    "fcodemodel": CODE_MODEL,
    "loader": "llvmlite LLJIT, JITLink",
}


@dataclass(frozen=True)
class CompileKey:
    """What a compiled form depends on: an object built under any other key is not used."""

    booster_sha256: str
    lleaves: str
    llvmlite: str
    flags: str
    target: str  # process triple, CPU name and CPU features

    @classmethod
    def of(cls, booster: lgb.Booster) -> "CompileKey":
        return cls(
            booster_sha256=_sha256(booster.model_to_string().encode()),
            lleaves=version("lleaves"),
            llvmlite=version("llvmlite"),
            flags=json.dumps({**FLAGS, "order": ORDER}, sort_keys=True),
            target=_host_target(),
        )

    @property
    def digest(self) -> str:
        return _sha256(json.dumps(asdict(self), sort_keys=True).encode())[:24]


@dataclass(frozen=True)
class Comparison:
    """The compiled form's predictions against the model's own on the same real rows."""

    partition: str
    rows_compared: int
    rows_bitwise_equal: int
    max_abs_diff: float
    max_abs_diff_allowed: float

    @property
    def passed(self) -> bool:
        return self.rows_compared > 0 and self.max_abs_diff <= self.max_abs_diff_allowed


@dataclass(frozen=True)
class CompileReport:
    """What compiling a version did: `compiled` (stored, scoring uses it), or why not."""

    outcome: str
    comparison: Comparison | None = None
    compile_seconds: float | None = None
    key: str | None = None
    tuning: Tuning | None = None
    settings: str | None = None

    @property
    def compiled(self) -> bool:
        return self.outcome == "compiled"

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"outcome": self.outcome}
        if self.key is not None:
            figures["key"] = self.key
        if self.settings is not None:
            figures["settings"] = self.settings
        if self.compile_seconds is not None:
            figures["compile_seconds"] = round(self.compile_seconds, 3)
        if self.tuning is not None:
            figures["fblocksize"] = self.tuning.block_size
            figures["predict_us_per_row_by_fblocksize"] = self.tuning.micros_per_row
        if self.comparison is not None:
            figures |= asdict(self.comparison)
        return figures


@dataclass(frozen=True)
class LightGBM:
    """What a LightGBM version predicts with: its booster, and the steps of a scikit-learn
    pipeline that prepare the booster's rows when the version is such a pipeline."""

    booster: lgb.Booster
    preparing: Pipeline | None = None
    predicts_labels: bool = False  # a classifier: pyfunc gives its labels, not the forest's scores

    def prepared(self, features: pd.DataFrame) -> Any:
        return features if self.preparing is None else self.preparing.transform(features)


class CompiledPredictor:
    """A compiled forest that takes feature frames in the columns order the model was given
    (prepared by the pipeline's own steps, if the version is a pipeline)."""

    def __init__(
        self, code: bytes, lightgbm: LightGBM, columns: list[str], key: CompileKey
    ) -> None:
        self._forest = NativeForest(code, lightgbm.booster)
        self._lightgbm = lightgbm
        self._columns = columns
        self.key = key

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        # Selecting the columns copies them; the scoring path hands them in order already.
        ordered = features.columns.equals(pd.Index(self._columns))
        rows = features if ordered else features[self._columns]
        return self._forest.predict(self._lightgbm.prepared(rows))


def lightgbm_of(loaded: LoadedModel) -> LightGBM | None:
    """The LightGBM booster a version predicts with (a native booster, LightGBM's scikit-learn
    estimator, or a scikit-learn pipeline ending in that estimator), None for any other model."""
    try:
        raw = loaded.pyfunc.get_raw_model()
    except Exception:  # flavors without a raw model are not LightGBM
        return None
    preparing = None
    if isinstance(raw, Pipeline):
        preparing, raw = (raw[:-1] if len(raw.steps) > 1 else None), raw.steps[-1][1]
    if isinstance(raw, lgb.LGBMModel):
        return LightGBM(raw.booster_, preparing, isinstance(raw, lgb.LGBMClassifier))
    if isinstance(raw, lgb.Booster) and preparing is None:
        return LightGBM(raw)
    return None


def latest_feature_rows(
    warehouse: Warehouse, model: ModelConfig, rows: int = SAMPLE_ROWS
) -> tuple[Partition | None, pd.DataFrame]:
    """Up to `rows` feature rows of the latest partition of the feature snapshot, and which."""
    partitions = warehouse.list_partitions(features_table(model))
    if not partitions:
        return None, pd.DataFrame(columns=model.feature_columns)
    latest = max(partitions, key=lambda p: (p.month, p.market))
    chunks, taken = [], 0
    batches = warehouse.read_batches(features_table(model), latest, min(rows, model.chunk_rows))
    for chunk in batches:
        chunks.append(chunk[model.feature_columns].head(rows - taken))
        taken += len(chunks[-1])
        if taken >= rows:
            break
    getattr(batches, "close", lambda: None)()
    return latest, pd.concat(chunks, ignore_index=True)


def compile_version(
    registry: ModelRegistry,
    model: ModelConfig,
    loaded: LoadedModel,
    partition: Partition | None,
    sample: pd.DataFrame,
) -> CompileReport:
    """Compile the version, compare it with its own predict on `sample` (rows of `partition`),
    store it with the version if every prediction is close enough, and record the outcome on
    the version. Never raises for the compilation itself: a failure is an outcome."""
    found = lightgbm_of(loaded)
    reason = _why_not_compiled(registry, model, loaded, found)
    if reason is None and sample.empty:
        reason = "not compiled: no feature partition to compare it on yet"
    if reason is not None or found is None:
        report = CompileReport(reason or "not compiled")
    else:
        report = _compiled_and_stored(registry, model, loaded, found, str(partition), sample)
    report = replace(report, settings=compile_settings(registry, model))
    _record(registry, loaded, report)
    return report


def compile_settings(registry: ModelRegistry, model: ModelConfig) -> str:
    """A digest of what compiling any version of `model` depends on in this deployment, besides
    its booster and the CPU: lleaves, llvmlite, how the object is built, and the config that
    decides whether to compile. A served version whose outcome was reached under other settings
    (an upgrade, `compiled: auto` switched on) is compiled again: the registry sensor asks. The
    CPU is left out: the daemon that asks may run on another machine than the runs."""
    settings = {
        "lleaves": version("lleaves"),
        "llvmlite": version("llvmlite"),
        "flags": FLAGS,
        "order": ORDER,
        "compiled": str(model.compiled),
        "compiled_max_abs_diff": model.compiled_max_abs_diff,
        "allow_pickled_models": registry.allow_pickled_models,
    }
    return _sha256(json.dumps(settings, sort_keys=True).encode())[:12]


def compiled_predictor(
    registry: ModelRegistry, model: ModelConfig, loaded: LoadedModel
) -> tuple[CompiledPredictor | None, str]:
    """The version's stored compiled form, validated for this machine and loaded once per
    process, or None; and what the version is scored with, in words."""
    found = lightgbm_of(loaded)
    reason = _why_not_compiled(registry, model, loaded, found)
    if reason is not None or found is None:
        return None, f"{OWN_PREDICT} ({reason})"
    key = CompileKey.of(found.booster)
    try:
        predictor = _load_stored(registry.tracking_uri, loaded, found, key, model)
    except Exception as err:  # a form that cannot be used is no reason not to serve
        message = f"{OWN_PREDICT} (compiled form rejected: {redact(str(err))})"
        log.warning("model %r version %s: %s", model.name, loaded.ref.version, message)
        return None, message
    if predictor is None:
        return None, f"{OWN_PREDICT} (no compiled form for this machine, key {key.digest})"
    return predictor, f"compiled (lleaves {key.lleaves}, key {key.digest})"


def _why_not_compiled(
    registry: ModelRegistry, model: ModelConfig, loaded: LoadedModel, found: LightGBM | None
) -> str | None:
    if model.compiled == Compiled.OFF:
        return "not compiled: compiled: off"
    if not registry.allow_pickled_models:
        return "not compiled: native code loads only with registry.allow_pickled_models: true"
    if found is None:
        return "not compiled: not a LightGBM model or a pipeline ending in one"
    if found.predicts_labels:
        return "not compiled: a LightGBM classifier's pyfunc predicts labels, its forest scores"
    if loaded.ref.run_id is None:
        return "not compiled: the version has no run to store the compiled form with"
    return None


def _compiled_and_stored(
    registry: ModelRegistry,
    model: ModelConfig,
    loaded: LoadedModel,
    found: LightGBM,
    partition: str,
    sample: pd.DataFrame,
) -> CompileReport:
    key = CompileKey.of(found.booster)
    with tempfile.TemporaryDirectory(prefix="coverage-serving-compile-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        try:
            columns = _columns(loaded)
            tuned = tuned_object_code(found.booster, found.prepared(sample[columns]))
            (folder / OBJECT_FILE).write_bytes(tuned.code)
            predictor = CompiledPredictor(tuned.code, found, columns, key)
            seconds = time.perf_counter() - started
            comparison = _compare(predictor, loaded, partition, sample, model)
            if comparison.passed:
                _store(registry, loaded, folder, key, comparison, tuned.tuning.block_size)
        except Exception as err:  # lleaves, LLVM or the artifact store: own predict serves
            return CompileReport(
                f"failed: {type(err).__name__}: {redact(str(err))}",
                compile_seconds=time.perf_counter() - started,
                key=key.digest,
            )
    if not comparison.passed:
        return CompileReport(
            f"not used: predictions differ by up to {comparison.max_abs_diff:.3g} from the "
            f"model's own (allowed: {comparison.max_abs_diff_allowed:g})",
            comparison,
            seconds,
            key.digest,
            tuned.tuning,
        )
    return CompileReport("compiled", comparison, seconds, key.digest, tuned.tuning)


def _compare(
    predictor: CompiledPredictor,
    loaded: LoadedModel,
    partition: str,
    sample: pd.DataFrame,
    model: ModelConfig,
) -> Comparison:
    own = np.asarray(loaded.pyfunc.predict(sample), dtype="float64").reshape(len(sample), -1)
    compiled = np.asarray(predictor.predict(sample), dtype="float64").reshape(len(sample), -1)
    equal = (own == compiled) | (np.isnan(own) & np.isnan(compiled))
    # A NaN on one side only is no agreement at any tolerance.
    one_sided_nan = (np.isnan(own) != np.isnan(compiled)).any()
    return Comparison(
        partition=partition,
        rows_compared=len(sample),
        rows_bitwise_equal=int(equal.all(axis=1).sum()),
        max_abs_diff=float("inf")
        if one_sided_nan
        else float(np.nanmax(np.abs(own - compiled), initial=0.0)),
        max_abs_diff_allowed=model.compiled_max_abs_diff,
    )


def _store(
    registry: ModelRegistry,
    loaded: LoadedModel,
    folder: Path,
    key: CompileKey,
    comparison: Comparison,
    block_size: int,
) -> None:
    """The object file in `folder` with its manifest, as `compiled/<key>/` of the version's
    run: what a scoring process checks before it loads the object."""
    manifest = {
        "key": asdict(key),
        "object_sha256": _sha256((folder / OBJECT_FILE).read_bytes()),
        "comparison": asdict(comparison),
        "fblocksize": block_size,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    registry_client(registry.tracking_uri).log_artifacts(
        loaded.ref.run_id, str(folder), f"{ARTIFACTS}/{key.digest}"
    )


def _record(registry: ModelRegistry, loaded: LoadedModel, report: CompileReport) -> None:
    """The outcome and its figures as tags of the version, for MLflow's UI, in place of an
    earlier outcome's (whose figures this one may not have); a registry that refuses them loses
    the record, not the version's servability."""
    client = registry_client(registry.tracking_uri)
    ref = loaded.ref
    tags = {
        TAG if name == "outcome" else f"{TAG}.{name}": str(value)
        for name, value in report.figures().items()
    }
    earlier = [tag for tag in ref.tags if tag.startswith(f"{TAG}.") and tag not in tags]
    try:
        for tag in earlier:
            client.delete_model_version_tag(ref.name, str(ref.version), tag)
        for tag, value in tags.items():
            client.set_model_version_tag(ref.name, str(ref.version), tag, value)
    except Exception as err:
        log.warning(
            "model %s version %s: compile outcome %r not tagged in MLflow: %s",
            ref.name,
            ref.version,
            report.outcome,
            redact(str(err)),
        )


_LOADED: dict[tuple[str, str, int, str], CompiledPredictor] = {}
_LOADING = threading.Lock()


def _load_stored(
    tracking_uri: str, loaded: LoadedModel, found: LightGBM, key: CompileKey, model: ModelConfig
) -> CompiledPredictor | None:
    """The stored form of `key`, once per process: None when there is none, an error when the
    stored one is not what it must be."""
    cache_key = (tracking_uri, loaded.ref.name, loaded.ref.version, key.digest)
    with _LOADING:
        if cache_key not in _LOADED:
            stored = _downloaded_and_validated(tracking_uri, loaded, found, key, model)
            if stored is None:
                return None
            _LOADED[cache_key] = stored
        return _LOADED[cache_key]


class InvalidCompiledForm(Exception):
    """A stored compiled form is not the one this booster, machine and config may use."""


def _downloaded_and_validated(
    tracking_uri: str, loaded: LoadedModel, found: LightGBM, key: CompileKey, model: ModelConfig
) -> CompiledPredictor | None:
    client = registry_client(tracking_uri)
    run_id = loaded.ref.run_id
    assert run_id is not None  # _why_not_compiled refused versions without a run
    folder = f"{ARTIFACTS}/{key.digest}"
    stored = {item.path for item in client.list_artifacts(run_id, folder)}
    if f"{folder}/{MANIFEST_FILE}" not in stored:
        return None
    with tempfile.TemporaryDirectory(prefix="coverage-serving-compiled-") as scratch:
        local = Path(client.download_artifacts(run_id, folder, scratch))
        manifest = json.loads((local / MANIFEST_FILE).read_text())
        code = (local / OBJECT_FILE).read_bytes()
    _validate(manifest, code, key, model)
    return CompiledPredictor(code, found, _columns(loaded), key)


def _validate(manifest: dict[str, Any], code: bytes, key: CompileKey, model: ModelConfig) -> None:
    if manifest.get("key") != asdict(key):
        stored = manifest.get("key") or {}
        differing = sorted(name for name, value in asdict(key).items() if stored.get(name) != value)
        raise InvalidCompiledForm(f"built under another key (differs in {', '.join(differing)})")
    if manifest.get("object_sha256") != _sha256(code):
        raise InvalidCompiledForm("its object file is not the one compiled (checksum differs)")
    compared = manifest.get("comparison", {})
    if not compared.get("max_abs_diff", float("inf")) <= model.compiled_max_abs_diff:
        raise InvalidCompiledForm(
            f"it differed by {compared.get('max_abs_diff')} from the model's own predictions, "
            f"more than compiled_max_abs_diff {model.compiled_max_abs_diff:g}"
        )


def _columns(loaded: LoadedModel) -> list[str]:
    """The order pyfunc hands the model its columns in: its signature's."""
    schema = loaded.pyfunc.metadata.get_input_schema()
    return list(schema.input_names())


@functools.cache
def _host_target() -> str:
    return f"{llvm.get_process_triple()} {llvm.get_host_cpu_name()} {host_cpu_features()}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
