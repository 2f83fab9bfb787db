"""How a run's results read in the Dagster UI: table schemas, per-partition metadata, and tables
of drifted columns."""

import warnings
from typing import Any

import dagster as dg
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from coverage_serving.core.batch import StepResult
from coverage_serving.core.monitoring import most_drifted

MOST_DRIFTED = 10  # rows of the materialisation's table of the most drifted columns


def table_metadata(schema: pa.DataFrameSchema, table_name: str) -> dict[str, Any]:
    # dagster-pandera only offers the schema as a DagsterType; its table schema is what the UI
    # shows as columns, and these assets write through the warehouse, not an IO manager.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        dagster_type = pandera_schema_to_dagster_type(schema)
    return {
        "dagster/column_schema": dagster_type.metadata["schema"].schema,
        "dagster/table_name": table_name,
    }


def contract_description(schema: pa.DataFrameSchema, on_violation: str) -> str:
    """What a contract check verifies, from the schema it checks (generated from serving.yaml)."""
    checked = [
        name
        for name, column in schema.columns.items()
        if any(check.name != "finite" for check in column.checks)
    ]
    return (
        f"Each row of the partition against the {schema.metadata['contract']} contract "
        f"generated from serving.yaml: the {len(schema.columns)} columns of the schema with "
        f"their types and nullability, finite floats, unique {', '.join(schema.unique or [])}"
        + (f", the allowed values of {', '.join(checked)}" if checked else "")
        + f"; {on_violation}"
    )


def result_metadata(result: StepResult) -> dict[str, Any]:
    details = dict(result.details)
    quantiles = details.pop("prediction_quantiles", None)
    outcomes = details.pop("monitoring", None)
    metadata: dict[str, Any] = {
        "dagster/row_count": result.rows,
        **result.timings,
        # Not `*_seconds`: the stages overlap in threads, their times do not add up to the step.
        "thread_busy": dg.MetadataValue.json(result.busy),
        **details,
    }
    if quantiles:
        # Plain numbers, not a markdown table of them: the asset's Plots tab draws each over
        # the partitions.
        metadata |= {
            f"{column}_{stat}": dg.MetadataValue.float(value)
            for column, stats in quantiles.items()
            for stat, value in stats.items()
        }
    if outcomes:
        metadata["most_drifted"] = drift_table(most_drifted(outcomes)[:MOST_DRIFTED])
    return metadata


def drift_table(rows: list[tuple[str, Any, float]]) -> dg.TableMetadataValue:
    """The compared columns, most drifted first: what a person reads to see what moved."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "column": drift.column,
                    "metric": drift.metric,
                    "value": round(drift.value, 6),
                    "times_warn_threshold": round(ratio, 3),
                    "unknown_category_rate": drift.unknown_rate
                    if drift.unknown_rate is not None
                    else 0.0,
                    "baseline": baseline,
                }
            )
            for baseline, drift, ratio in rows
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                dg.TableColumn("metric", "string"),
                dg.TableColumn("value", "float"),
                dg.TableColumn("times_warn_threshold", "float"),
                dg.TableColumn("unknown_category_rate", "float"),
                dg.TableColumn("baseline", "string"),
            ]
        ),
    )
