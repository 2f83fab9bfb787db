"""Runs the CLI executes in its own process, recorded as runs of the workspace's code location.

`job.execute_in_process` records a run with no origin: the UI lists a job's runs by the
`.dagster/repository` tag (`__repository__@coverage_serving`), which Dagster derives from a
run's remote origin, so such runs were missing from `Jobs > score_store > Runs` and their page
offered a re-execution it warned about. Here the run is created as the webserver creates a
launched one, with the origin of the code location in workspace.yaml (the one `make dev`
loads), and executed in this process, so `make demo` needs no code server or daemon."""

import sys
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
from dagster._core.code_pointer import CodePointer

# Dagster exports none of what names a run's origin or executes an existing run in process.
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._grpc.utils import get_loadable_targets

from coverage_serving.settings import REPO_ROOT

WORKSPACE_FILE = REPO_ROOT / "workspace.yaml"


def workspace_location() -> ManagedGrpcPythonEnvCodeLocationOrigin:
    """The code location `dagster dev -w workspace.yaml` serves, read as Dagster reads it."""
    [origin] = WorkspaceFileTarget(paths=[str(WORKSPACE_FILE)]).create_origins()
    if not isinstance(origin, ManagedGrpcPythonEnvCodeLocationOrigin):
        raise TypeError(f"{WORKSPACE_FILE} must load one python module, not {origin}")
    return origin


def _python_origin(location: ManagedGrpcPythonEnvCodeLocationOrigin) -> RepositoryPythonOrigin:
    """What a code server of the location would record as where the repository's code is:
    the module and the attribute in it that holds the Definitions."""
    target = location.loadable_target_origin
    module = target.module_name
    if module is None:
        raise TypeError(f"{WORKSPACE_FILE} must name a python_module")
    [loadable] = get_loadable_targets(
        python_file=None,
        module_name=module,
        package_name=None,
        autoload_defs_module_name=None,
        working_directory=target.working_directory,
        attribute=target.attribute,
        resolve_lazy_defs=False,  # the attribute's name is enough: nothing is built twice
    )
    return RepositoryPythonOrigin(
        executable_path=target.executable_path or sys.executable,
        code_pointer=CodePointer.from_module(module, loadable.attribute, target.working_directory),
    )


def create_run(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any],
) -> dg.DagsterRun:
    """A NOT_STARTED run of the job, tagged and originated as if launched from the UI."""
    location = workspace_location()
    job = defs.resolve_job_def(job_name)
    repository = RemoteRepositoryOrigin(location, defs.get_repository_def().name)
    return instance.create_run_for_job(
        job_def=job,
        run_config=run_config,
        tags={**job.run_tags, **tags},
        remote_job_origin=RemoteJobOrigin(repository, job_name),
        job_code_origin=JobPythonOrigin(job_name, _python_origin(location)),
    )


def execute(
    defs: dg.Definitions,
    run: dg.DagsterRun,
    instance: dg.DagsterInstance,
    on_event: Callable[[dg.EventLogEntry], None],
) -> dg.DagsterRun:
    """Execute the run here, passing each of its events to `on_event` as it is stored (an
    asset's `context.log_event` is stored at once, not when its step next yields); the run
    as it ended."""
    instance.add_event_listener(run.run_id, on_event)
    execute_run(InMemoryJob(defs.resolve_job_def(run.job_name)), run, instance)
    ended = instance.get_run_by_id(run.run_id)
    assert ended is not None  # created above in the same instance
    return ended
