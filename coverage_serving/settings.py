"""Where local state lives: one directory for the warehouse, the registry and Dagster."""

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

HOME_VAR = "COVERAGE_SERVING_HOME"
# A sqlite registry keeps its artifacts in this directory beside its database file.
ARTIFACTS_DIR = "mlartifacts"
REPO_ROOT = Path(__file__).resolve().parents[1]

INSTANCE_CONFIG_HEADER = (
    "# Written by coverage_serving for its local state; edit freely: what you change is kept,\n"
    "# a top-level section missing here is added back (coverage_serving/settings.py).\n"
)
# The local dagster.yaml, one top-level section each. A file from an older state directory
# gets the sections it lacks appended (never rewritten): without run monitoring, a run killed
# mid-write would hold its table's pool forever and that table would silently stop updating.
INSTANCE_SECTIONS = {
    "telemetry": """\
telemetry:
  enabled: false  # no network here but the package registries: telemetry would time out
""",
    "concurrency": """\
concurrency:
  pools:
    # Every feature and prediction asset is in a pool named after it: one run at a time
    # writes a given table; runs writing different tables go in parallel.
    default_limit: 1
""",
    "run_launcher": """\
# Dagster's DefaultRunLauncher plus a worker health check (coverage_serving/instance): a run
# every process of which is gone (killed, out of memory) is reported dead to run monitoring.
run_launcher:
  module: coverage_serving.instance.launcher
  class: LocalRunLauncher
""",
    "run_monitoring": """\
# With the daemon running (make dev): a run whose processes are gone is failed at the next
# poll (at once when the code server saw its worker die), and the slots it held are freed at
# the poll after: its table's next run can start within about 25 s.
run_monitoring:
  enabled: true
  poll_interval_seconds: 10
  free_slots_after_run_end_seconds: 5
""",
}


@dataclass(frozen=True)
class LocalState:
    home: Path

    @classmethod
    def from_env(cls) -> "LocalState":
        return cls(Path(os.environ.get(HOME_VAR) or REPO_ROOT / ".coverage_serving").resolve())

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / ARTIFACTS_DIR

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI when set, else the sqlite registry in the state directory."""
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.home / 'mlflow.db'}"

    def create(self) -> None:
        for directory in (self.home, self.mlflow_artifacts, self.dagster_home):
            directory.mkdir(parents=True, exist_ok=True)
        self._complete_instance_config()

    def _complete_instance_config(self) -> None:
        """Write the local dagster.yaml, or append the sections an existing one lacks."""
        path = self.dagster_home / "dagster.yaml"
        existing = path.read_text() if path.exists() else INSTANCE_CONFIG_HEADER
        present = yaml.safe_load(existing) or {}
        missing = [text for section, text in INSTANCE_SECTIONS.items() if section not in present]
        if missing:
            path.write_text(existing.rstrip("\n") + "\n" + "".join(missing))
