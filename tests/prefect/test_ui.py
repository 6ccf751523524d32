"""The Prefect UI in headless Chromium, on the production variant of the server (PostgreSQL): an operator starts an
on-demand lab drill from the deployment's form, a change manager approves it on the paused run's Resume form, the
drill report artifact is there, and the records are in PostgreSQL.

Why PostgreSQL, not the SQLite file of the other server tests: on SQLite in WAL mode, a transaction that read and
then writes after another writer committed fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT; the
busy timeout does not apply to it) and the API answers 503. Our API clients retry that; the UI's form does not,
and showed "Oops. Something went wrong." with no run created (3 of about 9 clean-clone CI runs). PostgreSQL waits
on row locks instead, which is also how the product is deployed past one machine.

Screenshots of every step go to test-artifacts/prefect-ui/ (git-ignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from livedrill.evidence.verify import verify_run
from tests.prefect.cdp import Browser, CDPError, chromium_binary
from tests.prefect.conftest import LAB_DRILL, aim_served_spec
from tests.prefect.harness import REPO, deployment, start_server, stop_tree, wait_state
from tests.prefect.postgres import start_postgres, why_not_available

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("run_cleanup")]
SHOTS = REPO / "test-artifacts" / "prefect-ui"
UI_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 180.0
VIEW_RUN_TIMEOUT_S = 15.0
# This test is about the UI path, not the SLO: on a loaded 2-core CI machine the lab's loopback p99 can
# exceed the shipped 50 ms, which would make the verdict (not the UI) fail.
LENIENT_SLO = {"p99_latency_ms": 2000, "max_downtime_ms": 3000}

# Small DOM helpers evaluated in the page: find by visible text, then act like a user (click, type).
# The deepest visible element showing exactly this text; a click on it bubbles to its button, tab or link.
FIND_BUTTON = """(text) => [...document.querySelectorAll('*')]
    .filter(e => e.offsetParent !== null && e.innerText && e.innerText.trim() === text
                 && ![...e.children].some(c => c.innerText && c.innerText.trim() === text))"""
FIELD_BY_LABEL = """(label, tag) => {
    const heads = [...document.querySelectorAll('*')].filter(e => e.children.length === 0
        && e.offsetParent !== null && e.innerText && e.innerText.trim() === label);
    for (const head of heads) {
        let box = head.parentElement;
        for (let i = 0; i < 6 && box; i++, box = box.parentElement) {
            const field = box.querySelector(tag);
            if (field && field.offsetParent !== null) return field;
        }
    }
    return null;
}"""


@pytest.fixture(scope="module")
def postgres():
    reason = why_not_available()
    if reason:
        pytest.skip(reason)
    pg = start_postgres()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def prefect_server(postgres, tmp_path_factory):
    """Overrides the SQLite server of conftest: same server, PostgreSQL database."""
    server = start_server(tmp_path_factory.mktemp("prefect-server-pg"), database_url=postgres.url)
    yield server
    stop_tree(server.process)


@pytest.fixture(autouse=True)
def fresh_screenshots():
    """Screenshots of an earlier run must not pass for this one's."""
    shutil.rmtree(SHOTS, ignore_errors=True)


