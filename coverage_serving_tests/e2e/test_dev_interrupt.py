"""Ctrl-C on `coverage-serving dev` stops both UIs and says so in one line: no traceback, no
shutdown chatter from the servers; and the MLflow UI logs no line per static file."""

import signal
import subprocess
import urllib.request

import pytest

from coverage_serving.demo.emulator import free_port
from coverage_serving.settings import LocalState
from coverage_serving_tests.conftest import SMALL_CONFIG
from coverage_serving_tests.processes import (
    answers,
    dev_command,
    state_environment,
    stop,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_ctrl_c_stops_both_uis_with_one_line(state: LocalState) -> None:
    dagster_port, mlflow_port = free_port(), free_port()
    dev = subprocess.Popen(
        dev_command(dagster_port, mlflow_port),
        env=state_environment(state, SMALL_CONFIG),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the test's own signals stay with the test
    )
    try:
        for url in (
            f"http://127.0.0.1:{dagster_port}/server_info",
            f"http://127.0.0.1:{mlflow_port}/health",
        ):
            wait_for(f"{url} to answer", lambda url=url: answers(url), timeout=240)
        # What a browser on the MLflow UI fetches first: its page and a static file.
        with urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/", timeout=30) as page:
            assert page.status == 200
        dev.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends it
        output, _ = dev.communicate(timeout=200)
    finally:
        if dev.poll() is None:
            stop(dev, signal.SIGKILL, timeout=10)

    assert dev.returncode == 0, output
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output
    assert '"GET /' not in output, "the MLflow server logged a request"
    assert output.rstrip("\n").splitlines()[-1] == "interrupted: every server stopped"
