"""`livedrill programme plan --discover` on a lab cluster with deliberately broken core VMs: the ready VM is
planned, each broken one is a coverage exception with its reason, and the discovery writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from livedrill.cli import main
from livedrill.outcomes import ExitCode
from tests.preflight.conftest import readiness_lab  # noqa: F401 - the module-scoped lab fixture

pytestmark = pytest.mark.e2e

DRILLS = Path(__file__).resolve().parents[2] / "drills"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def programme_file(tmp_path: Path, kubeconfig: Path) -> Path:
    (tmp_path / "drill.yaml").write_text((DRILLS / "lab-targeted.yaml").read_text())
    path = tmp_path / "programme.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "programme", "name": "lab", "quarter": "2027Q1",
        "clusters": [{"name": "lab", "platform": {"kind": "kubevirt", "kubeconfig": str(kubeconfig),
                                                  "context": "livedrill-lab", "request_timeout_s": 5}}],
        "windows": {"timezone": "Asia/Shanghai",
                    "slots": [{"start": "2027-01-02T01:00", "end": "2027-01-02T05:00"}]},
        "drill": {"spec": "drill.yaml"}, "sign_off": {"roles": ["change-manager"]}}))
    return path


def test_discovered_vms_are_planned_or_listed_as_exceptions(readiness_lab, tmp_path, capsys):  # noqa: F811
    for method in WRITE_METHODS:  # a rule without a status only counts the requests it matches
        readiness_lab.add_fault(".", method=method, count=100000)
    try:
        armed = {r["method"]: r["count"] for r in readiness_lab.api("GET", "/lab/v1/faults")["faults"]}
        code = main(["programme", "plan", str(programme_file(tmp_path, readiness_lab.kubeconfig)), "--discover",
                     "--at", "2026-12-20T00:00+08:00", "--json"])
        after = {r["method"]: r["count"] for r in readiness_lab.api("GET", "/lab/v1/faults")["faults"]}
    finally:
        readiness_lab.api("DELETE", "/lab/v1/faults")
    out = capsys.readouterr()
    assert code == ExitCode.OK, out.err
    assert after == armed, "discovery sent a write request"
    plan = json.loads(out.out)
    planned = [v["vm"] for w in plan["windows"] for d in w["drills"] for v in d["vms"]]
    # a targeted drill needs no eviction strategy (only a drain does): core-no-eviction is drilled
    assert planned == [{"namespace": "banking", "name": n} for n in ("core-no-eviction", "core-ready")]
    exceptions = {f"{e['vm']['namespace']}/{e['vm']['name']}": e for e in plan["exceptions"]}
    assert set(exceptions) == {"banking/core-rwo-disk", "banking/core-bridge", "banking/core-zone-b"}
    assert all(e["kind"] == "not_migratable" and e["approved_by"] is None for e in exceptions.values())
    assert "DisksNotLiveMigratable" in exceptions["banking/core-rwo-disk"]["reason"]
    assert "InterfaceNotLiveMigratable" in exceptions["banking/core-bridge"]["reason"]
    assert "cordoned" in exceptions["banking/core-zone-b"]["reason"]
