"""The production variant: the Prefect server on PostgreSQL (a local cluster started by the test)."""

from __future__ import annotations

import json

import pytest

from tests.prefect.conftest import LAB_DRILL, aim_served_spec
from tests.prefect.harness import create_run, start_server, stop_tree, wait_state
from tests.prefect.postgres import start_postgres, why_not_available

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("run_cleanup")]
RUN_TIMEOUT_S = 180.0
LENIENT_SLO = {"p99_latency_ms": 2000, "max_downtime_ms": 3000}


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


def test_serve_and_an_approved_drill_on_a_postgresql_backed_server(postgres, prefect_server, served, lab, tmp_path):
    aim_served_spec(served, lab, tmp_path, slo=LENIENT_SLO)
    with prefect_server.client() as api:
        run_id = create_run(api, "on-demand", {"spec": LAB_DRILL})
        wait_state(api, run_id, {"PAUSED"}, RUN_TIMEOUT_S, served)
        answer = {"decision": "approve", "approver": "Li Wei", "change_ticket": "CHG-2027-0042"}
        assert api.post(f"/flow_runs/{run_id}/resume", json={"run_input": answer}).json()["status"] == "ACCEPT"
        wait_state(api, run_id, {"COMPLETED"}, RUN_TIMEOUT_S, served)

    # The records are in PostgreSQL, not in a SQLite file: the run, its approval input, the cluster limit, artifacts.
    assert postgres.sql(f"select state_type from flow_run where id = '{run_id}'") == "COMPLETED"
    assert postgres.sql("select name, \"limit\" from concurrency_limit_v2") == "drill:lab|1"
    keys = set(postgres.sql(f"select key from artifact where flow_run_id = '{run_id}' and key is not null").split())
    assert {f"drill-plan-{LAB_DRILL}", f"drill-report-{LAB_DRILL}", f"sealed-evidence-{LAB_DRILL}"} <= keys
    stored = postgres.sql(f"select value from flow_run_input where flow_run_id = '{run_id}' and key like '%response%'")
    assert json.loads(stored)["change_ticket"] == "CHG-2027-0042"
    assert not list(prefect_server.home.glob("*.db"))
