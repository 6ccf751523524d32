"""What "safe" means after any drill, judged from the lab's API like an operator would."""

from __future__ import annotations

import json
from pathlib import Path

from livedrill.evidence.verify import verify_run

TERMINAL = {"Succeeded", "Failed"}


def assert_safe(lab, vmi: str = "banking-core-vm", namespace: str = "banking") -> str:
    """VM Running on exactly one node, every node schedulable, no migration in flight. Returns the VM's node."""
    obj = lab.api("GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{vmi}")
    assert obj["status"]["phase"] == "Running", obj["status"]
    node = obj["status"]["nodeName"]
    pods = lab.api("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
    launchers = [p for p in pods if p["metadata"].get("labels", {}).get("vm.kubevirt.io/name") == vmi
                 and p.get("status", {}).get("phase") == "Running"]
    assert [p["spec"]["nodeName"] for p in launchers] == [node], "exactly one running virt-launcher, on the VMI's node"
    for n in lab.api("GET", "/api/v1/nodes")["items"]:
        assert not n.get("spec", {}).get("unschedulable"), f"node {n['metadata']['name']} left cordoned"
    vmims = lab.api("GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstancemigrations")["items"]
    in_flight = [m["metadata"]["name"] for m in vmims if m.get("status", {}).get("phase") not in TERMINAL]
    assert not in_flight, f"migrations still in flight: {in_flight}"
    state = obj["status"].get("migrationState") or {}
    assert not state or state.get("completed"), f"the VMI still shows a migration in progress: {state}"
    return node


def assert_sealed_with(run_dir: Path, *words: str) -> dict:
    """The run is sealed, verifies, and its record mentions each of `words` (the fault and the actions)."""
    assert verify_run(run_dir) == [], verify_run(run_dir)
    verdict = json.loads((run_dir / "verdict.json").read_text())
    text = (run_dir / "verdict.json").read_text() + (run_dir / "timeline.jsonl").read_text()
    for word in words:
        assert word in text, f"{word!r} not recorded in {run_dir}"
    return verdict
