"""The two batch steps of a model: snapshot a feature partition, score it into the output table.

Both stream: the partition is read in chunks of `chunk_rows`, each chunk is checked (and
scored) and staged, and the checks that need the whole partition (unique keys, one prediction
per feature row, no empty partition) run on the staged rows before the atomic swap. Memory is
bounded by the chunk, not the partition.
"""

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from coverage_serving.config import InvalidRows, ModelConfig, UnmatchedMarkets
from coverage_serving.core.contracts import (
    ContractViolation,
    TooManyRejectedRows,
    Violation,
    enforce_input_contract,
    screen_input,
)
from coverage_serving.core.monitoring import (
    DriftBlocked,
    Outcome,
    ProfileStore,
    StoredProfile,
    baselines,
    blocking_errors,
    judge,
)
from coverage_serving.core.pipeline import ahead, closing
from coverage_serving.core.profile import Profile, Profiler
from coverage_serving.core.scoring import score_valid_features
from coverage_serving.core.stopwatch import Stopwatch
from coverage_serving.core.tables import (
    PredictionTarget,
    features_table,
    history_table,
    rejected_table,
    served_target,
    source_table,
)
from coverage_serving.core.unmatched import (
    UnmatchedMarketRows,
    by_month,
    total_rows,
    unmatched_source_rows,
)
from coverage_serving.errors import EmptyPartitionError, WarehouseError
from coverage_serving.lineage import RUN_ID_COLUMN, VERSION_COLUMN, Lineage
from coverage_serving.partition import Partition
from coverage_serving.registry import LoadedModel
from coverage_serving.warehouse import Warehouse
from coverage_serving.warehouse.base import History, Staged, Verify

QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)
T = TypeVar("T")
U = TypeVar("U")


@dataclass
class StepResult:
    """What a step wrote: `timings` are the segments of its wall time (core.stopwatch), each
    `<segment>_seconds`; `busy` the seconds each stage of the stream kept its thread busy, which
    overlap and so do not add up to the step."""

    rows: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    busy: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def timed_each(self, stage: str, chunks: Iterable[T], work: Callable[[T], U]) -> Iterator[U]:
        """work(chunk) for each chunk, adding the time it takes to the stage's busy time."""
        with closing(chunks):
            for chunk in chunks:
                start = time.perf_counter()
                done = work(chunk)
                self._add(stage, time.perf_counter() - start)
                yield done

    def timed_reads(self, chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """The non-empty chunks, adding the time spent waiting for them to the busy time of
        `read`."""
        iterator = iter(chunks)
        with closing(iterator):
            while True:
                start = time.perf_counter()
                chunk = next(iterator, None)
                self._add("read", time.perf_counter() - start)
                if chunk is None:
                    return
                if len(chunk):
                    yield chunk

    def _add(self, stage: str, seconds: float) -> None:
        self.busy[stage] = round(self.busy.get(stage, 0.0) + seconds, 3)


@dataclass
class _Tally:
    """What went into a stream, known once it has been consumed."""

    rows: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)
    rejected_rows: int = 0

    def count(self, chunk: pd.DataFrame) -> pd.DataFrame:
        self.rows += len(chunk)
        return chunk


def refresh_features(
    warehouse: Warehouse, model: ModelConfig, partition: Partition, run_id: str
) -> StepResult:
    """Copy the partition's source rows that pass the input contract into the feature table.
    Under the quarantine policy the invalid rows go to the rejected table instead, unless
    there are more of them than the model allows. Rows of the month whose market is none of
    the model's are counted in the result, or fail the partition if the model says so."""
    clock = Stopwatch()
    result, tally = StepResult(), _Tally()
    chunks = result.timed_reads(
        warehouse.read_batches(source_table(model), partition, model.chunk_rows)
    )

    def check(chunk: pd.DataFrame) -> pd.DataFrame:
        tally.count(chunk)
        if model.invalid_rows == InvalidRows.FAIL:
            return enforce_input_contract(model, partition, chunk)
        screened = screen_input(model, partition, chunk)
        tally.rejected.append(screened.rejected)
        tally.rejected_rows += screened.rejected_rows
        return screened.valid

    def verify(staged: Staged) -> None:
        _require_rows(model, partition, tally.rows)
        _require_unique_keys(model, partition, staged, "input")
        if tally.rows and tally.rejected_rows / tally.rows > model.max_rejected_fraction:
            raise TooManyRejectedRows(
                model, partition, pd.concat(tally.rejected), tally.rejected_rows, tally.rows
            )

    with _naming(model, partition):
        result.details = _unmatched_markets(warehouse, model, partition)
        clock.lap("unmatched_markets")
        validated = ahead(result.timed_each("validate", chunks, check))
        result.rows = warehouse.replace_partition(
            features_table(model),
            partition,
            clock.waiting("waiting_for_input", validated, between="write"),
            keys=model.key_columns,
            verify=_timed(clock, verify),
        )
        clock.lap("swap")
        if model.invalid_rows == InvalidRows.QUARANTINE:
            result.details |= _record_rejections(warehouse, model, partition, tally, run_id)
            clock.lap("rejections")
    result.timings = clock.timings()
    return result


