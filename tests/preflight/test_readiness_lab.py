"""`livedrill readiness` on a lab cluster with deliberately broken VMs: each problem named, reads only."""

from __future__ import annotations

import json

import pytest

from livedrill.outcomes import CheckStatus
from livedrill.spec import DrillSpec
from tests.preflight.conftest import kubectl, preflight, run_cli, spec_data, today_in, write_spec

pytestmark = pytest.mark.e2e

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Every kind the lab serves, to fingerprint the whole cluster state by resourceVersion.
KINDS = ["/api/v1/namespaces", "/api/v1/nodes", "/api/v1/pods", "/api/v1/persistentvolumeclaims", "/api/v1/events",
         "/apis/kubevirt.io/v1/virtualmachines", "/apis/kubevirt.io/v1/virtualmachineinstances",
         "/apis/kubevirt.io/v1/virtualmachineinstancemigrations", "/apis/kubevirt.io/v1/kubevirts",
         "/apis/migrations.kubevirt.io/v1alpha1/migrationpolicies"]
# What the scan must say about each broken VM of the `readiness` preset: (failing check, words).
BROKEN = {
    "banking/core-rwo-disk": ("live-migratable", ["DisksNotLiveMigratable", "PVC banking/core-rwo-disk-rootdisk"]),
    "banking/core-bridge": ("live-migratable", ["InterfaceNotLiveMigratable"]),
    "banking/core-no-eviction": ("eviction-strategy", ["evictionStrategy None"]),
    "banking/core-zone-b": ("target-node", ["node-4: cordoned"]),
}


def _readiness(lab, *extra: str):
    return run_cli("readiness", "--cluster", "livedrill-lab", "--kubeconfig", str(lab.kubeconfig), *extra)


def _fingerprint(lab) -> dict[str, str]:
    out = {}
    for path in KINDS:
        for item in lab.api("GET", path)["items"]:
            meta = item["metadata"]
            out[f"{path}/{meta.get('namespace', '')}/{meta['name']}"] = meta["resourceVersion"]
    return out


def _tripwire_counts(lab) -> dict[str, int]:
    return {rule["method"]: rule["count"] for rule in lab.api("GET", "/lab/v1/faults")["faults"]}


def test_readiness_names_each_problem_of_the_broken_vms(readiness_lab):
    done = _readiness(readiness_lab)
    assert done.returncode == 1, done.stderr
    text = done.stdout
    assert "banking/core-ready (on node-3): could be drilled today: yes" in text
    for vm in BROKEN:
        assert f"{vm} (on " in text and f"{vm} (on node-" in text
        line = next(line for line in text.splitlines() if line.startswith(vm + " "))
        assert line.endswith("could be drilled today: no"), line
    assert "cluster core-tier-isolation: fail" in text and "pod payments/core-ledger-container" in text

    report = json.loads(_readiness(readiness_lab, "--json").stdout)
    by_vm = {v["vm"]: v for v in report["vms"]}
    assert by_vm["banking/core-ready"]["ready"] and not by_vm["banking/core-ready"]["reasons"]
    for vm, (check, words) in BROKEN.items():
        failed = {c["name"]: c for c in by_vm[vm]["checks"] if c["status"] == "fail"}
        assert set(failed) == {check}, (vm, failed)
        for word in words:
            assert word in failed[check]["message"], failed[check]["message"]
        assert failed[check]["remedy"] and failed[check]["evidence"]
    isolation = next(c for c in report["cluster_checks"] if c["name"] == "core-tier-isolation")
    assert isolation["status"] == "fail"
    assert [v["name"] for v in isolation["evidence"]["violations"]] == ["core-ledger-container"]


