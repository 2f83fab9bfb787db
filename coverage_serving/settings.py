"""Where local state lives: one directory for the warehouse, the registry and Dagster."""

import os
from dataclasses import dataclass
from pathlib import Path

HOME_VAR = "COVERAGE_SERVING_HOME"
# A sqlite registry keeps its artifacts in this directory beside its database file.
ARTIFACTS_DIR = "mlartifacts"
REPO_ROOT = Path(__file__).resolve().parents[1]


LOCAL_INSTANCE_CONFIG = """\
# Written by coverage_serving for its local state; edit freely, it is not overwritten.
telemetry:
  enabled: false  # no network here but the package registries: telemetry would time out
concurrency:
  pools:
    # Every feature and prediction asset is in a pool named after it: one run at a time
    # writes a given table; runs writing different tables go in parallel.
    default_limit: 1
"""


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
        instance_config = self.dagster_home / "dagster.yaml"
        if not instance_config.exists():
            instance_config.write_text(LOCAL_INSTANCE_CONFIG)
