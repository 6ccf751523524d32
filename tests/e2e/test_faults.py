"""Fault-injection matrix on the lab: every fault at every stage ends safe, sealed, with the right outcome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.drill import drill
from livedrill.cli import main
from livedrill.outcomes import DrillOutcome
from tests.lab_helpers import annotate_vmi, lab_spec
from tests.e2e.safety import assert_safe, assert_sealed_with

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]
VMIMS = "/apis/kubevirt.io/v1/namespaces/banking/virtualmachineinstancemigrations"
REPO = Path(__file__).resolve().parents[2]


def _run_dir(verdict) -> Path:
    return Path(verdict.evidence_dir)


# ------------------------------------------------------------------ API faults: the drill rides them out


@pytest.mark.parametrize("fault", [
    {"status": 500, "count": 3},
    {"status": 429, "count": 3, "retry_after_s": 1},
    {"delay_ms": 6000, "count": 1},  # longer than the spec's 5 s request timeout: the call times out and is retried
], ids=["api-500", "api-429", "api-timeout"])
def test_transient_api_faults_during_the_migration_are_retried(lab, tmp_path, fault):
    lab.add_fault(r"/virtualmachineinstancemigrations/livedrill-", method="GET", **fault)
    spec, text = lab_spec(lab, tmp_path)
    verdict = drill(spec, text)
    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    assert assert_safe(lab) == "node-2"


def test_permanent_api_fault_at_creation_fails_before_anything_changes(lab, tmp_path):
    lab.add_fault(r"/virtualmachineinstancemigrations$", method="POST", status=403, count=1)
    spec, text = lab_spec(lab, tmp_path)
    with pytest.raises(Exception, match="403"):
        drill(spec, text)
    assert assert_safe(lab) == "node-1"
    assert lab.api("GET", VMIMS)["items"] == []
    run_dir = next((tmp_path / "evidence").glob("*-lab-targeted-*"))
    assert_sealed_with(run_dir, "interrupted")


def test_unreachable_api_is_an_error_before_any_mutation(tmp_path, lab):
    spec, text = lab_spec(lab, tmp_path)
    data = yaml.safe_load(text)
    kubeconfig = yaml.safe_load(Path(data["platform"]["kubeconfig"]).read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # nothing listens on the discard port
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(kubeconfig))
    data["platform"]["kubeconfig"] = str(dead)
    data["platform"]["call_retry_deadline_s"] = 2  # a refused connection is transient: retried this long, then an error
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    assert main(["run", str(spec_file)]) == 2
    assert assert_safe(lab) == "node-1"


# ------------------------------------------------------------------ the migration itself fails


@pytest.mark.parametrize("phase", ["Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running"])
def test_migration_failed_at_each_phase_ends_safe_on_the_source(lab, tmp_path, phase):
    annotate_vmi(lab, "lab.livedrill.io/fail-at-phase", phase)
    spec, text = lab_spec(lab, tmp_path)
    verdict = drill(spec, text)
    assert verdict.outcome is DrillOutcome.FAILED
    assert assert_safe(lab) == "node-1"
    assert_sealed_with(_run_dir(verdict), "did not succeed", "Failed")


@pytest.mark.parametrize("knob", ["target-unschedulable", "never-converge"])
def test_migration_that_cannot_finish_is_cancelled_at_the_deadline(lab, tmp_path, knob):
    annotate_vmi(lab, f"lab.livedrill.io/{knob}", "true")
    spec, text = lab_spec(lab, tmp_path, budgets={"migration_timeout_per_gib_s": 1, "min_migration_timeout_s": 4})
    verdict = drill(spec, text)
    assert verdict.outcome is DrillOutcome.FAILED
    assert any("deadline" in r for r in verdict.reasons), verdict.reasons
    assert assert_safe(lab) == "node-1"
    assert_sealed_with(_run_dir(verdict), "cancel-requested", "cancelled")


# ------------------------------------------------------------------ the workload fails


def test_ledger_down_before_start_refuses_the_drill_with_nothing_changed(lab, tmp_path):
    os.kill(lab.workload_pid("banking/banking-core-vm"), signal.SIGKILL)
    spec, text = lab_spec(lab, tmp_path)
    verdict = drill(spec, text)
    assert verdict.outcome is DrillOutcome.FAILED
    assert any("probe-smoke" in r for r in verdict.reasons), verdict.reasons
    assert lab.api("GET", VMIMS)["items"] == []
    assert assert_safe(lab) == "node-1"


def test_ledger_crash_during_migration_aborts_and_ends_safe(lab, tmp_path):
    annotate_vmi(lab, "lab.livedrill.io/memory", "1Gi")  # ~16 s of pre-copy at 64Mi/s: time to crash the ledger
    spec, text = lab_spec(lab, tmp_path)
    pid = lab.workload_pid("banking/banking-core-vm")

    import threading

    def crash_when_running():
        for _ in range(600):
            if any(m.get("status", {}).get("phase") == "Running" for m in lab.api("GET", VMIMS)["items"]):
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=crash_when_running)
    killer.start()
    verdict = drill(spec, text)
    killer.join()
    assert verdict.outcome is DrillOutcome.FAILED
    assert any("probe breach" in r for r in verdict.reasons), verdict.reasons
    assert assert_safe(lab) == "node-1"
    assert_sealed_with(_run_dir(verdict), "cancelled")


# ------------------------------------------------------------------ the orchestrator dies


@pytest.fixture
def cli_drill():
    """Starts `livedrill run` in its own process group; whatever of that group a test's kill left is ended after."""
    started: list[subprocess.Popen] = []

    def start(lab, tmp_path) -> tuple[subprocess.Popen, Path]:
        proc, archive = _start_cli_drill(lab, tmp_path)
        started.append(proc)
        return proc, archive

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # e.g. the probe engine's child, orphaned by a SIGKILL of the drill
        except ProcessLookupError:
            pass


