"""Helpers for tests that run real processes: their environment, waiting with a bound,
stopping."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from coverage_serving.settings import HOME_VAR, LocalState

T = TypeVar("T")


def command(name: str) -> str:
    """A console script of this virtual environment (dagster, dagster-daemon, ...)."""
    return str(Path(sys.executable).parent / name)


def state_environment(state: LocalState, config: Path) -> dict[str, str]:
    """The environment of a `dagster` or `coverage-serving` process on this state directory
    and serving config, with the warehouse the test's environment selects."""
    return {
        **os.environ,
        HOME_VAR: str(state.home),
        "DAGSTER_HOME": str(state.dagster_home),
        "COVERAGE_SERVING_CONFIG": str(config),
    }


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 2) -> T:
    """Poll `check` until it returns something other than None; fail naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def answers(url: str) -> bool | None:
    """True when the URL answers 200, None while it does not (for wait_for)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return True if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def stop(process: subprocess.Popen, stop_signal: int, timeout: float) -> None:
    """Send `stop_signal`, then kill the process group if it is still there after `timeout`."""
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def dev_command(dagster_port: int, mlflow_port: int) -> list[str]:
    """`coverage-serving dev` on the given ports, as this interpreter runs it."""
    return [
        sys.executable,
        "-m",
        "coverage_serving.cli",
        "dev",
        f"--dagster-port={dagster_port}",
        f"--mlflow-port={mlflow_port}",
    ]
