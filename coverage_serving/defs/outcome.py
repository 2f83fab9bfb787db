"""What a run did to each of its partitions, and how that ends the run: every partition is
tried, the contract check reports the violations, and the run fails naming each partition that
failed."""

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from coverage_serving.core.batch import StepResult
from coverage_serving.core.contracts import ContractViolation, TooManyRejectedRows
from coverage_serving.defs.checks import partition_check
from coverage_serving.defs.names import CONTRACT_CHECKS, CheckName
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition


@dataclass
class Outcome:
    done: dict[Partition, StepResult] = field(default_factory=dict)
    failed: dict[Partition, ServingError] = field(default_factory=dict)


# What a step yields to Dagster: materialisations and the check evaluations that follow them.
Event = dg.AssetMaterialization | dg.AssetCheckEvaluation
# A partition's step: yields its events as they happen, returns what it did.
PartitionStep = Callable[[Partition], Generator[Event, None, StepResult]]


def serve_each(partitions: list[Partition], step: PartitionStep) -> Generator[Event, None, Outcome]:
    """Run the step for every partition, yielding its events; one bad partition does not stop
    the others."""
    outcome = Outcome()
    for partition in partitions:
        try:
            outcome.done[partition] = yield from step(partition)
        except ServingError as err:
            outcome.failed[partition] = err
    return outcome


def report(
    context: dg.AssetExecutionContext, asset: dg.AssetKey, check: CheckName, outcome: Outcome
) -> Iterator[dg.AssetCheckEvaluation]:
    """Record each partition's contract check (the rows it passed, or its violation; a
    partition that failed for another reason was not judged by the contract), then fail the
    run naming every partition that failed."""
    for partition, result in outcome.done.items():
        yield from partition_check(
            context,
            asset,
            check.value,
            partition.key,
            passed=True,
            metadata={"rows_checked": result.rows},
        )
    for partition, err in outcome.failed.items():
        if (
            isinstance(err, ContractViolation | TooManyRejectedRows)
            and CONTRACT_CHECKS[err.contract] == check
        ):
            yield from partition_check(
                context,
                asset,
                check.value,
                partition.key,
                passed=False,
                description=str(err),
                metadata=err.metadata(),
            )
    if outcome.failed:
        raise dg.Failure(
            description="; ".join(_naming_partition(p, err) for p, err in outcome.failed.items()),
            metadata=failure_metadata(outcome.failed),
        )


def _naming_partition(partition: Partition, err: ServingError) -> str:
    # Errors from the model or the warehouse know the model but not always the partition.
    message = str(err)
    return message if partition.key in message else f"partition {partition}: {message}"


def failure_metadata(failed: dict[Partition, ServingError]) -> dict[str, Any]:
    if len(failed) == 1:
        [(partition, err)] = failed.items()
        return {"partition": partition.key, **err.metadata()}
    return {
        "failed_partitions": ", ".join(partition.key for partition in failed),
        "errors": dg.MetadataValue.json(
            {partition.key: err.metadata() for partition, err in failed.items()}
        ),
    }