def score_into_table(
    warehouse: Warehouse,
    model: ModelConfig,
    loaded: LoadedModel,
    partition: Partition,
    run_id: str,
    *,
    snapshot_checked: bool = False,
    target: PredictionTarget | None = None,
    shipped_reference: Mapping[str, Profile] | None = None,
) -> StepResult:
    """Score the partition's feature snapshot and swap it into the prediction table `target`
    (by default the served one), profiling its features and predictions on the way and judging
    the profile against the previous month and the version's reference (`shipped_reference`:
    its training profile per market, if it ships one). The rows the served table's swap
    replaces move to its history in the same transaction, unless they hold the version that
    scores them now (a rerun). A shadow keeps no history and no profile: the model's history
    and profiles describe the served table.

    The snapshot is checked against the input contract again unless `snapshot_checked` says
    it was written under the contract in force now: re-checking rows the features step
    checked cost a tenth of the scoring time (benchmarks/README.md)."""
    clock = Stopwatch()
    target = target or served_target(model)
    result, tally = StepResult(), _Tally()
    lineage = Lineage.of(loaded.ref, run_id)  # one scored_at for the whole partition
    # float32 copies of the predictions for the summary: 4 bytes a row, not the frames.
    predicted: list[np.ndarray] = []
    profiles = ProfileStore(warehouse, model)
    found = baselines(profiles, partition, loaded.ref.version, shipped_reference)
    # One profiler per thread: features where they are checked, predictions where made.
    features_profile = Profiler(model.numeric_features, model.categorical_features, found.edges())
    predictions_profile = Profiler(model.prediction_columns, [], found.edges())
    outcomes: list[Outcome] = []
    clock.lap("baselines")

    def check(features: pd.DataFrame) -> pd.DataFrame:
        tally.count(features)
        checked = (
            features if snapshot_checked else enforce_input_contract(model, partition, features)
        )
        features_profile.add(checked)
        return checked

    def score(features: pd.DataFrame) -> pd.DataFrame:
        scored = score_valid_features(model, loaded, partition, features)
        predicted.append(scored[model.prediction_columns].to_numpy(dtype="float32"))
        predictions_profile.add(scored)
        return scored

    def judge_drift(profile: Profile) -> None:
        # The whole partition is profiled once its last chunk is staged: judged before the
        # swap, so a blocking check keeps the old rows.
        outcomes.extend(judge(model, partition, profile, found))
        blocked = blocking_errors(model, outcomes)
        if blocked:
            raise DriftBlocked(
                "; ".join(o.sentence for o in blocked)
                + " (blocking in monitoring.blocking): the old rows are kept",
                outcomes,
            )

    def verify(staged: Staged) -> None:
        _require_rows(model, partition, tally.rows)
        _require_unique_keys(model, partition, staged, "output")
        if not target.shadow:
            judge_drift(_profile(features_profile, predictions_profile))
        if staged.rows != tally.rows:
            raise ContractViolation(
                model.name,
                partition,
                "output",
                [
                    Violation(
                        None,
                        "one prediction row per feature row",
                        abs(staged.rows - tally.rows),
                        [],
                    )
                ],
                abs(staged.rows - tally.rows),
            )

    # Keys the input contract does not inspect are only carried to the write: kept in Arrow.
    carried = model.key_columns if snapshot_checked else []
    chunks = result.timed_reads(
        warehouse.read_batches(features_table(model), partition, model.chunk_rows, carried)
    )
    # Three stages in three threads: read and check, score, write (core.pipeline).
    checked = ahead(result.timed_each("features", chunks, check))
    scored = ahead(result.timed_each("score", checked, score))
    with _naming(model, partition):
        result.rows = warehouse.replace_partition(
            target.table,
            partition,
            clock.waiting("waiting_for_scores", scored, between="write"),
            # The partition's market and month too: every chunk is checked to hold only the
            # partition's rows before it is staged, so staging them row by row adds nothing.
            constants=lineage.columns() | {"market": partition.market, "month": partition.month},
            keys=model.key_columns,
            verify=_timed(clock, verify),
            history=None
            if target.shadow
            else History(history_table(model), VERSION_COLUMN, run_id, model.history.keep_versions),
        )
        clock.lap("swap")
        if not target.shadow:
            profiles.write(
                StoredProfile(
                    partition,
                    loaded.ref.version,
                    _profile(features_profile, predictions_profile),
                ),
                found.reference,
                run_id,
                result.rows,
            )
            clock.lap("profile_write")
    result.details = {
        **lineage.version(),
        "scored_with": loaded.scored_with,
        "monitoring": outcomes,
        "reference": found.reference.source,
        "input_contract": "skipped: checked when the snapshot was written"
        if snapshot_checked
        else "checked while scoring",
        "prediction_quantiles": _quantiles(model, np.vstack(predicted)),
    }
    clock.lap("summary")
    result.timings = clock.timings()
    return result


