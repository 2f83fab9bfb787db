"""What a run did to each of its partitions, and how that ends the run: every partition is
tried, the contract check reports the violations, and the run fails naming each partition that
failed."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from coverage_serving.core.batch import StepResult
from coverage_serving.core.contracts import ContractViolation, TooManyRejectedRows
from coverage_serving.defs.names import CONTRACT_CHECKS, CheckName
from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition

AssetEvent = dg.MaterializeResult | dg.AssetCheckResult


@dataclass
class Outcome:
    done: dict[Partition, StepResult] = field(default_factory=dict)
    failed: dict[Partition, ServingError] = field(default_factory=dict)


def serve_each(partitions: list[Partition], step: Callable[[Partition], StepResult]) -> Outcome:
    """Run the step for every partition; one bad partition does not stop the others."""
    outcome = Outcome()
    for partition in partitions:
        try:
            outcome.done[partition] = step(partition)
        except ServingError as err:
            outcome.failed[partition] = err
    return outcome


def report(check: CheckName, outcome: Outcome) -> Iterator[dg.AssetCheckResult]:
    """Report the run's contract check, then fail the run naming every partition that failed."""
    violations = {
        partition: err
        for partition, err in outcome.failed.items()
        if isinstance(err, ContractViolation | TooManyRejectedRows)
        and CONTRACT_CHECKS[err.contract] == check
    }
    yield dg.AssetCheckResult(
        check_name=check.value,
        passed=not violations,
        metadata={
            "rows_checked": sum(result.rows for result in outcome.done.values()),
            **(failure_metadata(violations) if violations else {}),
        },
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
