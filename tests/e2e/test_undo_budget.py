"""The undo actions wait as long as the spec's budgets.abort_timeout_s, not longer: a cancel the platform takes
longer to show ends as a failed undo whose record tells the operator what to do by hand."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from livedrill.outcomes import CompensationState
from livedrill.stages.rollback import run_rollback
from livedrill.stages.session import DrillSession
from livedrill_lab.manager import running_lab
from tests.e2e.safety import assert_safe
from tests.lab_helpers import lab_spec

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
LAB_ABORT_S = 3.0  # how long the lab's virt-controller takes to finish an abort
SPEC_ABORT_BUDGET_S = 1.0  # shorter than that: the undo cannot see the abort end in time


@pytest.fixture
def slow_abort_lab(tmp_path):
    with running_lab(tmp_path, controller={"abort_duration_s": LAB_ABORT_S}) as info:
        # The guest dirties memory faster than the bandwidth: the migration stays Running until it is cancelled.
        _annotate(info, "lab.livedrill.io/never-converge", "true")
        yield info


def _annotate(lab, key: str, value: str) -> None:
    response = httpx.patch(
        f"{lab.api_url}/apis/kubevirt.io/v1/namespaces/banking/virtualmachineinstances/banking-core-vm",
        json={"metadata": {"annotations": {key: value}}}, timeout=10,
        verify=ssl.create_default_context(cafile=str(lab.ca_file)),
        headers={"Authorization": f"Bearer {lab.token()}", "Content-Type": "application/merge-patch+json"})
    response.raise_for_status()


def _migrating_session(lab, tmp_path) -> DrillSession:
    """A drill session whose migration is Running, its cancel registered in the journal (as the migrate stage does)."""
    spec, text = lab_spec(lab, tmp_path, budgets={"abort_timeout_s": SPEC_ABORT_BUDGET_S})
    session = DrillSession.create(spec, text)
    adapter = session.adapter()
    try:
        handle = adapter.start_migration(spec.vms[0], "node-2", session.journal.register)
        deadline = time.monotonic() + 30
        while adapter.observe_migration(handle).phase != "Running":
            assert time.monotonic() < deadline, "the migration never reached Running"
            time.sleep(0.05)
    finally:
        adapter.close()
    return session


def _assert_failed_undo_names_the_manual_action(entries) -> None:
    [entry] = entries
    assert entry.action == "cancel-migration"
    assert entry.state is CompensationState.FAILED, entry
    assert f"not observed within {SPEC_ABORT_BUDGET_S:g} s" in entry.outcome
    assert entry.manual_action.startswith("finish the abort of migration banking/")
    assert "kubectl get vmi -n banking banking-core-vm" in entry.manual_action


def _wait_safe(lab) -> str:
    deadline = time.monotonic() + LAB_ABORT_S + 20
    while True:
        try:
            return assert_safe(lab)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_rollback_gives_up_at_the_specs_abort_budget_and_names_the_manual_action(slow_abort_lab, tmp_path):
    session = _migrating_session(slow_abort_lab, tmp_path)
    started = time.monotonic()
    entries = run_rollback(session)
    assert time.monotonic() - started < LAB_ABORT_S, "the undo waited past the spec's abort budget"
    _assert_failed_undo_names_the_manual_action(entries)
    on_disk = json.loads((session.run.path / "compensations.json").read_text())
    assert on_disk[0]["state"] == "failed" and on_disk[0]["manual_action"] == entries[0].manual_action
    # The lab does finish the abort later: what the operator is told to watch for.
    assert _wait_safe(slow_abort_lab) == "node-1"


def test_recover_in_a_fresh_process_uses_the_budget_of_the_runs_spec(slow_abort_lab, tmp_path):
    session = _migrating_session(slow_abort_lab, tmp_path)
    # The drill's process died: its owner record names a process that no longer runs.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    session.run.write_json("owner.json", {"pid": int(dead.stdout), "create_time": 0.0, "host": socket.gethostname(),
                                          "claimed_at": "2026-01-01T00:00:00+00:00"})
    done = subprocess.run([sys.executable, "-m", "livedrill.cli", "recover", session.run_id,
                           "--archive", str(session.run.path.parent)],
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "lab")])),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    reopened = DrillSession(session.spec, session.run)
    _assert_failed_undo_names_the_manual_action(reopened.journal.entries)
    verdict = json.loads((session.run.path / "verdict.json").read_text())
    assert any("a human must finish the abort" in r for r in verdict["reasons"]), verdict["reasons"]
    assert _wait_safe(slow_abort_lab) == "node-1"
