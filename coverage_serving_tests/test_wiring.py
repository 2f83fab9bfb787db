"""The commands that need no Dagster do not import it: the CLI module, and `serve` up to the
point where it would start listening."""

import json
import subprocess
import sys
from pathlib import Path

from coverage_serving.settings import HOME_VAR, REPO_ROOT

DAGSTER_MODULES = "[m for m in sorted(sys.modules) if m.split('.')[0].startswith('dagster')]"


def imported_dagster_modules(script: str, home: Path) -> list[str]:
    """The Dagster modules a fresh interpreter holds after running `script`."""
    done = subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{script}\nprint(json.dumps({DAGSTER_MODULES}))"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), HOME_VAR: str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_cli_imports_no_dagster(tmp_path: Path) -> None:
    assert imported_dagster_modules("import coverage_serving.cli", tmp_path) == []


def test_serve_imports_no_dagster(tmp_path: Path) -> None:
    serve = (
        "import uvicorn\n"
        "uvicorn.run = lambda app, **options: None  # built, not started\n"
        "from coverage_serving.cli import main\n"
        "assert main(['serve']) == 0"
    )
    assert imported_dagster_modules(serve, tmp_path) == []
