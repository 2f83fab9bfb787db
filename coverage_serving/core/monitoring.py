"""Monitoring of a prediction partition: what it is compared with and what the comparison says.

Profiles are stored in the warehouse, `monitoring.<model>_profiles`, one row per prediction
partition, replaced with it: not in Dagster's materialisation metadata, because the previous
month, a version's first partitions and `coverage-serving drift` must be read without a
Dagster instance (a new DAGSTER_HOME, the production instance), and because a profile belongs
with the rows it describes, in the warehouse that holds them.

Each partition is compared with two baselines: the same market's previous month (whatever
version scored it) and the version's reference: its training profile when it ships one
(core.reference), else the earliest month it scored in that market. A partition is binned on
its reference's bins, so a comparison with a previous month binned otherwise (scored by
another version) is reported as not comparable, and passes.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum

import pandas as pd

from coverage_serving.config import ModelConfig, MonitorCheck, Thresholds
from coverage_serving.core.drift import L_INFINITY, Drift, column_drift, row_count_change
from coverage_serving.core.profile import Edges, Profile
from coverage_serving.core.tables import profiles_table
from coverage_serving.errors import ServingError
from coverage_serving.lineage import RUN_ID_COLUMN
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Warehouse

ROW_COUNT = "row_count_change"


class Severity(StrEnum):
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class StoredProfile:
    partition: Partition
    model_version: int
    profile: Profile


@dataclass(frozen=True)
class Reference:
    profile: Profile | None  # None: this partition is the version's first in its market
    source: str  # what it is, in words


@dataclass(frozen=True)
class Baselines:
    previous: StoredProfile | None
    reference: Reference

    def edges(self) -> dict[str, Edges]:
        """The bins to profile the partition with: its reference's."""
        return self.reference.profile.edges() if self.reference.profile else {}


class ProfileStore:
    """The stored profiles of a model. An instance remembers what it read until it writes: a
    partition's baselines and a run's plots read the same profiles several times over, each a
    warehouse round trip (a DuckDB file opened again, ~20 ms)."""

    def __init__(self, warehouse: Warehouse, model: ModelConfig) -> None:
        self.warehouse, self.model, self.table = warehouse, model, profiles_table(model)
        self._partitions: list[Partition] | None = None
        self._read: dict[Partition, StoredProfile] = {}

    def read(self, partition: Partition) -> StoredProfile | None:
        if partition not in self._stored_partitions():
            return None
        if partition not in self._read:
            [row] = self.warehouse.read_partition(self.table, partition).to_dict("records")
            self._read[partition] = StoredProfile(
                partition, int(row["model_version"]), Profile.from_json(row["profile"])
            )
        return self._read[partition]

    def market(self, market: str) -> Iterator[StoredProfile]:
        """The market's stored profiles, oldest month first."""
        for partition in self._stored_partitions():
            if partition.market == market:
                stored = self.read(partition)
                if stored is not None:
                    yield stored

    def write(self, stored: StoredProfile, reference: Reference, run_id: str, rows: int) -> None:
        row = pd.DataFrame(
            {
                "market": [stored.partition.market],
                "month": [pd.Timestamp(stored.partition.month)],
                "model_version": [stored.model_version],
                "rows": [rows],
                "profile": [stored.profile.to_json()],
                "reference": [reference.source],
                RUN_ID_COLUMN: [run_id],
                "profiled_at": [datetime.now(UTC)],
            }
        )
        self.warehouse.replace_partition(self.table, stored.partition, row)
        self._partitions, self._read = None, {}

    def _stored_partitions(self) -> list[Partition]:
        if self._partitions is None:
            self._partitions = self.warehouse.list_partitions(self.table)
        return self._partitions


def baselines(
    store: ProfileStore,
    partition: Partition,
    version: int,
    shipped: Mapping[str, Profile] | None,
) -> Baselines:
    """The partition's previous month and its version's reference (`shipped`: the version's
    training profile of each market, if it ships one)."""
    previous = store.read(Partition(partition.market, _month_before(partition)))
    if shipped and partition.market in shipped:
        return Baselines(
            previous,
            Reference(
                shipped[partition.market],
                f"training profile of version {version}, market {partition.market}",
            ),
        )
    first = next(
        (
            s
            for s in store.market(partition.market)
            if s.model_version == version
            and s.partition != partition
            and s.partition.month < partition.month
        ),
        None,
    )
    if first is None:
        return Baselines(
            previous, Reference(None, f"this partition: the first version {version} scored here")
        )
    return Baselines(
        previous,
        Reference(first.profile, f"{first.partition}: the first version {version} scored here"),
    )


@dataclass(frozen=True)
class Outcome:
    """One check's result on one partition."""

    check: MonitorCheck
    severity: Severity | None  # None: passed
    sentence: str  # names the model, partition, column, metric, value and threshold
    value: float | None = None  # the worst value, against `threshold`
    threshold: float | None = None
    baseline: str = ""
    drifts: list[Drift] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.severity is None


