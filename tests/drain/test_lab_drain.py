"""Drain drills end to end on the lab: the real kubernetes client, KubeVirt's eviction webhook semantics,
real ledger processes really frozen at each core VM's stop-and-copy, and the real kubectl drain."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from flows.drill import drill
from livedrill.drain import EvictionAnswer, pods_to_drain
from livedrill.errors import PlatformError
from livedrill.evidence.verify import verify_run
from livedrill_lab.demo import freeze_for
from livedrill.outcomes import CompensationState, DrillOutcome
from livedrill.platforms.kubevirt.adapter import KubeVirtAdapter
from livedrill.platforms.kubevirt.drain import KubeVirtDrain
from tests.drain.conftest import drain_spec, kubectl, node, pods_on, read_json, vmims, vmis

pytestmark = [pytest.mark.e2e]
CORE = ["banking/banking-core-vm", "banking/banking-core-vm-2"]
ALL = sorted(CORE + ["apps/app-vm-1", "apps/app-vm-2", "apps/app-vm-3"])
TERMINAL = {"Succeeded", "Failed"}


def _assert_every_vm_running_once_and_nothing_in_flight(lab) -> dict[str, str]:
    """What an operator checks after any drill: each VM Running on one node, no migration in flight."""
    where = {}
    launchers = [p for p in lab.api("GET", "/api/v1/pods")["items"]
                 if p["metadata"].get("labels", {}).get("kubevirt.io") == "virt-launcher"
                 and p.get("status", {}).get("phase") == "Running"]
    for ref, vmi in vmis(lab).items():
        assert vmi["status"]["phase"] == "Running", (ref, vmi["status"])
        ns, name = ref.split("/")
        running = [p["spec"]["nodeName"] for p in launchers if p["metadata"]["namespace"] == ns
                   and p["metadata"]["labels"]["vm.kubevirt.io/name"] == name]
        assert running == [vmi["status"]["nodeName"]], (ref, running)
        where[ref] = vmi["status"]["nodeName"]
    assert not [m["metadata"]["name"] for m in vmims(lab) if m.get("status", {}).get("phase") not in TERMINAL]
    return where


@pytest.mark.usefixtures("prefect_harness")
def test_drain_drill_passes_with_a_verdict_per_vm(drain_lab, tmp_path):
    spec, text = drain_spec(drain_lab, tmp_path)
    verdict = drill(spec, text)

    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    where = _assert_every_vm_running_once_and_nothing_in_flight(drain_lab)
    assert sorted(where) == ALL and "node-1" not in where.values()
    assert not node(drain_lab)["spec"].get("unschedulable"), "uncordoned after a passing drill"
    assert pods_on(drain_lab) == [], "the emptyDir pod was evicted, every virt-launcher pod left"

    run_dir = Path(verdict.evidence_dir)
    assert verify_run(run_dir) == []
    verdicts = {v["vm"]: v for v in read_json(run_dir, "drain/verdicts.json")}
    assert sorted(verdicts) == ALL
    for ref, v in verdicts.items():
        assert v["status"] in ("pass", "warn"), v  # warn: a starved probe on a loaded host flags its own figures
        assert v["final_node"] == where[ref] and v["migration"].startswith("kubevirt-evacuation-")
        assert v["core"] is (ref in CORE)
    drain_checks = {c.subject: c for c in verdict.checks if c.name == "drain.vm"}
    assert sorted(drain_checks) == [f"vmi {ref}" for ref in ALL]
    # Both core VMs were probed at once through the drain, each judged on its own probe ...
    for ref in CORE:
        probe_checks = [c for c in verdicts[ref]["checks"] if c["name"].startswith("slo.")]
        assert probe_checks and all(c["status"] == "pass" for c in probe_checks), probe_checks
        assert all(ref in c["subject"] for c in probe_checks)
    # ... and each probe saw its own ledger's real freeze: a gap of that probe spans the SIGSTOP..SIGCONT window.
    report = read_json(run_dir, "probe/report.json")
    for probe in report["probes"]:
        freeze = freeze_for(drain_lab.freezes(), probe["vm"])
        assert freeze is not None and freeze["migration"] == verdicts[probe["vm"]]["migration"]
        gaps = probe["gaps_above_threshold"] + [probe["longest_gap"]]
        assert any(g["start_monotonic"] <= freeze["stop_confirmed_monotonic"] and
                   g["end_monotonic"] >= freeze["cont_monotonic"] for g in gaps), (freeze, gaps)
        assert verdicts[probe["vm"]]["observed_downtime_ms"] >= freeze["frozen_ms"] - 2
    assert sorted(p["vm"] for p in report["probes"]) == CORE
    assert all(p["reconciliation"]["lost"] == 0 for p in report["probes"])
    # The two probes ran over the same window: the drain of the whole node.
    starts = [p["window_marks"]["during"] for p in report["probes"]]
    assert max(starts) - min(starts) < 0.5
    # Copies of every evacuation migration, and compensations: evacuations done, uncordon run.
    assert {m["spec"]["vmiName"] for m in read_json(run_dir, "drain/evacuations.json")} == {r.split("/")[1] for r in ALL}
    comps = read_json(run_dir, "compensations.json")
    assert [c["action"] for c in comps].count("cancel-evacuation") == 5
    assert {c["state"] for c in comps if c["action"] == "cancel-evacuation"} == {CompensationState.NOT_NEEDED.value}
    assert [c["state"] for c in comps if c["action"] == "uncordon"] == [CompensationState.DONE.value]
    timeline = (run_dir / "timeline.jsonl").read_text()
    assert "evacuation-triggered" in timeline and '"kind":"cordoned"' in timeline
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert b"changeme" not in path.read_bytes(), path  # the core VMs' cloud-init password


@pytest.mark.usefixtures("prefect_harness")
def test_drain_keeps_working_through_intermittent_429_and_5xx_and_keeps_the_node_cordoned(drain_lab, tmp_path):
    lab = drain_lab
    lab.add_fault(r"/eviction$", status=429, count=3, retry_after_s=1)  # plain throttling, not KubeVirt's 429
    lab.add_fault(r"/eviction$", status=500, count=2)
    lab.add_fault(r"^/api/v1/pods$", status=503, count=3)
    lab.add_fault(r"^/apis/kubevirt.io/v1/virtualmachineinstances$", status=429, count=4, retry_after_s=1)
    lab.add_fault(r"^/apis/kubevirt.io/v1/virtualmachineinstancemigrations$", delay_ms=1500, count=3)  # slow progress
    lab.add_fault(r"^/api/v1/nodes/node-1$", status=500, count=1, method="PATCH")
    spec, text = drain_spec(lab, tmp_path, mode={"keep_cordoned": True})
    verdict = drill(spec, text)

    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    assert lab.api("GET", "/lab/v1/faults")["faults"] == [], "every injected fault was met"
    where = _assert_every_vm_running_once_and_nothing_in_flight(lab)
    assert "node-1" not in where.values()
    assert node(lab)["spec"].get("unschedulable") is True, "mode.keep_cordoned leaves the node cordoned"
    run_dir = Path(verdict.evidence_dir)
    comps = read_json(run_dir, "compensations.json")
    assert [c["state"] for c in comps if c["action"] == "uncordon"] == [CompensationState.NOT_NEEDED.value]
    # Throttling and server errors were retried, never taken for progress; evacuations registered once each.
    evictions = [json.loads(line)["detail"] for line in (run_dir / "timeline.jsonl").read_text().splitlines()
                 if '"kind":"eviction"' in line]
    assert sum(1 for e in evictions if e["answer"] == "retry") == 5
    assert sorted(c["params"]["vmi"] for c in comps if c["action"] == "cancel-evacuation") == \
        sorted(r.split("/")[1] for r in ALL)


@pytest.mark.usefixtures("prefect_harness")
def test_drain_out_of_budget_cancels_the_evacuations_and_uncordons(drain_lab, tmp_path):
    lab = drain_lab
    # Every evacuation attempt of app-vm-2 fails (KubeVirt keeps retrying it): the drain cannot finish.
    kubectl(lab, tmp_path, "annotate", "-n", "apps", "vmi/app-vm-2", "lab.livedrill.io/fail-at-phase=Running")
    # 2 s per VM on two lanes: a budget of 5 x 2 / 2 + 2 + 10 = 17 s.
    spec, text = drain_spec(lab, tmp_path, budgets={"migration_timeout_per_gib_s": 1, "min_migration_timeout_s": 1})
    verdict = drill(spec, text)

    assert verdict.outcome is DrillOutcome.FAILED
    assert any(r.startswith("drain.completed") and "deadline" in r for r in verdict.reasons), verdict.reasons
    assert any("vmi apps/app-vm-2" in c.subject for c in verdict.checks if c.name == "drain.vm" and c.status.value == "fail")
    where = _assert_every_vm_running_once_and_nothing_in_flight(lab)
    assert where["apps/app-vm-2"] == "node-1"
    assert not vmis(lab)["apps/app-vm-2"]["status"].get("evacuationNodeName"), "the evacuation was cancelled"
    assert not node(lab)["spec"].get("unschedulable"), "rollback uncordoned the node"
    comps = {(c["action"], c["params"].get("vmi")): c for c in read_json(Path(verdict.evidence_dir), "compensations.json")}
    assert comps[("cancel-evacuation", "app-vm-2")]["state"] == CompensationState.DONE.value
    assert "evacuation cancelled" in comps[("cancel-evacuation", "app-vm-2")]["outcome"]
    assert comps[("uncordon", None)]["state"] == CompensationState.DONE.value
    assert all(c["state"] in ("done", "not_needed") for c in comps.values())
    assert verify_run(Path(verdict.evidence_dir)) == []


@pytest.mark.usefixtures("prefect_harness")
def test_probe_breach_stops_the_drain_cancels_what_is_moving_and_uncordons(drain_lab, tmp_path):
    lab = drain_lab
    # 1.5 s of real freeze at banking-core-vm-2's stop-and-copy against a 500 ms downtime SLO.
    kubectl(lab, tmp_path, "annotate", "-n", "banking", "vmi/banking-core-vm-2", "lab.livedrill.io/extra-downtime-ms=1500")
    spec, text = drain_spec(lab, tmp_path, slo={"max_downtime_ms": 500})
    verdict = drill(spec, text)

    assert verdict.outcome is DrillOutcome.FAILED
    assert any(r.startswith("drain.completed") and "probe breach" in r for r in verdict.reasons), verdict.reasons
    _assert_every_vm_running_once_and_nothing_in_flight(lab)
    assert not any(v["status"].get("evacuationNodeName") for v in vmis(lab).values()), "no evacuation left running"
    assert not node(lab)["spec"].get("unschedulable"), "rollback uncordoned the node"
    comps = read_json(Path(verdict.evidence_dir), "compensations.json")
    assert all(c["state"] in ("done", "not_needed") for c in comps), comps
    assert verify_run(Path(verdict.evidence_dir)) == []


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("allow", [False, True])
def test_preflight_refuses_a_node_whose_vmi_cannot_live_migrate(drain_lab, tmp_path, allow):
    lab = drain_lab
    conditions = [{"type": "Ready", "status": "True"},
                  {"type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable",
                   "message": "PVC app-vm-3-rootdisk is not shared"}]
    kubectl(lab, tmp_path, "patch", "-n", "apps", "vmi/app-vm-3", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"conditions": conditions}}))
    spec, text = drain_spec(lab, tmp_path, mode={"allow_non_migratable": allow})
    verdict = drill(spec, text)

    assert verdict.outcome is DrillOutcome.FAILED
    [reason] = [r for r in verdict.reasons if r.startswith("drain.vmi-migratable")]
    # evictionStrategy LiveMigrate on a non-migratable VMI: every eviction is refused, so no flag can allow it.
    assert "DisksNotLiveMigratable" in reason and "could never finish" in reason
    assert not node(lab)["spec"].get("unschedulable") and vmims(lab) == [], "nothing changed"
    assert all(v["status"]["nodeName"] == "node-1" for v in vmis(lab).values())
    compensations = Path(verdict.evidence_dir) / "compensations.json"
    assert not compensations.exists() or json.loads(compensations.read_text()) == []


def _assert_valid_kubevirt_objects(objects: list[dict], definition: str) -> None:
    """What the drain preset serves is what KubeVirt's own OpenAPI allows."""
    from tests.kubevirt_openapi import validator as openapi_validator

    validator = openapi_validator(definition)
    for obj in objects:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
        assert not errors, (obj["metadata"]["name"], errors[:5])


