"""The Dagster UI as a person uses it, in Debian's Chromium driven by Playwright: the asset
graph, the demo's run under its job, one partition materialised from the asset's Materialize
dialog, and that partition's row count check on the asset's Checks tab.

Screenshots of each step are saved under the test's tmp directory (printed with `-s`)."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from coverage_serving_tests.conftest import SMALL_ROWS
from coverage_serving_tests.e2e.conftest import Platform
from coverage_serving_tests.processes import wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches the network: the machine has none but the registries.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
# The partition materialised: its month has a previous month, so row_count_change compares.
MARKET, MONTH = "IN", "2026-02-01"
PARTITION = f"{MARKET}|{MONTH}"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
RUN_STATUS = """query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"""
PARTITION_RUNS = """query($partition: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
  ... on Runs { results { runId } } } }"""
UNFINISHED_RUNS = """{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) {
  ... on Runs { results { runId } } } }"""

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: `make install` installs it"
)


@pytest.fixture(scope="module")
def browser() -> Iterator["sync_api.Browser"]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing and could not be installed (`make test` tries "
            "`apt-get install chromium`); Playwright's own browser downloads are not used"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: "sync_api.Browser") -> Iterator["sync_api.Page"]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    # As if the person had already skipped Dagster's "Join the community" dialog (ui-core
    # CommunityNux.tsx keeps that in local storage), which would cover the page.
    context.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
    context.set_default_timeout(60_000)  # the first page compiles the asset graph
    sync_api.expect.set_options(timeout=60_000)
    yield context.new_page()
    context.close()


def test_a_partition_materialised_from_the_ui_shows_its_check(
    platform: Platform, page: "sync_api.Page", tmp_path: Path
) -> None:
    shots = Screenshots(page, tmp_path)
    expect = sync_api.expect
    ui = platform.dagster_url
    # The daemon's first ticks launch runs (the alias moved before it started): on a small
    # machine their processes starve the webserver, and the dialog below loads for minutes.
    wait_for(
        "the runs the daemon launched by itself to finish",
        lambda: True if not _unfinished_runs(platform) else None,
        timeout=600,
    )

    page.goto(f"{ui}/locations/coverage_serving/asset-groups/store/lineage")
    for asset in ("store_features", "store_model", "store_predictions"):
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    expect(page.get_by_text("Loading")).to_have_count(0)  # each node's status
    shots.take("asset_graph")

    # The demo's run (conftest: run_main_jobs on this instance) is listed under its job.
    page.goto(f"{ui}/locations/coverage_serving/jobs/score_store/runs")
    expect(page.get_by_role("link", name=platform.demo_runs["score_store"][:8])).to_be_visible()
    shots.take("score_store_runs")
    # Its page offers re-execution without "may be different" or "not found" warnings: the run
    # names the loaded code location and the job snapshot the location has loaded.
    page.goto(f"{ui}/runs/{platform.demo_runs['score_store']}")
    expect(page.get_by_role("button", name="Re-execute all (*)", exact=True)).to_be_enabled()
    shots.take("demo_run")

    page.goto(f"{ui}/assets/store_predictions")
    # "Materialize…" once the page knows the asset (a disabled "Materialize" before); it
    # spins while it loads what the dialog needs, and a click meanwhile does nothing.
    materialize = page.get_by_role("button", name=re.compile(r"\bMaterialize…$"))
    expect(materialize).to_be_enabled(timeout=180_000)
    expect(materialize.get_by_role("progressbar")).to_have_count(0, timeout=180_000)
    shots.take("asset_page")
    materialize.click()
    expect(page.get_by_text("Launch runs to materialize store_predictions")).to_be_visible(
        timeout=180_000
    )
    page.get_by_text("Select a partition or create one").first.click()  # the market list
    page.get_by_text(MARKET, exact=True).first.click()
    page.keyboard.press("Escape")  # closes the market list, not the dialog
    month = page.get_by_placeholder("ex: 2026-01-01, 2026-02-01")
    month.fill(MONTH)
    month.press("Enter")
    expect(page.get_by_text("1 partition", exact=True)).to_be_visible()
    shots.take("materialize_dialog")
    page.get_by_role("button", name="Launch 1 run").click()

    # The run it launched (the "Launched run" toast is gone too soon to click reliably): the
    # only run of this one partition; every other run here covers a range.
    run_id = wait_for(
        f"the run of {PARTITION} to be launched",
        lambda: _run_of_partition(platform, PARTITION),
        timeout=120,
    )
    page.goto(f"{ui}/runs/{run_id}")
    status = wait_for(
        f"run {run_id} of {PARTITION} to finish",
        lambda: _finished_status(platform, run_id),
        timeout=300,
    )
    expect(page.get_by_text("Success").first).to_be_visible()
    shots.take("run")
    assert status == "SUCCESS"

    page.goto(f"{ui}/assets/store_predictions?view=checks")
    page.get_by_text("row_count_change", exact=True).first.click()
    page.get_by_role("tab", name="Execution history").click()
    # One row per partition a run checked; its timestamp links to the run.
    row = page.get_by_role("row").filter(has=page.locator(f'a[href^="/runs/{run_id}"]'))
    expect(row).to_be_visible()
    shots.take("row_count_change_history")
    cells = row.get_by_role("cell").all_inner_texts()
    assert PARTITION in cells
    assert "Passed" in cells[0]
    assert f"row_count_change: {SMALL_ROWS['stores']} rows against" in " ".join(cells)


def _run_of_partition(platform: Platform, partition: str) -> str | None:
    runs = platform.graphql(PARTITION_RUNS, partition=partition)["runsOrError"]["results"]
    return runs[0]["runId"] if runs else None


def _unfinished_runs(platform: Platform) -> list[dict]:
    return platform.graphql(UNFINISHED_RUNS)["runsOrError"]["results"]


def _finished_status(platform: Platform, run_id: str) -> str | None:
    run = platform.graphql(RUN_STATUS, runId=run_id)["runOrError"]
    return run["status"] if run.get("status") in FINISHED else None


class Screenshots:
    def __init__(self, page: "sync_api.Page", directory: Path) -> None:
        self._page = page
        self._directory = directory
        self._taken = 0

    def take(self, name: str) -> None:
        self._taken += 1
        path = self._directory / f"{self._taken:02d}_{name}.png"
        self._page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