def test_readiness_writes_nothing(readiness_lab):
    for method in WRITE_METHODS:  # a rule without a status only counts the requests it matches
        readiness_lab.add_fault(".", method=method, count=100000)
    try:
        before, armed = _fingerprint(readiness_lab), _tripwire_counts(readiness_lab)
        assert _readiness(readiness_lab).returncode == 1
        assert _readiness(readiness_lab, "--json", "--namespace", "banking").returncode == 1
        assert _tripwire_counts(readiness_lab) == armed, "the scan sent a write request"
        assert _fingerprint(readiness_lab) == before, "an object changed during the scan"
        # the tripwire does count writes: one label change is one PATCH
        kubectl(readiness_lab, "label", "-n", "payments", "pod/core-ledger-container", "audited=yes")
        assert _tripwire_counts(readiness_lab)["PATCH"] == armed["PATCH"] - 1
    finally:
        readiness_lab.api("DELETE", "/lab/v1/faults")


@pytest.mark.parametrize("vm, mode, check, words", [
    ("banking/core-rwo-disk", None, "live-migratable", ["PVC banking/core-rwo-disk-rootdisk", "ReadWriteMany"]),
    ("banking/core-bridge", None, "live-migratable", ["InterfaceNotLiveMigratable"]),
    ("banking/core-no-eviction", {"kind": "drain", "node": "node-2"}, "eviction-strategy", ["evictionStrategy None"]),
    ("banking/core-zone-b", {"kind": "targeted"}, "target-node", ["node-4: cordoned"]),
    ("banking/core-ready", {"kind": "targeted", "target_node": "node-4"}, "target-node", ["node-4", "cordoned"]),
])
def test_the_drill_gate_refuses_each_broken_vm(readiness_lab, tmp_path, vm, mode, check, words):
    overrides = {"mode": mode} if mode else {}
    checks = preflight(DrillSpec.model_validate(spec_data(readiness_lab, tmp_path, vm=vm, **overrides)))
    failing = {n for n, c in checks.items() if c.status is CheckStatus.FAIL}
    assert failing == {check}, failing
    for word in words:
        assert word in checks[check].message
    assert checks[check].remedy


def test_readiness_of_a_healthy_cluster_exits_0(lab):
    done = _readiness(lab)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "banking/banking-core-vm (on node-1): could be drilled today: yes" in done.stdout


def test_readiness_from_a_spec_judges_today_in_its_change_calendar(lab, tmp_path):
    data = spec_data(lab, tmp_path, schedule={"timezone": "Asia/Shanghai", "change_freeze": [
        {"start": today_in("Asia/Shanghai"), "reason": "month-end close"}]})
    done = run_cli("readiness", "--cluster", str(write_spec(tmp_path, data)), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert all(v["ready"] for v in report["vms"])  # the VM is fine; today is not
    freeze = next(c for c in report["cluster_checks"] if c["name"] == "change-freeze")
    assert freeze["status"] == "fail" and "month-end close" in freeze["message"]


@pytest.mark.parametrize("args, words", [
    (["--selector", "tier!=core"], "--selector"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig"),
])
def test_readiness_bad_input_exits_2(lab, args, words):
    done = run_cli("readiness", "--cluster", "livedrill-lab", *(["--kubeconfig", str(lab.kubeconfig)]
                                                                 if "--kubeconfig" not in args else []), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr


def test_readiness_of_a_broken_spec_or_an_unknown_context_exits_2(lab, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    done = run_cli("readiness", "--cluster", str(bad))
    assert done.returncode == 2 and "invalid drill spec" in done.stderr
    done = run_cli("readiness", "--cluster", "no-such-context", "--kubeconfig", str(lab.kubeconfig))
    assert done.returncode == 2 and "no-such-context" in done.stderr


def test_readiness_of_an_unreachable_cluster_exits_2(lab, tmp_path):
    import socket

    import yaml

    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = yaml.safe_load(lab.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    kubeconfig = tmp_path / "unreachable.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    done = run_cli("readiness", "--cluster", "livedrill-lab", "--kubeconfig", str(kubeconfig), "--request-timeout", "1")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "did not answer" in done.stderr
