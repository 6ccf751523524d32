"""`livedrill lab ...` as the operator runs it: the product runs the lab's own command line in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from livedrill.cli import main

LIVEDRILL = Path(sys.executable).parent / "livedrill"
CLI_TIMEOUT_S = 60


def livedrill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LIVEDRILL), *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def test_status_and_down_reach_the_running_lab(lab, tmp_path):
    state_dir = str(tmp_path / "lab")

    status = livedrill("lab", "status", "--state-dir", state_dir)
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == (f"lab running: API {lab.api_url}, kubeconfig {lab.kubeconfig}, "
                                     f"virt-handler metrics {lab.metrics_url}")
    assert httpx.get(lab.metrics_url, timeout=CLI_TIMEOUT_S).status_code == 200

    down = livedrill("lab", "down", "--state-dir", state_dir)
    assert (down.returncode, down.stdout.strip()) == (0, "lab down"), down.stderr
    assert not any(record.alive() for record in lab.processes)
    with pytest.raises(httpx.ConnectError):  # the metrics endpoint went with the lab
        httpx.get(lab.metrics_url, timeout=CLI_TIMEOUT_S)

    gone = livedrill("lab", "status", "--state-dir", state_dir)
    assert (gone.returncode, gone.stdout.strip()) == (1, "lab is not running")


def test_without_the_lab_package_the_command_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "livedrill_lab", None)  # what find_spec sees when it is not installed

    assert main(["demo", "--state-dir", str(tmp_path / "lab")]) == 2

    err = capsys.readouterr().err
    assert "livedrill_lab is not installed" in err and "pip install -e ./lab" in err
    assert not (tmp_path / "lab").exists()


def test_the_fleet_preset_starts_two_clusters_each_in_its_own_context_and_writes_their_programme(tmp_path):
    state_dir = tmp_path / "lab"
    up = livedrill("lab", "up", "--preset", "fleet", "--state-dir", str(state_dir))
    try:
        assert up.returncode == 0, up.stderr
        status = livedrill("lab", "status", "--state-dir", str(state_dir))
        assert status.returncode == 0 and status.stdout.count("running, API https://127.0.0.1:") == 2, status.stdout
        apis = set()
        for context in ("fleet-a", "fleet-b"):
            got = subprocess.run([str(LIVEDRILL.with_name("kubectl")), "--kubeconfig", str(state_dir / "kubeconfig"),
                                  "--context", context, "get", "vmi", "-A", "-o", "json"],
                                 capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
            assert got.returncode == 0, got.stderr
            vmis = {f"{v['metadata']['namespace']}/{v['metadata']['name']}": v for v in json.loads(got.stdout)["items"]}
            core = {k for k, v in vmis.items() if v["metadata"]["labels"].get("tier") == "core"}
            assert core == {f"banking/core-{i:02d}" for i in range(1, 13)} | {"banking/core-legacy"}
            assert {k for k in vmis if k.startswith("apps/")} == {"apps/app-vm-1", "apps/app-vm-2"}
            legacy = {c["type"]: c for c in vmis["banking/core-legacy"]["status"]["conditions"]}["LiveMigratable"]
            assert legacy["status"] == "False"
            addresses = {vmis[k]["metadata"]["annotations"]["lab.livedrill.io/ledger-address"] for k in core - {"banking/core-legacy"}}
            assert len(addresses) == 12
            for address in addresses:  # each VM's own ledger answers at its annotated address
                assert httpx.get(f"http://{address}/transfers/none", timeout=5).status_code == 404
            apis.add(json.loads(subprocess.run(
                [str(LIVEDRILL.with_name("kubectl")), "--kubeconfig", str(state_dir / "kubeconfig"), "config", "view",
                 "--context", context, "--minify", "-o", "json"], capture_output=True, text=True).stdout)["clusters"][0]["cluster"]["server"])
        assert len(apis) == 2  # two API servers, not one seen twice
        valid = livedrill("validate", str(state_dir / "lab-fleet.yaml"))
        assert valid.returncode == 0 and "2 cluster(s), 2 window(s)" in valid.stdout, valid.stdout + valid.stderr
    finally:
        down = livedrill("lab", "down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert livedrill("lab", "status", "--state-dir", str(state_dir)).returncode == 1