@pytest.fixture
def page(tmp_path, prefect_server, served):
    """One tab; afterwards its console and API traffic, and the server's and serve's logs, join the screenshots."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    browser = Browser(binary, tmp_path)
    tab = browser.new_page()
    yield tab
    try:
        tab.log.write(SHOTS)
    finally:
        browser.close()
        for log in (prefect_server.log, served.log, browser.log):
            shutil.copy(log, SHOTS / log.name)


class Operator:
    """A person at the UI: every step leaves a numbered screenshot."""

    def __init__(self, page, shots: Path):
        self.page, self.shots, self.step = page, shots, 0

    def shot(self, name: str) -> Path:
        self.step += 1
        return self.page.screenshot(self.shots / f"{self.step:02d}-{name}.png")

    def visible_text(self) -> str:
        return self.page.js("document.body.innerText")

    def wait_text(self, pattern: str, what: str, timeout_s: float = UI_TIMEOUT_S) -> None:
        try:
            self.page.wait_for(f"new RegExp({json.dumps(pattern)}).test(document.body.innerText)", timeout_s, what)
        except CDPError:
            self.shot("FAILED-waiting-for-" + re.sub(r"[^a-z0-9]+", "-", what.lower()))
            raise

    def click(self, text: str, nth: int = 0, timeout_s: float = UI_TIMEOUT_S) -> None:
        try:
            self.page.wait_for(f"({FIND_BUTTON})({json.dumps(text)}).length > {nth}", timeout_s, f"button {text!r}")
        except CDPError:
            self.shot("FAILED-no-button-" + re.sub(r"[^a-z0-9]+", "-", text.lower()))
            raise
        self.page.js(f"({FIND_BUTTON})({json.dumps(text)})[{nth}].click()")

    def fill(self, label: str, value: str, tag: str = "input, textarea") -> None:
        found = f"({FIELD_BY_LABEL})({json.dumps(label)}, {json.dumps(tag)})"
        self.page.wait_for(f"!!{found}", UI_TIMEOUT_S, f"field {label!r}")
        self.page.js(f"(() => {{ const f = {found}; f.focus(); f.select && f.select(); }})()")
        self.page.type_text(value)
        self.page.js(f"{found}.blur()")


def _runs_of(api, deployment_id: str) -> list:
    return api.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment_id]}}}).json()



def test_operator_starts_a_lab_drill_from_the_form_and_a_manager_approves_it(
        postgres, prefect_server, served, lab, tmp_path, page):
    aim_served_spec(served, lab, tmp_path, slo=LENIENT_SLO)
    you = Operator(page, SHOTS)
    with prefect_server.client() as api:
        on_demand = deployment(api, "on-demand")

        # 1. The deployment's Run form, generated from DrillRequest.
        page.goto(f"{prefect_server.ui_url}/deployments/deployment/{on_demand['id']}/run")
        you.wait_text("Approval Required", "the on-demand run form")
        you.fill("Spec", LAB_DRILL)
        you.shot("on-demand-form-filled")
        you.click("Submit")

        # 2. The UI confirms the run was scheduled; its page shows it pausing for approval after the pre-flight.
        you.wait_text("scheduled to start|Something went wrong", "the submit's outcome")
        you.shot("submit-outcome")
        assert "scheduled to start" in you.visible_text()
        you.shot("run-scheduled")
        [run] = _runs_of(api, on_demand["id"])
        run_id = run["id"]
        assert run["parameters"]["request"] == {"spec": LAB_DRILL, "mode": "as-specified", "target_node": None,
                                                "dry_run": False, "approval_required": True}
        try:
            you.click("View run", timeout_s=VIEW_RUN_TIMEOUT_S)
            page.wait_for(f"location.href.includes({json.dumps(run_id)})", VIEW_RUN_TIMEOUT_S, "the flow run page")
        except CDPError:
            # The toast can vanish before or under the click on a slow machine; the run's own URL is the same page.
            you.shot("view-run-missed")
            page.goto(f"{prefect_server.ui_url}/runs/flow-run/{run_id}")
        wait_state(api, run_id, {"PAUSED"}, RUN_TIMEOUT_S, served)
        you.wait_text("Paused", "the run shown as Paused")
        you.shot("run-paused-for-approval")
        assert lab.api("GET", "/apis/kubevirt.io/v1/namespaces/banking/virtualmachineinstances/banking-core-vm")[
            "status"]["nodeName"] == "node-1"

        # 3. The change manager resumes it with name and change ticket; the form shows the plan.
        you.click("Resume")
        you.wait_text("Change Ticket|change_ticket", "the approval form")
        you.wait_text("live-migrate to", "the plan in the approval form")
        you.fill("Approver", "Li Wei")
        you.fill("Change Ticket", "CHG-2027-0042")
        you.shot("approval-form-filled")
        you.click("Submit")
        wait_state(api, run_id, {"COMPLETED"}, RUN_TIMEOUT_S, served)

        # 4. The report artifact: the verdict on the run's Artifacts tab.
        you.wait_text("Completed", "the run shown as Completed")
        you.click("Artifacts")
        you.wait_text(f"drill-report-{LAB_DRILL}", "the drill report artifact in the run's artifacts")
        you.shot("run-artifacts")
        artifact_id = next(a["id"] for a in api.post("/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [f"drill-report-{LAB_DRILL}"]}}}).json())
        page.goto(f"{prefect_server.ui_url}/artifacts/artifact/{artifact_id}")
        you.wait_text("Drill verdict: PASSED", "the rendered drill report")
        you.wait_text("approved by Li Wei", "the approval in the report")
        you.shot("drill-report")

    run_dirs = sorted((tmp_path / "evidence").glob(f"*-{LAB_DRILL}-*"))
    assert len(run_dirs) == 1 and verify_run(run_dirs[0]) == []
    approval = json.loads((run_dirs[0] / "approval.json").read_text())
    assert (approval["approver"], approval["change_ticket"], approval["decision"]) == ("Li Wei", "CHG-2027-0042", "approved")

    # The records are in PostgreSQL, not in a SQLite file: the run, its approval input, the cluster limit, artifacts.
    assert postgres.sql(f"select state_type from flow_run where id = '{run_id}'") == "COMPLETED"
    assert postgres.sql("select name, \"limit\" from concurrency_limit_v2") == "drill:lab|1"
    keys = set(postgres.sql(f"select key from artifact where flow_run_id = '{run_id}' and key is not null").split())
    assert {f"drill-plan-{LAB_DRILL}", f"drill-report-{LAB_DRILL}", f"sealed-evidence-{LAB_DRILL}"} <= keys
    stored = postgres.sql(f"select value from flow_run_input where flow_run_id = '{run_id}' and key like '%response%'")
    assert json.loads(stored)["change_ticket"] == "CHG-2027-0042"
    assert not list(prefect_server.home.glob("*.db"))