def test_real_kubectl_drain_completes_the_same_evacuation(drain_lab, tmp_path):
    lab = drain_lab
    _assert_valid_kubevirt_objects(list(vmis(lab).values()), "v1.VirtualMachineInstance")
    adapter = KubeVirtAdapter(_platform(lab))
    try:
        on_node = KubeVirtDrain(adapter, cancel_timeout_s=20).pods_on("node-1")
        planned = {str(d.pod) for d in pods_to_drain(on_node, "node-1", ignore_daemonsets=True, delete_emptydir_data=True)}
    finally:
        adapter.close()
    refused = kubectl(lab, tmp_path, "drain", "node-1", "--ignore-daemonsets", "--timeout=20s", check=False)
    assert refused.returncode != 0 and "cannot delete Pods with local storage" in refused.stderr
    kubectl(lab, tmp_path, "uncordon", "node-1")

    done = kubectl(lab, tmp_path, "drain", "node-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=100s")

    assert "node/node-1 drained" in done.stdout
    assert "Eviction triggered evacuation of VMI" in done.stderr  # kubectl retries KubeVirt's 429
    evicted = set(re.findall(r"evicting pod (\S+)", done.stdout))
    assert evicted == planned, "kubectl evicted exactly the pods livedrill plans to evict"
    where = _assert_every_vm_running_once_and_nothing_in_flight(lab)
    assert sorted(where) == ALL and "node-1" not in where.values() and pods_on(lab) == []
    for ref, vmi in vmis(lab).items():
        assert not vmi["status"].get("evacuationNodeName")
        [moved_by] = [m for m in vmims(lab) if m["metadata"]["uid"] == vmi["status"]["migrationState"]["migrationUid"]]
        assert moved_by["metadata"]["name"].startswith("kubevirt-evacuation-")
        assert moved_by["metadata"]["annotations"]["kubevirt.io/evacuationMigration"] == "node-1"
        assert moved_by["status"]["phase"] == "Succeeded"
    assert sorted(f["vmi"] for f in lab.freezes() if f.get("pid")) == CORE, "both ledgers really frozen once"
    _assert_valid_kubevirt_objects(list(vmis(lab).values()), "v1.VirtualMachineInstance")
    _assert_valid_kubevirt_objects(vmims(lab), "v1.VirtualMachineInstanceMigration")