class DriftBlocked(ServingError):
    """A check configured as blocking found an error: the partition's old rows are kept."""

    def __init__(self, message: str, outcomes: list[Outcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


def judge(
    model: ModelConfig, partition: Partition, profile: Profile, found: Baselines
) -> list[Outcome]:
    """Every monitoring check of the partition against its baselines and the model's
    thresholds."""
    previous = found.previous
    previous_name = (
        f"{previous.partition} (version {previous.model_version})" if previous else "none"
    )
    outcomes = []
    for check, columns, baseline, name in (
        (
            MonitorCheck.FEATURE_DRIFT_PREVIOUS_MONTH,
            model.feature_columns,
            previous.profile if previous else None,
            previous_name,
        ),
        (
            MonitorCheck.FEATURE_DRIFT_REFERENCE,
            model.feature_columns,
            found.reference.profile,
            found.reference.source,
        ),
        (
            MonitorCheck.PREDICTION_DRIFT_PREVIOUS_MONTH,
            model.prediction_columns,
            previous.profile if previous else None,
            previous_name,
        ),
        (
            MonitorCheck.PREDICTION_DRIFT_REFERENCE,
            model.prediction_columns,
            found.reference.profile,
            found.reference.source,
        ),
    ):
        drifts = column_drift(profile, baseline, columns) if baseline else []
        outcomes.append(_drift_outcome(model, partition, check, drifts, name))
    outcomes.append(_row_count_outcome(model, partition, profile, previous))
    return outcomes


def blocking_errors(model: ModelConfig, outcomes: list[Outcome]) -> list[Outcome]:
    return [
        o for o in outcomes if o.severity == Severity.ERROR and o.check in model.monitoring.blocking
    ]


def most_drifted(outcomes: list[Outcome]) -> list[tuple[str, Drift, float]]:
    """(baseline, drift, value / warn threshold) of every compared column, worst first."""
    rows = [
        (o.baseline, d, d.value / o.threshold if o.threshold else 0.0)
        for o in outcomes
        for d in o.drifts
        if d.value is not None
    ]
    return sorted(rows, key=lambda row: -row[2])


def thresholds(model: ModelConfig, metric: str) -> Thresholds:
    return model.monitoring.category_distance if metric == L_INFINITY else model.monitoring.psi


def _severity(value: float, limits: Thresholds) -> Severity | None:
    if value > limits.error:
        return Severity.ERROR
    if value > limits.warn:
        return Severity.WARN
    return None


def _drift_outcome(
    model: ModelConfig,
    partition: Partition,
    check: MonitorCheck,
    drifts: list[Drift],
    baseline: str,
) -> Outcome:
    compared = [d for d in drifts if d.value is not None]
    if not compared:
        sentence = (
            f"not compared with {baseline}: binned otherwise (another version's bins)"
            if drifts
            else "not compared: no baseline"
        )
        return Outcome(check, None, sentence, baseline=baseline)
    # The worst column: the highest value relative to its warn threshold.
    worst = max(compared, key=lambda d: d.value / max(thresholds(model, d.metric).warn, 1e-12))
    limits = thresholds(model, worst.metric)
    severity = _severity(worst.value, limits)
    threshold = limits.error if severity == Severity.ERROR else limits.warn
    relation = ">" if severity else "<="
    sentence = (
        f"model {model.name!r}, partition {partition}, {worst.metric} of {worst.column!r} "
        f"against {baseline}: {worst.value:.4f} {relation} {severity or 'warn'} threshold "
        f"{threshold}"
    )
    return Outcome(check, severity, sentence, worst.value, limits.warn, baseline, drifts)


def _row_count_outcome(
    model: ModelConfig, partition: Partition, profile: Profile, previous: StoredProfile | None
) -> Outcome:
    check = MonitorCheck.ROW_COUNT_CHANGE
    if previous is None:
        return Outcome(check, None, "not compared: no previous month", baseline="none")
    change = row_count_change(profile.rows, previous.profile.rows)
    limits = model.monitoring.row_count_change
    severity = _severity(change, limits)
    threshold = limits.error if severity == Severity.ERROR else limits.warn
    sentence = (
        f"model {model.name!r}, partition {partition}, {ROW_COUNT}: {profile.rows} rows against "
        f"{previous.profile.rows} in {previous.partition}: {change:.4f} "
        f"{'>' if severity else '<='} {severity or 'warn'} threshold {threshold}"
    )
    return Outcome(check, severity, sentence, change, limits.warn, str(previous.partition))


def _month_before(partition: Partition) -> date:
    month = partition.month
    if month.month == 1:
        return date(month.year - 1, 12, 1)
    return date(month.year, month.month - 1, 1)