def _start_cli_drill(lab, tmp_path) -> tuple[subprocess.Popen, Path]:
    annotate_vmi(lab, "lab.livedrill.io/memory", "1Gi")
    spec, text = lab_spec(lab, tmp_path)
    spec_file = tmp_path / "drill.yaml"
    spec_file.write_text(text)
    from prefect.settings import PREFECT_API_URL

    # The drill talks to this suite's Prefect API: killing it must not orphan a temporary server of its own.
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_API_URL=PREFECT_API_URL.value())
    proc = subprocess.Popen([sys.executable, "-m", "livedrill.cli", "run", str(spec_file)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(m.get("status", {}).get("phase") == "Running" for m in lab.api("GET", VMIMS)["items"]):
            time.sleep(1.0)
            return proc, tmp_path / "evidence"
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the drill never reached a Running migration")


def test_sigkill_during_migration_then_recover_ends_safe_and_sealed(lab, tmp_path, cli_drill):
    proc, archive = cli_drill(lab, tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    run_dir = next(archive.glob("*-lab-targeted-*"))
    assert (run_dir / "UNSEALED").exists()
    pending = json.loads((run_dir / "compensations.json").read_text())
    assert [c["state"] for c in pending] == ["pending"]  # persisted before the kill: what recovery works from

    assert main(["recover", run_dir.name, "--archive", str(archive)]) == 1
    assert assert_safe(lab) == "node-1"
    verdict = assert_sealed_with(run_dir, "recovery-started", "drill process stopped")
    assert verdict["outcome"] == "FAILED"
    assert json.loads((run_dir / "compensations.json").read_text())[0]["state"] == "done"
    # Idempotent: a second recover changes nothing.
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert main(["recover", run_dir.name, "--archive", str(archive)]) == 0
    assert before == {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_next_drill_recovers_a_crashed_run_of_its_cluster_first(lab, tmp_path, cli_drill):
    proc, archive = cli_drill(lab, tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    crashed = next(archive.glob("*-lab-targeted-*"))
    spec, text = lab_spec(lab, tmp_path)
    verdict = drill(spec, text)  # the crashed drill's migration is cancelled first, then this drill runs
    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    assert assert_safe(lab) == "node-2"
    assert_sealed_with(crashed, "recovery-started")
    gate = {c["name"]: c for c in json.loads((_run_dir(verdict) / "preflight.json").read_text())["checks"]}
    assert crashed.name in gate["no-drill-in-progress"]["message"]


def test_sigterm_during_migration_cancels_rolls_back_and_seals(lab, tmp_path, cli_drill):
    proc, archive = cli_drill(lab, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert assert_safe(lab) == "node-1"
    run_dir = next(archive.glob("*-lab-targeted-*"))
    assert_sealed_with(run_dir, "cancelled", "interrupted")


def test_watch_disconnects_and_410_gone_do_not_derail_the_drill(lab, tmp_path):
    """Watches resume from the last resourceVersion; a compacted history (410) makes them relist."""
    annotate_vmi(lab, "lab.livedrill.io/memory", "512Mi")  # a few seconds of pre-copy to disturb
    import threading

    def disturb():
        for _ in range(600):
            if any(m.get("status", {}).get("phase") == "Running" for m in lab.api("GET", VMIMS)["items"]):
                lab.add_fault(r"/virtualmachineinstancemigrations$", method="GET", status=500, count=2)
                lab.api("POST", "/lab/v1/compact")
                return
            time.sleep(0.05)

    disturber = threading.Thread(target=disturb)
    disturber.start()
    spec, text = lab_spec(lab, tmp_path)
    verdict = drill(spec, text)
    disturber.join()
    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    timeline = [json.loads(line) for line in (_run_dir(verdict) / "timeline.jsonl").read_text().splitlines()]
    watch = [e for e in timeline if e["kind"] == "watch"][0]["detail"]
    assert watch["events"] >= 3 and watch["restarts"] >= 1, watch
    assert assert_safe(lab) == "node-2"
