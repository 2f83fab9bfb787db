"""coverage_serving.definitions, except that, when PAUSE_MARKER names a file, a write of a
prediction table stops once its rows are staged, before the swap: it touches the file and waits
to be killed. Without PAUSE_MARKER (e.g. imported by a test for the name) it changes nothing.

Run as `dagster asset materialize -m coverage_serving_tests.defs.paused_definitions ...`: the
run worker and its step processes import this module, so the write pauses in the step."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coverage_serving.core.tables import PREDICTIONS_SCHEMA
from coverage_serving.definitions import defs
from coverage_serving.warehouse import DuckDBWarehouse, TableSpec
from coverage_serving.warehouse.base import Staged
from coverage_serving.warehouse.bigquery import BigQueryWarehouse
from coverage_serving_tests.warehouse.interrupted_write import wait_to_be_killed

__all__ = ["defs"]

MARKER_VAR = "PAUSE_MARKER"


def paused_after_staging(replace: Callable[..., int]) -> Callable[..., int]:
    def replace_then_wait(self: Any, table: TableSpec, *args: Any, **options: Any) -> int:
        verify = options.pop("verify", None)

        def verify_then_wait(staged: Staged) -> None:
            if verify is not None:
                verify(staged)
            if table.schema == PREDICTIONS_SCHEMA:
                wait_to_be_killed(Path(os.environ[MARKER_VAR]))

        return replace(self, table, *args, verify=verify_then_wait, **options)

    return replace_then_wait


if MARKER_VAR in os.environ:
    for warehouse in (DuckDBWarehouse, BigQueryWarehouse):
        warehouse.replace_partition = paused_after_staging(warehouse.replace_partition)  # type: ignore[method-assign]
