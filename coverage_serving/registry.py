"""The model registry: resolve an alias to a concrete version and load that version once."""

import functools
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from packaging.requirements import InvalidRequirement, Requirement

from coverage_serving.errors import ModelLoadError, RegistryError, RegistryUnavailableError
from coverage_serving.settings import ARTIFACTS_DIR

PICKLE_TRUST_VAR = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
RETRIES_VAR = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_VAR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
TIMEOUT_VAR = "MLFLOW_HTTP_REQUEST_TIMEOUT"
TRACKING_URI_VAR = "MLFLOW_TRACKING_URI"
SQLITE_PREFIX = "sqlite:///"
NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
T = TypeVar("T")
log = logging.getLogger(__name__)

# A progress bar per download is noise in a batch log, and every process that downloads
# (the CLI, a code server, a run worker) imports this module; set to true to see them.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True)
class RequestPolicy:
    """How long to insist on a registry server that does not answer: `retries` after the
    first attempt, waiting backoff x 2^n between them, each request at most `timeout`."""

    retries: int = 3
    backoff_seconds: int = 1  # MLflow takes whole seconds
    timeout_seconds: int = 10

    def environment(self) -> dict[str, str]:
        return {
            RETRIES_VAR: str(self.retries),
            BACKOFF_VAR: str(self.backoff_seconds),
            TIMEOUT_VAR: str(self.timeout_seconds),
        }


@dataclass(frozen=True)
class ModelVersionRef:
    """A concrete registered version; `alias` is the alias it was resolved through, if any."""

    name: str
    version: int
    alias: str | None
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class Predictor(Protocol):
    def predict(self, features: pd.DataFrame) -> Any: ...


@dataclass(frozen=True)
class LoadedModel:
    """A version loaded for scoring. `compiled`, when set, predicts exactly as the model does
    (within its configured tolerance; core.compiled) and is what scoring uses; `scored_with`
    says which of the two predicts, and why."""

    ref: ModelVersionRef
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    compiled: Predictor | None = None
    scored_with: str = "the model's own predict"

    def predict(self, features: pd.DataFrame) -> Any:
        if self.compiled is not None:
            return self.compiled.predict(features)
        return self.pyfunc.predict(features)


def input_types(model_meta: Model) -> dict[str, str] | None:
    """A model's signature input columns and their MLflow types; None without a signature."""
    schema = model_meta.get_input_schema()
    if schema is None or not schema.has_input_names():
        return None
    return {spec.name: getattr(spec.type, "name", str(spec.type)) for spec in schema.inputs}


def _ref(found: Any, alias: str | None) -> ModelVersionRef:
    return ModelVersionRef(
        name=found.name,
        version=int(found.version),
        alias=alias,
        run_id=found.run_id,
        source=found.source,
        tags=dict(found.tags or {}),
    )


def _quoted(name: str) -> str:
    # MLflow's filter language quotes with single quotes; a quote in a name is doubled.
    return name.replace("'", "''")


