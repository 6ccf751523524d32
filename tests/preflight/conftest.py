"""Lab fixtures for the pre-flight and readiness tests: real labs on ephemeral ports, real kubectl."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from livedrill_lab.manager import running_lab
from livedrill.outcomes import CheckResult
from livedrill.spec import DrillSpec

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
LIVEDRILL = REPO / ".venv" / "bin" / "livedrill"


@pytest.fixture
def lab(tmp_path):
    with running_lab(tmp_path) as info:
        yield info


@pytest.fixture(scope="module")
def readiness_lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("readiness"), preset="readiness") as info:
        yield info


def kubectl(lab, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([str(KUBECTL), "--kubeconfig", str(lab.kubeconfig), *args], capture_output=True, text=True,
                          timeout=60, input=stdin)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def kubectl_apply(lab, obj: dict) -> None:
    kubectl(lab, "apply", "-f", "-", stdin=json.dumps(obj))


def spec_data(lab, tmp_path, vm: str = "banking/banking-core-vm", **overrides) -> dict:
    namespace, name = vm.split("/")
    data = {
        "name": "preflight-test", "cluster": "lab",
        "platform": {"kind": "kubevirt", "kubeconfig": str(lab.kubeconfig), "context": "livedrill-lab",
                     "request_timeout_s": 5},
        "vms": [{"namespace": namespace, "name": name}],
        "mode": {"kind": "targeted", "target_node": "node-2"},
        "slo": {"max_downtime_ms": 500, "p99_latency_ms": 50},
        "budgets": {"migration_timeout_per_gib_s": 800, "warmup_s": 0.5, "cooldown_s": 0.5},
        "evidence": {"dir": str(tmp_path / "evidence"), "signing_key": str(tmp_path / "keys" / "signing.pem"),
                     "generate_lab_key": True},
    }
    data.update(overrides)
    return data


def write_spec(tmp_path, data: dict) -> Path:
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def preflight(spec: DrillSpec) -> dict[str, CheckResult]:
    """The adapter's KubeVirt checks of the spec's first VM, by name (reads only)."""
    from livedrill.platforms.kubevirt.adapter import KubeVirtAdapter

    adapter = KubeVirtAdapter(spec.platform)
    try:
        return {c.name: c for c in adapter.preflight(spec, spec.vms[0]).checks}
    finally:
        adapter.close()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(LIVEDRILL), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def today_in(zone: str) -> str:
    return datetime.now(ZoneInfo(zone)).date().isoformat()
