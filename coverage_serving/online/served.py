"""On-demand scoring without Dagster: the version each model serves follows its alias, and a
request's feature rows go through the same input contract, scoring and output contract as a
batch partition (core.scoring)."""

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from coverage_serving.config import ColumnType, ModelConfig
from coverage_serving.core.scoring import Columns, score_few_rows
from coverage_serving.core.served_version import load_served_model, load_version_named_by_caller
from coverage_serving.core.tables import features_table
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition
from coverage_serving.registry import LoadedModel, ModelRegistry
from coverage_serving.warehouse import Warehouse

log = logging.getLogger(__name__)


class NotReadyError(ServingError):
    """No version of the model could be loaded yet."""


class UnknownKeyError(ServingError):
    """A key lookup found no feature row."""


@dataclass(frozen=True)
class Status:
    model: str
    registered_model: str
    alias: str
    version: int | None
    last_error: str | None


class ServedModel:
    """One configured model and the version its alias pointed at when last refreshed.

    A request takes the current LoadedModel once and scores all its rows with it, so a refresh
    that swaps the version meanwhile never mixes two versions in one response."""

    def __init__(self, config: ModelConfig, registry: ModelRegistry) -> None:
        self.config = config
        self._registry = registry
        self._current: LoadedModel | None = None
        self._last_error: str | None = None
        self._refreshing = threading.Lock()
        # Versions callers named that the served-version decision allowed, until the next
        # refresh decides again (an approval tag may have been removed meanwhile).
        self._pinned: dict[int, LoadedModel] = {}

    def refresh(self) -> None:
        """Resolve the alias; load and switch to its version if it moved, or to its compiled
        form if one was stored since. On failure keep serving the version already loaded and
        remember why."""
        with self._refreshing:
            try:
                served = load_served_model(self._registry, self.config)
                current = self._current
                if current is None or _decided(current) != _decided(served):
                    self._current = served
                    log.info(
                        "model %r now serves version %s, scored with %s",
                        self.config.name,
                        served.ref.version,
                        served.scored_with,
                    )
                self._last_error = None
                self._pinned = {}
            except ServingError as err:
                self._last_error = str(err)
                log.warning("model %r: refresh failed: %s", self.config.name, err)

    def current(self) -> LoadedModel:
        current = self._current
        if current is None:
            raise NotReadyError(
                f"model {self.config.name!r} has no loaded version yet: {self._last_error}"
            )
        return current

    def pinned(self, version: int) -> LoadedModel | None:
        """A version a caller named, if it was allowed since the last refresh."""
        return self._pinned.get(version)

    def pin(self, version: int) -> LoadedModel:
        """A version a caller named, decided by core.served_version (it asks the registry)."""
        loaded = load_version_named_by_caller(self._registry, self.config, version)
        self._pinned[version] = loaded
        return loaded

    def status(self) -> Status:
        current = self._current
        return Status(
            model=self.config.name,
            registered_model=self.config.registered_model,
            alias=self.config.alias,
            version=current.ref.version if current else None,
            last_error=self._last_error,
        )


def _decided(loaded: LoadedModel) -> tuple[int, object]:
    # The compiled predictor is loaded once per process: the same object while its form is.
    return loaded.ref.version, loaded.compiled


def score_rows(
    config: ModelConfig, loaded: LoadedModel, partition: Partition, features: Columns
) -> Columns:
    """The batch table's rows for these feature rows of `partition` without lineage (the
    caller's to write): keys, market, month and predictions, checked by both contracts."""
    count = len(features[config.key_columns[0]])
    # At the resolution the input contract coerces a date to, so that it has nothing to convert.
    month = np.datetime64(partition.month, "ns")
    rows = features | {
        "market": np.full(count, partition.market, dtype=object),
        "month": np.full(count, month),
    }
    return score_few_rows(config, loaded, partition, rows)


# Not inferred from the values: a float column of whole numbers or nulls only is float64.
_DTYPES = {ColumnType.STRING: "object", ColumnType.INT: "int64", ColumnType.FLOAT: "float64"}


def columns_of_json_rows(config: ModelConfig, rows: list[dict[str, Any]]) -> Columns:
    """Feature rows whose values already have their column's type (online.wire) as one array
    per key and feature column, of the dtype the warehouse would hand over."""
    return {
        name: _array([row[name] for row in rows], _DTYPES[spec.type])
        for name, spec in {**config.keys, **config.features}.items()
    }


def _array(values: list[Any], dtype: str) -> np.ndarray:
    try:
        return np.array(values, dtype=dtype)
    except (TypeError, ValueError):
        # A null in an int column: the input contract, given the values as they are, names it.
        return np.array(values, dtype=object)


def latest_features(
    warehouse: Warehouse, config: ModelConfig, market: str, key: Mapping[str, object]
) -> tuple[Partition, Columns]:
    """The key's feature row from its latest month in the feature snapshot, and that month."""
    found = warehouse.latest_row(features_table(config), market, key)
    if found.empty:
        raise UnknownKeyError(
            f"model {config.name!r}: no feature row for key {dict(key)} in market {market!r} "
            f"({features_table(config).qualified_name})"
        )
    month = found["month"].iloc[0]
    features = {
        name: found[name].to_numpy() for name in found.columns if name not in ("market", "month")
    }
    return Partition(market, date(month.year, month.month, 1)), features