def artifact_root(tracking_uri: str) -> str | None:
    """Where the experiments the platform creates keep their artifacts: beside a sqlite
    registry's database; for a tracking server, its own artifact root (None). MLflow's default
    for a sqlite registry would be ./mlruns of whatever directory the process runs in."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return (Path(tracking_uri.removeprefix(SQLITE_PREFIX)).parent / ARTIFACTS_DIR).as_uri()


def registry_client(tracking_uri: str) -> mlflow.MlflowClient:
    """An MLflow client of the registry at `tracking_uri`."""
    _create_sqlite_registry(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@functools.cache
def _create_sqlite_registry(tracking_uri: str) -> None:
    # MLflow creates a sqlite registry, with its Default experiment, on first use, putting
    # that experiment's artifacts under the current directory; created here first, they go
    # with the registry's. Opening an existing registry changes nothing.
    root = artifact_root(tracking_uri)
    if root is not None:
        SqlAlchemyStore(tracking_uri, root)


def experiment_id(tracking_uri: str, name: str) -> str:
    """The id of the experiment `name`, created with its artifacts where the registry keeps
    them if it does not exist yet (or by another process meanwhile)."""
    client = registry_client(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(tracking_uri))
    except MlflowException:  # another process created it meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class ModelRegistry:
    def __init__(
        self,
        tracking_uri: str,
        allow_pickled_models: bool,
        requests: RequestPolicy = RequestPolicy(),
    ) -> None:
        self.tracking_uri = tracking_uri
        self.allow_pickled_models = allow_pickled_models
        self.requests = requests
        self._client = registry_client(tracking_uri)

    def resolve(self, name: str, alias: str) -> ModelVersionRef:
        """The version `alias` points at now; callers pin it for the rest of their run."""
        found = self._ask(
            name,
            f"alias {alias!r}",
            lambda: self._client.get_model_version_by_alias(name, alias),
        )
        return _ref(found, alias)

    def pinned(self, name: str, version: int, alias: str | None) -> ModelVersionRef:
        """A version named explicitly (e.g. by a sensor's run request), not through an alias."""
        found = self._ask(
            name,
            f"version {version}",
            lambda: self._client.get_model_version(name, str(version)),
        )
        return _ref(found, alias)

    def versions(self, name: str) -> list[int]:
        """Every registered version of the model, oldest first; none if it is not registered."""
        found = self._ask(
            name,
            "versions",
            lambda: self._client.search_model_versions(f"name = '{_quoted(name)}'"),
        )
        return sorted(int(v.version) for v in found)

    def has_version_tagged(self, name: str, tag: str) -> bool:
        """Whether any version of the model carries the tag."""
        found = self._ask(
            name,
            f"versions tagged {tag}",
            lambda: self._client.search_model_versions(
                f"name = '{_quoted(name)}' and tags.`{tag}` != ''", max_results=1
            ),
        )
        return bool(found)

    def describe(self, ref: ModelVersionRef) -> dict[str, Any]:
        """What a reviewer wants to see about a version: where it came from and how it did."""
        found = self._ask(
            ref.name,
            f"version {ref.version}",
            lambda: self._client.get_model_version(ref.name, str(ref.version)),
        )
        model_id = _logged_model_id(found)
        return {
            "version": ref.version,
            "run_id": found.run_id,
            "model_id": model_id,
            "source": found.source,
            "created_at": datetime.fromtimestamp(found.creation_timestamp / 1000, UTC).isoformat(),
            "aliases": sorted(found.aliases),
            "metrics": self._metrics(ref, model_id),
        }

    def _metrics(self, ref: ModelVersionRef, model_id: str | None) -> dict[str, float]:
        """The metrics logged to the version's model (MLflow 3), else those of its training run
        (a version logged before MLflow 3 has no logged model)."""
        if model_id:
            logged = self._ask(
                ref.name, "logged model", lambda: self._client.get_logged_model(model_id)
            )
            # Each metric's latest value: a metric logged at several steps keeps its last.
            ordered = sorted(logged.metrics or [], key=lambda m: (m.step, m.timestamp))
            return {metric.key: metric.value for metric in ordered}
        if ref.run_id:
            run_id = ref.run_id
            return self._ask(
                ref.name, "training run", lambda: self._client.get_run(run_id)
            ).data.metrics
        return {}

    def signature(self, ref: ModelVersionRef) -> dict[str, str] | None:
        """The version's signature input types, read from its MLmodel file without loading it."""
        with (
            tempfile.TemporaryDirectory(prefix="coverage-serving-mlmodel-") as scratch,
            _environment(self.requests.environment()),
        ):
            try:
                location = self._client.get_model_version_download_uri(ref.name, str(ref.version))
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{location.rstrip('/')}/{MLMODEL_FILE_NAME}",
                    dst_path=scratch,
                    tracking_uri=self.tracking_uri,
                )
                return input_types(Model.load(path))
            except Exception as err:
                raise ModelLoadError(
                    f"model {ref.name!r} version {ref.version}: MLmodel cannot be read: "
                    f"{redact(str(err))}"
                ) from None

    def _ask(self, name: str, what: str, call: Callable[[], T]) -> T:
        """Call the registry, turning its failures into RegistryErrors a user can act on."""
        try:
            with _environment(self.requests.environment()):
                return call()
        except MlflowException as err:
            # MLflow answers RESOURCE_DOES_NOT_EXIST or INVALID_PARAMETER_VALUE depending on
            # whether the model exists; both mean "no such thing" to a user. Any other code
            # (connection refused, timeouts, server errors) means the registry did not answer.
            if err.error_code in NOT_FOUND_CODES:
                raise RegistryError(
                    f"model {name!r}: {what} cannot be resolved in registry "
                    f"{redact(self.tracking_uri)}: {redact(err.message)}"
                ) from None
            raise self._unanswered(name, err) from None
        except Exception as err:
            raise self._unanswered(name, err) from None

    def _unanswered(self, name: str, err: Exception) -> RegistryUnavailableError:
        return RegistryUnavailableError(
            f"model {name!r}: registry {redact(self.tracking_uri)} did not answer "
            f"(retried {self.requests.retries} time(s), timeout "
            f"{self.requests.timeout_seconds}s per request): {redact(str(err))}"
        )

    def load(self, ref: ModelVersionRef) -> Any:
        """The version's pyfunc model, loaded once per process and version. Whether it may
        serve is core.served_version's to decide."""
        key = (self.tracking_uri, ref.name, ref.version, self.allow_pickled_models)
        with _CACHE_LOCK:
            if key not in _LOADED:
                _LOADED[key] = self._download_and_load(ref)
            return _LOADED[key]

    def _download_and_load(self, ref: ModelVersionRef) -> Any:
        where = f"model {ref.name!r} version {ref.version}"
        with tempfile.TemporaryDirectory(prefix="coverage-serving-model-") as scratch:
            try:
                # Ask this registry where the artifacts are: mlflow.artifacts resolves
                # models:/ URIs against the process-global registry, not ours.
                with _environment(self.requests.environment()):
                    location = self._client.get_model_version_download_uri(
                        ref.name, str(ref.version)
                    )
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=location, dst_path=scratch, tracking_uri=self.tracking_uri
                    )
            except Exception as err:
                raise ModelLoadError(
                    f"{where}: artifacts cannot be downloaded: {redact(str(err))}"
                ) from None
            try:
                # mlflow.pyfunc.load_model reads the pickle trust switch only from the
                # environment: set it from the config's explicit decision for this load.
                trust = "true" if self.allow_pickled_models else "false"
                with _environment({PICKLE_TRUST_VAR: trust}):
                    # Its warnings are given below, found for a fraction of their cost.
                    pyfunc = mlflow.pyfunc.load_model(local, suppress_warnings=True)
                for warning in environment_warnings(Path(local), pyfunc.metadata):
                    log.warning("%s: %s", where, warning)
                return pyfunc
            except Exception as err:
                hint = (
                    ""
                    if self.allow_pickled_models
                    else " (pickled models load only with registry.allow_pickled_models: true)"
                )
                raise ModelLoadError(
                    f"{where}: artifact cannot be loaded: {redact(str(err))}{hint}"
                ) from None


