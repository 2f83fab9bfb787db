"""The new-data sensor of a model: a market/month that lands in its source table is snapshotted
and scored without anyone running anything."""

from collections import defaultdict
from datetime import date

import dagster as dg

from coverage_serving.config import ModelConfig
from coverage_serving.core.served_version import served_version
from coverage_serving.core.tables import predictions_table, source_table
from coverage_serving.core.unmatched import by_month, summary, unmatched_source_rows
from coverage_serving.defs.attempts import attempted
from coverage_serving.defs.jobs import AssetJob
from coverage_serving.defs.partitions import model_partitions, month_tags
from coverage_serving.defs.resources import RegistryResource, WarehouseResource
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition
from coverage_serving.warehouse import Warehouse


def new_data_sensor_name(model: ModelConfig) -> str:
    return f"{model.name}_new_data_sensor"


def build_new_data_sensor(
    model: ModelConfig, scoring_job: AssetJob, poll_seconds: int
) -> dg.SensorDefinition:
    # A sensor rather than declarative automation: the source table is outside Dagster, and
    # "a source partition with no prediction partition" is one warehouse query away, while
    # automation conditions would need an observable source asset reporting every partition.
    @dg.sensor(
        name=new_data_sensor_name(model),
        minimum_interval_seconds=poll_seconds,
        job=scoring_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Scores every partition of source.{model.source_table} that has no rows in "
            f"{model.output_table} yet: features first, then predictions."
        ),
    )
    def new_data_sensor(
        context: dg.SensorEvaluationContext,
        warehouse: WarehouseResource,
        registry: RegistryResource,
    ) -> dg.SensorResult | dg.SkipReason:
        store = warehouse.open()
        try:
            landed = set(store.list_partitions(source_table(model)))
            scored = set(store.list_partitions(predictions_table(model)))
            unmatched = _unmatched_markets(store, model, landed)
        except ServingError as err:
            return dg.SkipReason(
                f"model {model.name!r}: the warehouse could not be read, tick skipped: {err}"
            )
        configured = {Partition.parse(k) for k in model_partitions(model).get_partition_keys()}
        unscored = sorted((landed - scored) & configured)
        outside = sorted(p for p in landed - configured if p.market in model.markets)
        notes = [
            *([f"not configured, so not scored: {_keys(outside)}"] if outside else []),
            *([unmatched] if unmatched else []),
        ]
        if not unscored:
            return dg.SkipReason("; ".join(["no new source partitions", *notes]))
        waiting = _why_not_servable(registry, model)
        if waiting is not None:
            return dg.SkipReason(
                "; ".join([f"new partitions wait ({_keys(unscored)}): {waiting}", *notes])
            )
        requests, stopped = attempted(
            context.instance,
            [
                (f"{model.name}: scoring new data ({request.run_key})", request)
                for request in _scoring_requests(model, unscored)
            ],
        )
        for note in [*notes, *stopped]:
            context.log.warning(note)
        if not requests:
            return dg.SkipReason("; ".join(stopped + notes))
        return dg.SensorResult(run_requests=requests)

    return new_data_sensor


def _why_not_servable(registry: RegistryResource, model: ModelConfig) -> str | None:
    """Why the served alias's version cannot score now (held by the promotion gate, not
    servable, the alias unset, the registry silent), None when it can: new data waits for it
    rather than failing runs that would find the same."""
    try:
        served_version(registry.open(), model)
    except ServingError as err:
        return str(err)
    return None


def _unmatched_markets(store: Warehouse, model: ModelConfig, landed: set[Partition]) -> str | None:
    """The source rows whose market is none of the model's, counted in the months that have
    such a market (none most ticks: then no query); they are never scored, so each tick says
    so."""
    months = sorted({p.month for p in landed if p.market not in model.markets})
    if not months:
        return None
    return summary(model, by_month(unmatched_source_rows(store, model, months)))


def _scoring_requests(model: ModelConfig, unscored: list[Partition]) -> list[dg.RunRequest]:
    """One run per month when all its markets are new (the usual landing), else per partition.
    Run keys make each request once (a run that failed: defs.attempts)."""
    by_month: dict[date, list[Partition]] = defaultdict(list)
    for partition in unscored:
        by_month[partition.month].append(partition)
    requests = []
    for month, partitions in by_month.items():
        if len(partitions) == len(model.markets):
            requests.append(
                dg.RunRequest(
                    run_key=f"{model.name}:data:{month.isoformat()}",
                    tags=month_tags(model, month),
                )
            )
        else:
            requests += [
                dg.RunRequest(run_key=f"{model.name}:data:{p.key}", partition_key=p.key)
                for p in partitions
            ]
    return requests


def _keys(partitions: list[Partition], shown: int = 5) -> str:
    more = f" and {len(partitions) - shown} more" if len(partitions) > shown else ""
    return ", ".join(p.key for p in partitions[:shown]) + more