def _timed(clock: Stopwatch, verify: Verify) -> Verify:
    """`verify`, its time a segment of its own: the staging before it is the write's (the last
    chunk staged, the staged rows counted), the swap after it the swap's."""

    def timed(staged: Staged) -> None:
        clock.lap("write")
        verify(staged)
        clock.lap("verify")

    return timed


def _profile(features: Profiler, predictions: Profiler) -> Profile:
    """One profile of the partition's features and predictions (both streams have rows)."""
    assert features.profile is not None and predictions.profile is not None
    return Profile(
        features.profile.rows,
        {**features.profile.columns, **predictions.profile.columns},
    )


@contextmanager
def _naming(model: ModelConfig, partition: Partition) -> Iterator[None]:
    """Warehouse errors name the table; the step adds the model and the partition it serves
    (a read fails inside the write that consumes it, so this covers both)."""
    try:
        yield
    except WarehouseError as err:
        raise WarehouseError(f"model {model.name!r}, partition {partition}: {err}") from err


def _unmatched_markets(
    warehouse: Warehouse, model: ModelConfig, partition: Partition
) -> dict[str, Any]:
    """The month's source rows that no partition reads (counted once per partition, before it
    is read): reported, or refused under `unmatched_markets: fail`."""
    unmatched = unmatched_source_rows(warehouse, model, [partition.month])
    if not unmatched:
        return {}
    if model.unmatched_markets == UnmatchedMarkets.FAIL:
        raise UnmatchedMarketRows(model, partition, unmatched)
    counts = by_month(unmatched)
    return {"unmatched_rows": total_rows(counts), "unmatched_markets": counts}


def _require_rows(model: ModelConfig, partition: Partition, rows: int) -> None:
    if rows == 0:
        raise EmptyPartitionError(
            f"model {model.name!r}, partition {partition}: the source table "
            f"{model.source_table!r} has no rows for this partition; nothing was written"
        )


def _require_unique_keys(
    model: ModelConfig, partition: Partition, staged: Staged, contract: str
) -> None:
    # Each chunk's contract checks its own keys; only the staged whole shows repeats across
    # chunks.
    if staged.duplicated_rows:
        violation = Violation(
            ", ".join(model.key_columns),
            "unique key in the partition",
            staged.duplicated_rows,
            list(staged.duplicate_sample),
        )
        raise ContractViolation(
            model.name, partition, contract, [violation], staged.duplicated_rows
        )


def _record_rejections(
    warehouse: Warehouse,
    model: ModelConfig,
    partition: Partition,
    tally: _Tally,
    run_id: str,
) -> dict[str, Any]:
    """Replace the partition's rejections (none clears them) after its features were swapped."""
    table = rejected_table(model)
    rejections = pd.concat(tally.rejected).assign(
        market=partition.market, month=partition.month, **{RUN_ID_COLUMN: run_id}
    )
    warehouse.replace_partition(table, partition, rejections, allow_empty=True)
    return {
        "rejected_rows": tally.rejected_rows,
        "rejected_fraction": tally.rejected_rows / tally.rows,
        "rejected_table": table.qualified_name,
    }


def _quantiles(model: ModelConfig, predicted: np.ndarray) -> dict[str, dict[str, float]]:
    summary = {}
    for index, column in enumerate(model.prediction_columns):
        values = predicted[:, index].astype("float64")
        summary[column] = {
            f"p{round(q * 100):02d}": float(v)
            for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        } | {"mean": float(values.mean())}
    return summary
