"""The run launcher of the local instance: Dagster's DefaultRunLauncher plus the worker health
check it does not have.

With `run_monitoring` enabled, the daemon asks the launcher about every STARTED run each
`poll_interval_seconds`. DefaultRunLauncher answers nothing (`supports_check_run_worker_health`
is False), so a run whose processes were killed stays STARTED, and keeps its pool slots,
unless the code server that launched it saw its worker exit. Runs executed by the CLI
(`dagster asset materialize`, `coverage-serving demo`) have no such watcher. This launcher
answers FAILED once every process the run recorded is gone, and the daemon fails the run."""

from dagster import DagsterRun, DefaultRunLauncher

# Dagster exports the launcher but not the types of its health check.
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

from coverage_serving.instance.processes import processes_of


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        processes = processes_of(self._instance, run.run_id)
        if processes.gone:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"every process of the run is gone ({processes.describe()})"
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING)
