"""Which processes ran a Dagster run, and whether any of them is still alive.

Dagster records a `pid` in the run's events from its run worker (the process a launcher
starts, or the CLI process that executes the run) and from each step process. The local
instance is a sqlite directory on this machine, so every run of it ran here: a recorded pid
with no process behind it is a process that is gone."""

import os
from dataclasses import dataclass

import dagster as dg

# The events that carry a `pid` metadata entry: the run worker's engine events ("Started
# process for run", "Executing steps ... (pid: N)") and each step process's start.
_PROCESS_EVENTS = {dg.DagsterEventType.ENGINE_EVENT, dg.DagsterEventType.STEP_WORKER_STARTED}


@dataclass(frozen=True)
class RunProcesses:
    recorded: frozenset[int]
    alive: frozenset[int]

    @property
    def gone(self) -> bool:
        """Every process the run recorded has exited. A run that recorded none yet is not
        judged: it may be starting."""
        return bool(self.recorded) and not self.alive

    def describe(self) -> str:
        if not self.recorded:
            return "no process recorded"
        return "pid " + ", ".join(str(pid) for pid in sorted(self.recorded))


def processes_of(instance: dg.DagsterInstance, run_id: str) -> RunProcesses:
    recorded = frozenset(
        int(entry.dagster_event.event_specific_data.metadata["pid"].value)
        for entry in instance.all_logs(run_id, of_type=_PROCESS_EVENTS)
        if entry.dagster_event is not None
        and "pid" in getattr(entry.dagster_event.event_specific_data, "metadata", {})
    )
    return RunProcesses(recorded, frozenset(pid for pid in recorded if process_alive(pid)))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
