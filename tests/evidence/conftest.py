"""Builders for realistic evidence runs: the records a drill writes, with the lab's core VM in them."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from livedrill.evidence.archive import Archive, EvidenceRun
from livedrill.evidence.keys import Signer
from livedrill.outcomes import (
    CheckResult,
    CheckStatus,
    Compensation,
    CompensationState,
    DrillOutcome,
    PreflightResult,
    TimelineEvent,
    Verdict,
)

SEED_USER_DATA = "#cloud-config\npassword: changeme\nchpasswd: { expire: False }\n"

SPEC_YAML = """\
name: lab-targeted
cluster: lab
platform:
  kind: kubevirt
  kubeconfig: /etc/livedrill/kubeconfig
vms:
  - namespace: banking
    name: banking-core-vm
mode:
  kind: targeted
  target_node: node-2
probes:
  - name: ledger
    vm: banking/banking-core-vm
    request:
      url: http://10.0.0.5:8080/transfer/{txid}
      headers:
        Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.payload.signature
slo:
  max_downtime_ms: 500
  p99_latency_ms: 50
"""


def seed_vmi(node: str = "node-1") -> dict:
    """The lab's banking-core-vm as a running VMI, cloud-init included three ways (plain, base64, annotation)."""
    vm_json = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "banking-core-vm", "namespace": "banking"},
        "spec": {"running": True, "template": {"spec": {"volumes": [{"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": SEED_USER_DATA}}]}}},
    }
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": "banking-core-vm",
            "namespace": "banking",
            "labels": {"app": "banking-core", "tier": "core"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(vm_json)},
        },
        "spec": {
            "evictionStrategy": "LiveMigrate",
            "domain": {
                "cpu": {"cores": 4, "dedicatedCpuPlacement": True, "model": "host-passthrough"},
                "resources": {"requests": {"memory": "8Gi", "cpu": "4"}},
                "devices": {"disks": [{"name": "disk0", "disk": {"bus": "virtio"}}, {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}]},
            },
            "volumes": [
                {"name": "disk0", "persistentVolumeClaim": {"claimName": "banking-core-pvc"}},
                {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": SEED_USER_DATA}},
                {"name": "cloudinit-b64", "cloudInitConfigDrive": {"userDataBase64": base64.b64encode(SEED_USER_DATA.encode()).decode()}},
            ],
        },
        "status": {
            "phase": "Running",
            "nodeName": node,
            "migrationMethod": "LiveMigration",
            "conditions": [{"type": "LiveMigratable", "status": "True"}],
        },
    }


def write_drill_evidence(run: EvidenceRun, *, series_bytes: int = 64 * 1024, passed: bool = True) -> None:
    """Every file the drill flow writes, with plausible contents."""
    t0 = datetime(2026, 11, 26, 15, 30, tzinfo=timezone.utc)
    run.write_text("spec.yaml", SPEC_YAML)
    run.write_json(
        "run.json",
        {
            "run_id": run.run_id,
            "drill": "lab-targeted",
            "cluster": "lab",
            "platform": "kubevirt",
            "started_at": t0,
            "ended_at": t0 + timedelta(seconds=42),
            "outcome": DrillOutcome.PASSED if passed else DrillOutcome.FAILED,
            "versions": {"livedrill": "0.1.0", "kubevirt": "v1.9.0", "kubernetes": "v1.34.1"},
            "operator": "ops-alice",
            "approval": {"approved_by": "cab-bob", "change_ticket": "CHG-2026-1126-07"},
        },
    )
    run.write_json(
        "preflight.json",
        PreflightResult(checks=[CheckResult(name="live-migratable", status=CheckStatus.PASS, message="LiveMigratable=True", subject="vmi banking/banking-core-vm", evidence={"vmi": seed_vmi()})]),
    )
    for i, phase in enumerate(["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]):
        run.append_jsonl("timeline.jsonl", TimelineEvent(at=t0 + timedelta(seconds=i), monotonic=1000.0 + i, source="vmim", kind="phase", detail={"phase": phase}))
    run.write_json("objects/vmi-before.json", seed_vmi("node-1"))
    run.write_json("objects/vmi-after.json", seed_vmi("node-2"))
    run.write_json(
        "objects/kubeconfig.json",
        {"users": [{"name": "drill", "user": {"token": "sha256~secrettoken", "client-key-data": "LS0tLS1CRUdJTi", "client-certificate-data": "LS0tLS1C"}}]},
    )
    # Incompressible, like a real packed latency series.
    run.stream_path("probe/ledger.series").write_bytes(os.urandom(series_bytes))
    run.write_json("probe/report.json", {"transactions": 4200, "lost": 0, "duplicated": 0, "p99_ms": 3.1, "longest_gap_ms": 48.0})
    run.write_json(
        "compensations.json",
        [Compensation(id=1, action="cancel-migration", params={"vmim": "drill-1"}, registered_at=t0, state=CompensationState.NOT_NEEDED)],
    )
    run.write_json("postcheck.json", [CheckResult(name="vm-running", status=CheckStatus.PASS, message="Running on node-2")])
    run.write_json(
        "verdict.json",
        Verdict(outcome=DrillOutcome.PASSED if passed else DrillOutcome.FAILED, observed_downtime_ms=48.0, evidence_dir=str(run.path)),
    )


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive")


def sealed_archive(root: Path, signer: Signer, runs: int = 4, *, start: datetime | None = None, step: timedelta = timedelta(hours=1)) -> list[str]:
    """An archive with `runs` sealed drills, one per `step`; returns run ids in seal order."""
    archive = Archive(root)
    start = start or datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)
    ids = []
    for i in range(runs):
        run = archive.new_run("lab-targeted", now=start + i * step)
        write_drill_evidence(run)
        run.seal(signer)
        ids.append(run.run_id)
    return ids
