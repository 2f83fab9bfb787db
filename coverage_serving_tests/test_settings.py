"""The local Dagster instance the state directory configures: pools of one slot, and run
monitoring with a launcher that can tell a dead run, also in a state directory written before
those settings existed."""

from pathlib import Path

import dagster as dg

from coverage_serving.instance.launcher import LocalRunLauncher
from coverage_serving.settings import LocalState

# What an older version of this package wrote, edited by its user (two slots per table).
OLDER_DAGSTER_YAML = """\
# Written by coverage_serving for its local state; edit freely, it is not overwritten.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 2"""


def local_instance(state: LocalState) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(state.dagster_home))


def test_a_new_state_directory_monitors_runs_with_a_launcher_that_tells_a_dead_one(
    tmp_path: Path,
) -> None:
    state = LocalState(tmp_path / "home")
    state.create()

    with local_instance(state) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, LocalRunLauncher) and launcher.supports_check_run_worker_health
        monitoring = instance.run_monitoring_settings
        assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
        assert "MONITORING" in instance.get_required_daemon_types()
        assert instance.global_op_concurrency_default_limit == 1


def test_an_older_dagster_yaml_gets_the_missing_sections_and_keeps_its_own(
    tmp_path: Path,
) -> None:
    state = LocalState(tmp_path / "home")
    state.dagster_home.mkdir(parents=True)
    (state.dagster_home / "dagster.yaml").write_text(OLDER_DAGSTER_YAML)

    state.create()
    completed = (state.dagster_home / "dagster.yaml").read_text()
    state.create()

    assert completed.startswith(OLDER_DAGSTER_YAML + "\n")
    assert (state.dagster_home / "dagster.yaml").read_text() == completed  # added once
    with local_instance(state) as instance:
        assert isinstance(instance.run_launcher, LocalRunLauncher)
        assert instance.run_monitoring_enabled
        assert instance.global_op_concurrency_default_limit == 2  # the user's own setting