def environment_warnings(model_dir: Path, model_meta: Model) -> list[str]:
    """What mlflow.pyfunc.load_model warns of, checked directly: the model's pip requirements
    this environment does not meet, a Python of another minor version than the model's. MLflow
    first maps every installed distribution to its modules: 0.25 s of a 0.45 s model load."""
    warnings = []
    unmet = []
    file = model_dir / "requirements.txt"
    for line in file.read_text().splitlines() if file.exists() else []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:  # a path, a URL or an option: MLflow skips them too
            continue
        if requirement.marker and not requirement.marker.evaluate():
            continue
        try:
            installed: str | None = version(requirement.name)
        except PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(
                f"{requirement.name} (current: {installed or 'uninstalled'}, required: {line})"
            )
    if unmet:
        warnings.append(
            "this environment does not satisfy the model's requirements: " + "; ".join(unmet)
        )
    saved_in = model_meta.flavors.get("python_function", {}).get("python_version")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if saved_in is None or ".".join(str(saved_in).split(".")[:2]) != running:
        warnings.append(
            f"saved with Python {saved_in or 'of an unknown version'}, running on Python "
            f"{running}: it may be incompatible"
        )
    return warnings


_LOADED: dict[tuple[str, str, int, bool], Any] = {}
_CACHE_LOCK = threading.Lock()


def _logged_model_id(version: ModelVersion) -> str | None:
    """The logged model the version was registered from. The sqlite registry does not store it
    on the version (`model_id` is None there), but the version's source names it:
    `models:/<model_id>`, where a version registered from another one has `models:/<name>/<n>`."""
    if version.model_id:
        return version.model_id
    location = urlparse(version.source)
    model_id = location.path.lstrip("/")
    return model_id if location.scheme == "models" and "/" not in model_id else None


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """MLflow settings for one block. MLflow reads its HTTP retry/timeout and pickle-trust
    settings only from environment variables (per request), so that is where they go; the
    previous values come back afterwards."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (the only way to log a model) at `uri` for a block.

    mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; both are restored afterwards so
    the caller's registry is not silently redirected."""
    previous = os.environ.get(TRACKING_URI_VAR)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it


def redact(text: str) -> str:
    """The text with the user:password part of any URI in it masked, fit for messages."""
    return re.sub(r"//[^/@\s]*@", "//***@", text)
