"""The monitoring checks of a served prediction asset: what each one means, and each
partition's outcomes (core.monitoring) recorded as that partition's evaluations."""

from collections.abc import Iterator

import dagster as dg

from coverage_serving.config import ModelConfig, MonitorCheck
from coverage_serving.core.monitoring import Outcome, Severity, most_drifted
from coverage_serving.core.reference import REFERENCE_ARTIFACT
from coverage_serving.defs.checks import partition_check
from coverage_serving.defs.display import drift_table
from coverage_serving.partition import Partition

_DESCRIPTIONS = {
    MonitorCheck.FEATURE_DRIFT_PREVIOUS_MONTH: "Drift of each feature from the same market's "
    "previous month: PSI (numeric), L-infinity distance of category shares (string).",
    MonitorCheck.FEATURE_DRIFT_REFERENCE: "Drift of each feature from the version's reference "
    f"(its training profile, {REFERENCE_ARTIFACT}, else the first month it scored here).",
    MonitorCheck.PREDICTION_DRIFT_PREVIOUS_MONTH: "PSI of each prediction column against the "
    "same market's previous month.",
    MonitorCheck.PREDICTION_DRIFT_REFERENCE: "PSI of each prediction column against the "
    "version's reference.",
    MonitorCheck.ROW_COUNT_CHANGE: "Relative change of the partition's row count from the same "
    "market's previous month.",
}

_SEVERITY = {Severity.WARN: dg.AssetCheckSeverity.WARN, Severity.ERROR: dg.AssetCheckSeverity.ERROR}


def monitor_descriptions(model: ModelConfig) -> dict[str, str]:
    limits = model.monitoring
    thresholds = (
        f" Thresholds (monitoring: in serving.yaml): PSI {limits.psi.warn}/{limits.psi.error}, "
        f"category distance {limits.category_distance.warn}/{limits.category_distance.error}, "
        f"row count change {limits.row_count_change.warn}/{limits.row_count_change.error} "
        "(warn/error)."
    )
    return {
        str(check): description
        + thresholds
        + (" Blocking: an error keeps the old rows." if check in limits.blocking else "")
        for check, description in _DESCRIPTIONS.items()
    }


def monitoring_checks(
    context: dg.AssetExecutionContext,
    asset: dg.AssetKey,
    partition: Partition,
    outcomes: list[Outcome],
) -> Iterator[dg.AssetCheckEvaluation]:
    for outcome in outcomes:
        yield from partition_check(
            context,
            asset,
            str(outcome.check),
            partition.key,
            passed=outcome.passed,
            severity=_SEVERITY[outcome.severity or Severity.WARN],
            description=outcome.sentence,
            metadata={
                "baseline": outcome.baseline,
                **({"value": outcome.value} if outcome.value is not None else {}),
                **({"warn_threshold": outcome.threshold} if outcome.threshold is not None else {}),
                **({"columns": drift_table(most_drifted([outcome]))} if outcome.drifts else {}),
            },
        )
