"""What `coverage-serving demo` does: fill in missing demo data and models, then run the main
job of every model for every partition, record each served version (which compiles it) and
report what the prediction tables hold."""

import time
from collections.abc import Iterable

import dagster as dg

from coverage_serving.config import ModelConfig, ServingConfig
from coverage_serving.core.served_version import served_version
from coverage_serving.core.tables import predictions_table, source_table
from coverage_serving.defs.jobs import scoring_job_name, versions_job_name
from coverage_serving.defs.names import (
    features_asset_key,
    model_versions_partitions,
    version_asset_key,
)
from coverage_serving.defs.partitions import all_partitions_tags, model_partitions
from coverage_serving.demo.data import DEFAULT_ROWS, GENERATORS
from coverage_serving.demo.models import train_demo_model
from coverage_serving.demo.progress import PartitionProgress
from coverage_serving.errors import RegistryError
from coverage_serving.instance.pools import require_no_stuck_holder
from coverage_serving.instance.runs import create_run, execute
from coverage_serving.partition import Partition
from coverage_serving.settings import LocalState
from coverage_serving.warehouse import Warehouse
from coverage_serving.wiring import open_registry


def partitions_of(model: ModelConfig) -> list[Partition]:
    return [Partition.parse(key) for key in model_partitions(model).get_partition_keys()]


def write_demo_sources(
    warehouse: Warehouse, config: ServingConfig, rows: dict[str, int] | None = None
) -> int:
    """Generate the source partitions that are missing; returns how many were written."""
    rows = {**DEFAULT_ROWS, **(rows or {})}
    written = 0
    for model in config.models.values():
        if model.source_table not in GENERATORS:
            print(f"  no demo generator for source.{model.source_table}: load it yourself")
            continue
        table = source_table(model)
        present = set(warehouse.list_partitions(table))
        for partition in partitions_of(model):
            if partition not in present:
                frame = GENERATORS[model.source_table](partition, rows[model.source_table])
                warehouse.replace_partition(table, partition, frame[table.column_names])
                written += 1
    return written


def ensure_demo_models(config: ServingConfig, state: LocalState) -> list[str]:
    """Register version 1 of every model whose alias resolves to nothing yet."""
    registry = open_registry(config.registry, state)
    registered = []
    for model in config.models.values():
        try:
            served_version(registry, model)
        except RegistryError:
            version = train_demo_model(model, state.tracking_uri, model.alias)
            registered.append(f"{model.registered_model} v{version} @{model.alias}")
    return registered


# Steps in this process, as `execute_in_process` ran them (the job's default would start a
# process per step), and only warnings on the console: the progress lines say the rest.
# The run tag of a one-partition run; dagster keeps the constant private.
PARTITION_TAG = "dagster/partition"

IN_THIS_PROCESS = {
    "execution": {"config": {"in_process": {}}},
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}


def run_main_jobs(
    defs: dg.Definitions, config: ServingConfig, instance: dg.DagsterInstance
) -> list[str]:
    """Materialise every partition of every model, one run per model, printing a line per
    partition; returns the failed runs. The runs are listed under their jobs in the UI like
    launched ones (instance/runs.py). Refuses at once if a table's pool is held by a run that
    will never free it."""
    jobs = [defs.resolve_job_def(scoring_job_name(model)) for model in config.models.values()]
    pools = [op.pool for job in jobs for op in job.graph.node_defs if op.pool]
    require_no_stuck_holder(instance, pools)
    failed = []
    for model, job in zip(config.models.values(), jobs, strict=True):
        run = create_run(defs, job.name, instance, all_partitions_tags(model), IN_THIS_PROCESS)
        print(f"{job.name}: run {run.run_id}", flush=True)
        total = len(model_partitions(model).get_partition_keys())
        # The feature snapshot records its partitions as its step ends: one line for them.
        progress = PartitionProgress(total, {features_asset_key(model).to_user_string()})
        ended = execute(defs, run, instance, progress)
        if not ended.is_success:
            failed.append(f"{job.name} (run {run.run_id})")
    return failed


def record_served_versions(
    defs: dg.Definitions, config: ServingConfig, state: LocalState, instance: dg.DagsterInstance
) -> tuple[list[str], list[str]]:
    """Record each model's served version as the registry sensor does (its partition added,
    then `record_<model>_versions` run), which compiles a LightGBM version: without it the
    demo never compiles. One line per model on how it went, and the failed runs."""
    registry = open_registry(config.registry, state)
    lines, failed = [], []
    for model in config.models.values():
        version = str(served_version(registry, model).version)
        instance.add_dynamic_partitions(model_versions_partitions(model).name, [version])
        job_name = versions_job_name(model)
        run = create_run(defs, job_name, instance, {PARTITION_TAG: version}, IN_THIS_PROCESS)
        started = time.perf_counter()
        ended = execute(defs, run, instance, lambda entry: None)
        seconds = time.perf_counter() - started
        where = f"{model.name} v{version}"
        if not ended.is_success:
            lines.append(f"{where}: not recorded ({seconds:.1f} s)")
            failed.append(f"{job_name} (run {run.run_id})")
            continue
        [recorded] = instance.fetch_materializations(
            dg.AssetRecordsFilter(version_asset_key(model), asset_partitions=[version]), limit=1
        ).records
        metadata = recorded.asset_materialization.metadata  # type: ignore[union-attr]
        lines.append(f"{where}: {_compiled_words(metadata)} ({seconds:.1f} s)")
    return lines, failed


def _compiled_words(metadata: dict[str, dg.MetadataValue]) -> str:
    if "compiled" not in metadata:
        return "not compiled: not servable"
    outcome = str(metadata["compiled"].value)
    if outcome != "compiled":
        return outcome
    equal = int(metadata["compiled_rows_bitwise_equal"].value)
    compared = int(metadata["compiled_rows_compared"].value)
    seconds = float(metadata["compiled_compile_seconds"].value)
    return f"compiled in {seconds:.1f} s, {equal:,} of {compared:,} rows bitwise equal"


def describe_predictions(warehouse: Warehouse, config: ServingConfig) -> Iterable[str]:
    """Per prediction table: each partition's row count and the model version(s) in it."""
    for model in config.models.values():
        table = predictions_table(model)
        partitions = warehouse.list_partitions(table)
        total = 0
        lines = []
        for partition in partitions:
            frame = warehouse.read_partition(table, partition)
            versions = ",".join(str(v) for v in sorted(frame["model_version"].unique()))
            total += len(frame)
            lines.append(f"  {partition.market:<6} {partition.month}  {len(frame):>9,}  {versions}")
        yield f"{table.qualified_name}: {len(partitions)} partitions, {total:,} rows"
        yield f"  {'market':<6} {'month':<10}  {'rows':>9}  model_version"
        yield from lines
