"""The tables of a model, derived from its config: source, feature snapshot, predictions (and
their challenger's shadow), the history of replaced predictions, the quarantine of rejected
input rows and the partition profiles of monitoring."""

from collections.abc import Mapping
from dataclasses import dataclass, replace

from coverage_serving.config import ColumnSpec, ModelConfig, PredictionSpec
from coverage_serving.lineage import RUN_ID_COLUMN, lineage_columns
from coverage_serving.warehouse import Column, TableSpec
from coverage_serving.warehouse.base import history_of

SOURCE_SCHEMA = "source"
FEATURES_SCHEMA = "features"
PREDICTIONS_SCHEMA = "serving"
MONITORING_SCHEMA = "monitoring"

# What the columns every model's tables share hold; a model's own columns are described in
# serving.yaml. They reach the warehouse's catalog and the contracts' schemas in the Dagster UI.
PARTITION_COLUMNS = (
    Column("market", "string", description="the partition's market"),
    Column("month", "date", description="the first day of the partition's month"),
)
_LINEAGE_DESCRIPTIONS = {
    "model_name": "registered model that scored the row",
    "model_version": "version of the registered model that scored the row",
    "model_alias": "the alias the version was served under (null: a pinned run)",
    "model_run_id": "MLflow run that trained the version",
    "scored_at": "when the partition was scored (UTC)",
    RUN_ID_COLUMN: "Dagster run that scored the row",
}
LINEAGE_COLUMNS = tuple(
    Column(name, kind, nullable, _LINEAGE_DESCRIPTIONS[name])
    for name, kind, nullable in lineage_columns()
)


def _columns(specs: Mapping[str, ColumnSpec | PredictionSpec]) -> tuple[Column, ...]:
    """The configured columns with their serving.yaml descriptions (a prediction is a float
    that is never null)."""
    return tuple(
        Column(
            name,
            spec.type.value if isinstance(spec, ColumnSpec) else "float",
            isinstance(spec, ColumnSpec) and spec.nullable,
            spec.description or None,
        )
        for name, spec in specs.items()
    )


def _feature_row_columns(model: ModelConfig) -> tuple[Column, ...]:
    return _columns(model.keys) + PARTITION_COLUMNS + _columns(model.features)


def source_table(model: ModelConfig) -> TableSpec:
    return TableSpec(
        SOURCE_SCHEMA,
        model.source_table,
        _feature_row_columns(model),
        f"Source rows of model {model.name!r}, one partition per market and month.",
    )


def features_table(model: ModelConfig) -> TableSpec:
    return TableSpec(
        FEATURES_SCHEMA,
        model.features_table,
        _feature_row_columns(model),
        f"Feature snapshot of model {model.name!r}: the source rows that passed its input "
        "contract.",
    )


def predictions_table(model: ModelConfig) -> TableSpec:
    return TableSpec(
        PREDICTIONS_SCHEMA,
        model.output_table,
        _columns(model.keys) + PARTITION_COLUMNS + _columns(model.predictions) + LINEAGE_COLUMNS,
        f"Predictions of {model.registered_model}@{model.alias} for every feature row, with "
        "the lineage of each row.",
    )


def history_table(model: ModelConfig) -> TableSpec:
    """Prediction rows that a rescoring with another version replaced: the prediction table's
    columns, then when and by which run they were replaced."""
    return history_of(predictions_table(model), model.history_table)


def rejected_table(model: ModelConfig) -> TableSpec:
    """Input rows the quarantine policy kept out of scoring: one row per failed check."""
    keys = tuple(Column(name, spec.type.value, nullable=True) for name, spec in model.keys.items())
    return TableSpec(
        PREDICTIONS_SCHEMA,
        model.rejected_table,
        keys
        + PARTITION_COLUMNS
        + (
            Column("failed_column", "string", nullable=True),
            Column("reason", "string"),
            Column(RUN_ID_COLUMN, "string"),
        ),
    )


def profiles_table(model: ModelConfig) -> TableSpec:
    """One row per prediction partition: its profile (core.profile) as JSON and what made it."""
    return TableSpec(
        MONITORING_SCHEMA,
        f"{model.name}_profiles",
        (
            *PARTITION_COLUMNS,
            Column("model_version", "int"),
            Column("rows", "int"),
            Column("profile", "string"),
            Column("reference", "string"),
            Column(RUN_ID_COLUMN, "string"),
            Column("profiled_at", "timestamp"),
        ),
    )


@dataclass(frozen=True)
class PredictionTarget:
    """A prediction table and the alias whose version fills it: the served table, or the
    challenger's shadow of it (same columns, contracts and lineage)."""

    name: str  # what the table is to its model: "predictions" or "shadow_predictions"
    table: TableSpec
    alias: str
    shadow: bool


def served_target(model: ModelConfig) -> PredictionTarget:
    return PredictionTarget("predictions", predictions_table(model), model.alias, shadow=False)


def prediction_targets(model: ModelConfig) -> list[PredictionTarget]:
    """The served table, and its shadow when the model has a challenger."""
    if model.challenger is None:
        return [served_target(model)]
    shadow = replace(predictions_table(model), name=model.shadow_table)
    return [
        served_target(model),
        PredictionTarget("shadow_predictions", shadow, model.challenger.alias, shadow=True),
    ]
