"""One line per partition as a run from the CLI records it, so a long backfill shows where it
is: `store_predictions  IN|2026-01-01   1/33      2,000 rows    3.1 s`."""

import sys
from typing import TextIO

import dagster as dg

ROW_COUNT = "dagster/row_count"


class PartitionProgress:
    """An `on_event` for instance/runs.execute over a run of `total` partitions per asset."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self._total = total
        self._out = out  # None: sys.stdout as it is when a line is printed
        self._done: dict[str, int] = {}
        # Per step: when it started or last recorded a partition, for the partition's time.
        self._since: dict[str, float] = {}

    def __call__(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        step = event.step_key or ""
        if event.event_type == dg.DagsterEventType.STEP_START:
            self._since[step] = entry.timestamp
            return
        if event.event_type != dg.DagsterEventType.ASSET_MATERIALIZATION:
            return
        materialization = event.step_materialization_data.materialization
        if materialization.partition is None:
            return
        asset = materialization.asset_key.to_user_string()
        self._done[asset] = self._done.get(asset, 0) + 1
        rows = materialization.metadata.get(ROW_COUNT)
        counted = f"{rows.value:>9,} rows" if rows is not None else " " * 14
        seconds = entry.timestamp - self._since.get(step, entry.timestamp)
        self._since[step] = entry.timestamp
        print(
            f"  {asset}  {materialization.partition}  "
            f"{self._done[asset]:>{len(str(self._total))}}/{self._total}  "
            f"{counted}  {seconds:5.1f} s",
            file=self._out or sys.stdout,
            flush=True,
        )
