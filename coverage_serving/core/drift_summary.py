"""What `coverage-serving drift` prints: every stored partition profile of a model judged as the
prediction asset's checks judged it, one line per partition and check."""

from collections.abc import Iterator

from coverage_serving.config import ModelConfig
from coverage_serving.core.monitoring import ProfileStore, baselines, judge
from coverage_serving.core.reference import shipped_references
from coverage_serving.registry import ModelRegistry


def drift_summary(
    store: ProfileStore, registry: ModelRegistry, model: ModelConfig, market: str | None
) -> Iterator[str]:
    shipped = shipped_references(registry, model.registered_model)
    partitions = [
        p
        for p in store.warehouse.list_partitions(store.table)
        if market is None or p.market == market
    ]
    if not partitions:
        yield f"{store.table.qualified_name}: no profiles" + (
            f" for market {market}" if market else ""
        )
        return
    yield f"{'partition':<14} {'version':>7}  {'check':<32} {'result':<6} detail"
    for partition in partitions:
        stored = store.read(partition)
        if stored is None:
            continue
        version = stored.model_version
        found = baselines(store, partition, version, shipped(version))
        for outcome in judge(model, partition, stored.profile, found):
            result = outcome.severity or "pass"
            yield (
                f"{partition.key:<14} {version:>7}  {outcome.check:<32} {result:<6} "
                f"{outcome.sentence}"
            )
