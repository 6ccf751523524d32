"""Fixtures for the KubeVirt lab tests: a real lab per test (ephemeral ports), the real kubernetes client, kubectl."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client, config

from livedrill_lab.manager import LabInfo, running_lab

KUBECTL = Path(sys.executable).parent / "kubectl"
KUBECTL_TIMEOUT_S = 60


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabInfo]:
    with running_lab(tmp_path) as info:
        yield info


@pytest.fixture
def api_client(lab: LabInfo) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(lab.kubeconfig), context=lab.context)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def kubectl(lab: LabInfo, tmp_path: Path):
    def run(*args: str, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(lab.kubeconfig), "--cache-dir", str(tmp_path / "kube-cache"), *args],
            input=input_text, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run
