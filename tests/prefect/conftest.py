"""Fixtures: one real Prefect server (SQLite) and one `livedrill serve` per module; a fresh lab per test."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from livedrill_lab.manager import running_lab
from tests.lab_helpers import lab_spec
from tests.prefect.harness import TERMINAL, start_serve, start_server, stop_tree, wait_state

LAB_DRILL = "lab-targeted"
EXPECTED_DEPLOYMENTS = ["on-demand", f"quarterly-drill-{LAB_DRILL}"]
ACTIVE_STATES = {"PENDING", "RUNNING", "PAUSED", "CANCELLING"}
CLEANUP_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("prefect-server"))
    yield server
    stop_tree(server.process)


@pytest.fixture(scope="module")
def served(prefect_server, tmp_path_factory):
    """`livedrill serve` of one lab spec file; each test points that file at its own lab (read at every run)."""
    workdir = tmp_path_factory.mktemp("serve")
    spec_file = workdir / f"{LAB_DRILL}.yaml"
    spec_file.write_text((Path(__file__).resolve().parents[2] / "drills" / f"{LAB_DRILL}.yaml").read_text())
    serve = start_serve(prefect_server, workdir, [spec_file], EXPECTED_DEPLOYMENTS)
    yield serve
    stop_tree(serve.process)


@pytest.fixture
def lab(tmp_path):
    with running_lab(tmp_path / "lab") as info:
        yield info


def aim_served_spec(served, lab, tmp_path, **overrides) -> dict:
    """Rewrites the served spec file for this test's lab; returns the spec as data."""
    spec, _ = lab_spec(lab, tmp_path, **overrides)
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    served.specs[0].write_text(yaml.safe_dump(data, sort_keys=False))
    return data


@pytest.fixture
def run_cleanup(prefect_server):
    """A failed test must not leave a paused drill holding the cluster's slot for the next test."""
    yield
    with prefect_server.client() as api:
        live = api.post("/flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": list(ACTIVE_STATES)}}}})
        for run in live.json():
            api.post(f"/flow_runs/{run['id']}/set_state",
                     json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
        for run in live.json():
            wait_state(api, run["id"], TERMINAL, CLEANUP_TIMEOUT_S)