def _platform(lab):
    from livedrill.platforms.kubevirt.config import KubeVirtPlatform

    return KubeVirtPlatform(kind="kubevirt", kubeconfig=lab.kubeconfig, request_timeout_s=5)


def _evacuating(lab, drain: KubeVirtDrain, vmi: str) -> dict:
    launcher = next(p for p in pods_on(lab) if p["metadata"]["labels"].get("vm.kubevirt.io/name") == vmi)
    answer = drain.evict("apps", launcher["metadata"]["name"])
    assert answer.answer is EvictionAnswer.EVACUATION_TRIGGERED, answer
    assert drain.evict("apps", launcher["metadata"]["name"]).answer is EvictionAnswer.EVACUATION_IN_PROGRESS
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = [m for m in vmims(lab) if m["spec"]["vmiName"] == vmi and m.get("status", {}).get("phase") in
                   ("Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running")]
        if running:
            return running[0]
        time.sleep(0.05)
    raise AssertionError(f"no evacuation of {vmi} started")


def test_cancel_evacuation_through_the_subresource_and_without_it(drain_lab, tmp_path):
    lab = drain_lab
    # A slow evacuation (dirty rate close to the 64Mi/s bandwidth) stays cancellable for a while.
    for vm in ("app-vm-1", "app-vm-2"):
        kubectl(lab, tmp_path, "annotate", "-n", "apps", f"vmi/{vm}", "lab.livedrill.io/dirty-rate=48Mi")
    adapter = KubeVirtAdapter(_platform(lab))
    drain = KubeVirtDrain(adapter, cancel_timeout_s=20)
    try:
        undo = adapter.undo_actions(abort_timeout_s=20)
        assert {"uncordon", "cancel-evacuation", "cancel-migration"} <= set(undo)

        _evacuating(lab, drain, "app-vm-1")
        outcome = undo["cancel-evacuation"]({"namespace": "apps", "vmi": "app-vm-1", "node": "node-1"})
        assert outcome.startswith("evacuation cancelled; VM on node-1"), outcome
        assert not vmis(lab)["apps/app-vm-1"]["status"].get("evacuationNodeName")
        again = undo["cancel-evacuation"]({"namespace": "apps", "vmi": "app-vm-1", "node": "node-1"})
        assert again.startswith("no evacuation from node-1 to cancel"), "idempotent"

        # A cluster older than KubeVirt v1.8 answers 404 on evacuate/cancel: the migration is aborted,
        # but evacuationNodeName stays and KubeVirt would evacuate again: a human must decide.
        evacuation = _evacuating(lab, drain, "app-vm-2")
        lab.add_fault(r"/evacuate/cancel$", status=404, count=1)
        with pytest.raises(PlatformError, match="a human must decide"):
            drain.cancel_evacuation({"namespace": "apps", "vmi": "app-vm-2", "node": "node-1"})
        aborted = [m for m in vmims(lab) if m["metadata"]["name"] == evacuation["metadata"]["name"]]
        assert not aborted or aborted[0]["status"]["phase"] == "Failed", "the in-flight evacuation was aborted"
        assert vmis(lab)["apps/app-vm-2"]["status"].get("evacuationNodeName") == "node-1"
    finally:
        adapter.close()


