"""The challenger's shadow partitions compared with the served ones: one check evaluation per
partition, with its numbers and the promotion gate's verdict, and a table across the run's
partitions."""

from collections.abc import Generator

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.compare import PartitionComparison, comparison_of, gate_failures
from coverage_serving.core.tables import PredictionTarget, predictions_table
from coverage_serving.defs.checks import partition_check
from coverage_serving.defs.names import CheckName
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Warehouse


def comparison_spec(model: ModelConfig, key: dg.AssetKey) -> dg.AssetCheckSpec:
    gate = model.promotion_gate
    thresholds = (
        ", ".join(
            f"{name} {value}" for name, value in gate.model_dump().items() if value is not None
        )
        if gate
        else "none (no promotion_gate: the numbers are information)"
    )
    return dg.AssetCheckSpec(
        CheckName.CHALLENGER_COMPARISON.value,
        asset=key,
        description=(
            f"Each shadow partition against {model.output_table} on the same keys: rows, mean "
            f"and max absolute difference, mean difference (bias), Spearman rank correlation, "
            f"top-decile overlap, PSI over the served deciles. Gate thresholds: {thresholds}."
        ),
    )


def compare_partition(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model: ModelConfig,
    target: PredictionTarget,
    key: dg.AssetKey,
    partition: Partition,
) -> Generator[dg.AssetCheckEvaluation, None, PartitionComparison]:
    """Compare the partition's shadow with the served table, yielding it as the partition's
    check evaluation. Partitions only the shadow holds are reported, not failed."""
    compared = PartitionComparison()
    try:
        for column in model.prediction_columns:
            figures = warehouse.compare_column(
                predictions_table(model), target.table, partition, model.key_columns, column
            )
            compared.columns[column] = comparison_of(figures)
    except ServingError as err:
        compared.failures.append(f"not compared: {err}")
    if model.promotion_gate is not None:
        compared.failures += [
            f"{column}: {failure}"
            for column, comparison in compared.columns.items()
            if comparison.compared_rows
            for failure in gate_failures(comparison, model.promotion_gate)
        ]
    yield from partition_check(
        context,
        key,
        CheckName.CHALLENGER_COMPARISON.value,
        partition.key,
        passed=not compared.failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(compared.failures) or "within the promotion gate's thresholds",
        metadata=_metadata(compared),
    )
    return compared


def comparison_summary(
    key: dg.AssetKey, compared: dict[Partition, PartitionComparison]
) -> dg.AssetCheckResult:
    """The run's comparisons as one table, a row per partition and prediction column: the one
    result of this check yielded rather than logged (defs/checks.py), so it has no partition."""
    rows = [
        dg.TableRecord(
            {
                "partition": partition.key,
                "column": column,
                **{k: round(v, 6) for k, v in comparison.figures().items()},
                "gate": "; ".join(result.failures) or "passed",
            }
        )
        for partition, result in sorted(compared.items())
        for column, comparison in result.columns.items()
    ]
    failed = sorted(p.key for p, result in compared.items() if result.failures)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CheckName.CHALLENGER_COMPARISON.value,
        passed=not failed,
        metadata={
            "partitions_compared": len(compared),
            "partitions_failed": ", ".join(failed) or "none",
            "comparisons": dg.MetadataValue.table(rows),
        },
    )


def _metadata(compared: PartitionComparison) -> dict[str, object]:
    metadata: dict[str, object] = {"gate": "; ".join(compared.failures) or "passed"}
    for column, comparison in compared.columns.items():
        prefix = "" if len(compared.columns) == 1 else f"{column}_"
        metadata |= {f"{prefix}{name}": value for name, value in comparison.figures().items()}
        metadata[f"{prefix}bins"] = dg.MetadataValue.json(
            {"served": comparison.served_bins, "challenger": comparison.challenger_bins}
        )
    return metadata
