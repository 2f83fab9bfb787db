"""Who holds a table's pool, and freeing the slots of a run whose processes are gone.

A step takes a slot of its pool (one per table) and gives it back when it ends. A process
killed in the middle gives nothing back: its run stays STARTED and the slot stays taken. With
the daemon running, run monitoring fails such a run and frees its slots (settings.py); without
it, `coverage-serving release-run` does the same by hand."""

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from coverage_serving.errors import HeldPoolError
from coverage_serving.instance.processes import RunProcesses, processes_of

RELEASE_COMMAND = "coverage-serving release-run"


@dataclass(frozen=True)
class PoolHolder:
    pool: str
    run: dg.DagsterRun
    processes: RunProcesses

    @property
    def stuck(self) -> bool:
        """No process of the run is left to give the slot back: it ended, or every process
        it recorded is gone (a run that recorded none yet may be starting)."""
        return not self.processes.alive and (self.run.is_finished or self.processes.gone)

    def describe(self) -> str:
        return (
            f"pool {self.pool!r} is held by run {self.run.run_id} ({self.run.status.value}, "
            f"{self.processes.describe()}"
            f"{', all gone' if self.processes.gone else ''})"
        )


def pool_holders(instance: dg.DagsterInstance, pools: Iterable[str]) -> list[PoolHolder]:
    holders = []
    for pool in sorted(set(pools)):
        info = instance.event_log_storage.get_concurrency_info(pool)
        for run_id in sorted(info.active_run_ids):
            run = instance.get_run_by_id(run_id)
            if run is not None:
                holders.append(PoolHolder(pool, run, processes_of(instance, run_id)))
    return holders


def require_no_stuck_holder(instance: dg.DagsterInstance, pools: Iterable[str]) -> None:
    """Refuse at once to start runs that would wait on a pool no one will free."""
    stuck = [holder for holder in pool_holders(instance, pools) if holder.stuck]
    if stuck:
        raise HeldPoolError(
            "; ".join(holder.describe() for holder in stuck)
            + ": no run writing that table can start until it is freed. Free it with: "
            + "; ".join(sorted({f"{RELEASE_COMMAND} {h.run.run_id}" for h in stuck}))
        )


def release_run(instance: dg.DagsterInstance, run_id: str) -> str:
    """Fail the run if it is not finished and free its pool slots; refused while any of its
    processes is alive. Returns what was done."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise HeldPoolError(f"no run {run_id} in the Dagster instance {instance.root_directory}")
    processes = processes_of(instance, run_id)
    if processes.alive:
        raise HeldPoolError(
            f"run {run_id} still has a process alive ({processes.describe()}): it will give "
            "its slots back when it ends; stop it first (Ctrl-C, or Terminate in the Dagster UI)"
        )
    every_pool = instance.event_log_storage.get_concurrency_keys()
    pools = [held.pool for held in pool_holders(instance, every_pool) if held.run.run_id == run_id]
    done = []
    if not run.is_finished:
        instance.report_run_failed(
            run, f"released by {RELEASE_COMMAND}: {processes.describe()}, no process alive"
        )
        done.append(f"run {run_id} was {run.status.value} with no process alive: marked failed")
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    done.append(f"freed its slots in {', '.join(pools)}" if pools else "it held no pool slot")
    return "; ".join(done)
