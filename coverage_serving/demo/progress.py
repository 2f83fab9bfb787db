"""One line per partition as a run from the CLI records it, so a long backfill shows where it
is: `store_predictions  IN|2026-01-01   1/33      2,000 rows    3.1 s`. An asset whose step records
all its partitions as it ends (the feature snapshot: defs/features.py) gets one line then:
`store_features  33/33 partitions     66,000 rows    5.1 s`."""

import sys
from typing import TextIO

import dagster as dg

ROW_COUNT = "dagster/row_count"


class PartitionProgress:
    """An `on_event` for instance/runs.execute over a run of `total` partitions per asset."""

    def __init__(
        self, total: int, recorded_at_step_end: set[str], out: TextIO | None = None
    ) -> None:
        self._total = total
        self._at_step_end = recorded_at_step_end
        self._out = out  # None: sys.stdout as it is when a line is printed
        self._done: dict[str, int] = {}
        self._rows: dict[str, int] = {}  # of the assets recorded at step end
        # Per step: when it started or last printed a line, for the line's time.
        self._since: dict[str, float] = {}

    def __call__(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        step = event.step_key or ""
        if event.event_type == dg.DagsterEventType.STEP_START:
            self._since[step] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            for asset in sorted(self._at_step_end & set(self._rows)):
                line = f"{asset}  {self._count(asset)} partitions"
                self._print(line, self._rows.pop(asset), step, entry)
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self._record(event.step_materialization_data.materialization, step, entry)

    def _record(
        self, materialization: dg.AssetMaterialization, step: str, entry: dg.EventLogEntry
    ) -> None:
        if materialization.partition is None:
            return
        asset = materialization.asset_key.to_user_string()
        recorded = materialization.metadata.get(ROW_COUNT)
        rows = int(recorded.value) if recorded is not None else 0
        self._done[asset] = self._done.get(asset, 0) + 1
        if asset in self._at_step_end:
            self._rows[asset] = self._rows.get(asset, 0) + rows
        else:
            self._print(
                f"{asset}  {materialization.partition}  {self._count(asset)}", rows, step, entry
            )

    def _count(self, asset: str) -> str:
        return f"{self._done[asset]:>{len(str(self._total))}}/{self._total}"

    def _print(self, line: str, rows: int, step: str, entry: dg.EventLogEntry) -> None:
        seconds = entry.timestamp - self._since.get(step, entry.timestamp)
        self._since[step] = entry.timestamp
        print(
            f"  {line}  {rows:>9,} rows  {seconds:5.1f} s", file=self._out or sys.stdout, flush=True
        )