@pytest.mark.usefixtures("prefect_harness")
def test_sigkill_mid_drain_then_recover_cancels_the_evacuations_and_uncordons(drain_lab, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from livedrill.cli import main
    from tests.drain.conftest import REPO

    lab = drain_lab
    # A 1Gi core VM takes ~16 s at 64Mi/s: the kill lands while it is still being evacuated.
    kubectl(lab, tmp_path, "annotate", "-n", "banking", "vmi/banking-core-vm", "lab.livedrill.io/memory=1Gi")
    spec, text = drain_spec(lab, tmp_path)
    (tmp_path / "drill.yaml").write_text(text)
    from prefect.settings import PREFECT_API_URL

    # The drill talks to this suite's Prefect API and runs in its own process group: killing it orphans nothing.
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_API_URL=PREFECT_API_URL.value())
    proc = subprocess.Popen([sys.executable, "-m", "livedrill.cli", "run", str(tmp_path / "drill.yaml")], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    archive = tmp_path / "evidence"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = list(archive.glob("*-lab-drain-*"))
            comps = runs and (runs[0] / "compensations.json").exists() and \
                json.loads((runs[0] / "compensations.json").read_text())
            if comps and sum(c["action"] == "cancel-evacuation" for c in comps) == 5:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        else:
            raise AssertionError("the drill never triggered the five evacuations")
    finally:
        proc.kill()
        proc.wait(timeout=30)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what the crash left of its group (the probe engine's child)
        except ProcessLookupError:
            pass
    run_dir = runs[0]
    assert node(lab)["spec"].get("unschedulable") is True, "killed while the node was cordoned"
    assert vmis(lab)["banking/banking-core-vm"]["status"].get("evacuationNodeName") == "node-1"

    assert main(["recover", run_dir.name, "--archive", str(archive)]) == 1  # the drill is judged FAILED
    assert not node(lab)["spec"].get("unschedulable"), "recovery uncordoned the node"
    where = _assert_every_vm_running_once_and_nothing_in_flight(lab)
    assert where["banking/banking-core-vm"] == "node-1", "its evacuation was cancelled, not finished"
    assert not any(v["status"].get("evacuationNodeName") for v in vmis(lab).values())
    comps = {(c["action"], c["params"].get("vmi")): c for c in read_json(run_dir, "compensations.json")}
    assert comps[("uncordon", None)]["state"] == CompensationState.DONE.value
    assert "evacuation cancelled; VM on node-1" in comps[("cancel-evacuation", "banking-core-vm")]["outcome"]
    assert all(c["state"] == CompensationState.DONE.value for c in comps.values()), comps
    assert verify_run(run_dir) == []
