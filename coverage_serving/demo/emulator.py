"""A local BigQuery emulator (local-bigquery, installed by `make emulator` into .venv-bigquery)
for `make demo-bigquery` and the tests: started on free ports, stopped by PID."""

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coverage_serving.settings import REPO_ROOT

EMULATOR = REPO_ROOT / ".venv-bigquery" / "bin" / "local-bigquery"
PROJECT = "local-project"


@dataclass(frozen=True)
class Emulator:
    project: str
    api_endpoint: str
    storage_endpoint: str

    def environment(self, dataset: str) -> dict[str, str]:
        """The variables that point the platform's BigQuery warehouse at this emulator."""
        return {
            "COVERAGE_SERVING_WAREHOUSE": "bigquery",
            "BIGQUERY_PROJECT": self.project,
            "BIGQUERY_DATASET": dataset,
            "BIGQUERY_API_ENDPOINT": self.api_endpoint,
            "BIGQUERY_STORAGE_ENDPOINT": self.storage_endpoint,
        }


@contextmanager
def running_emulator(data_dir: Path, timeout: float = 60) -> Iterator[Emulator]:
    """The emulator serving `data_dir` on 127.0.0.1 until the block ends; its log is
    `data_dir/emulator.log`."""
    if not EMULATOR.exists():
        raise FileNotFoundError(f"{EMULATOR} is missing: `make emulator` installs it")
    data_dir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    emulator = Emulator(PROJECT, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}")
    with (data_dir / "emulator.log").open("a") as log:
        server = subprocess.Popen(
            [
                *(str(EMULATOR), "serve", "--host", "127.0.0.1", "--port", str(port)),
                *("--grpc-port", str(grpc_port), "--project", PROJECT),
                *("--data-dir", str(data_dir / "store")),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_it_answers(emulator, server, timeout, log.name)
            yield emulator
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_it_answers(
    emulator: Emulator, server: subprocess.Popen, timeout: float, log: str
) -> None:
    url = f"{emulator.api_endpoint}/bigquery/v2/projects/{emulator.project}/datasets"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the BigQuery emulator exited with {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise TimeoutError(f"the BigQuery emulator did not answer within {timeout:.0f}s; see {log}")


def free_port() -> int:
    """A loopback port nothing listens on now (the socket that found it is closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
