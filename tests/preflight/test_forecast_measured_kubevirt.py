"""`livedrill preflight` on the KubeVirt lab with `forecast: {dirty_rate_bytes_per_s: measure}`: the dirty rate comes
from a real Prometheus scraping the lab's virt-handler `/metrics` (metrics.kubevirt), so a guest the lab dirties
fast is refused and a quiet one passes, each with the scraped figure in the evidence; without metrics.kubevirt, or
with no such series in the store, the check warns and says why."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from livedrill.cli import main
from livedrill_lab.manager import running_lab
from tests.lab_helpers import annotate_vmi
from tests.metrics.stores import PROMETHEUS, prometheus
from tests.preflight.conftest import spec_data, write_spec

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (make sysdeps)")]
MI = 1024**2
SCRAPED_WITHIN_S = 30.0
HTTP_TIMEOUT_S = 5.0
MEASURE = {"dirty_rate_bytes_per_s": "measure"}
QUIET, BUSY = "banking/banking-core-vm", "banking/banking-core-vm-2"


def forecast_checks(tmp_path: Path) -> dict[str, dict]:
    [run] = [p for p in (tmp_path / "evidence").iterdir() if (p / "preflight.json").exists()]
    checks = json.loads((run / "preflight.json").read_text())["checks"]
    return {c["subject"].removeprefix("vm "): c for c in checks if c["name"] == "convergence-forecast"}


def wait_scraped(base_url: str, vms: tuple[str, ...]) -> None:
    deadline = time.monotonic() + SCRAPED_WITHIN_S
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base_url}/api/v1/query", params={"query": "kubevirt_vmi_dirty_rate_bytes_per_second"},
                           timeout=HTTP_TIMEOUT_S).json()
        if set(vms) <= {f"{r['metric']['namespace']}/{r['metric']['name']}" for r in answer["data"]["result"]}:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus at {base_url} had not scraped the dirty rate of {vms} in {SCRAPED_WITHIN_S} s")


def test_the_scraped_dirty_rate_refuses_the_busy_guest_and_passes_the_quiet_one(tmp_path):
    with running_lab(tmp_path, preset="drain") as lab:  # two core VMs with workloads on node-1
        # 64 MiB/s is the preset's bandwidthPerMigration: a guest dirtying that fast never converges. The other
        # keeps the lab's default 6 MiB/s (ControllerConfig.default_dirty_rate_bytes_per_s).
        annotate_vmi(lab, "lab.livedrill.io/dirty-rate", "64Mi", vmi=BUSY.split("/")[1])
        with prometheus(tmp_path / "prom", scrape_target=urlsplit(lab.metrics_url).netloc, job="kubevirt-lab") as store:
            wait_scraped(store.base_url, (QUIET, BUSY))
            codes = {}
            for vm in (QUIET, BUSY):  # a targeted drill migrates one VM: one pre-flight each
                (tmp_path / vm).mkdir(parents=True)
                data = spec_data(lab, tmp_path / vm, vm=vm, forecast=MEASURE,
                                 metrics={"kubevirt": {"url": store.base_url, "selector": {"job": "kubevirt-lab"}}})
                codes[vm] = main(["preflight", str(write_spec(tmp_path / vm, data))])
    assert codes == {QUIET: 0, BUSY: 1}
    quiet, busy = forecast_checks(tmp_path / QUIET)[QUIET], forecast_checks(tmp_path / BUSY)[BUSY]
    assert quiet["status"] == "pass", quiet["message"]
    assert quiet["evidence"]["inputs"]["dirty_rate_bytes_per_s"] == 6 * MI
    assert quiet["evidence"]["dirty_rate_reading"]["source"].startswith(f"{store.base_url}: max(max_over_time(")
    assert 'job="kubevirt-lab"' in quiet["evidence"]["dirty_rate_reading"]["source"]  # the spec's selector
    assert busy["status"] == "fail", busy["message"]
    assert busy["evidence"]["inputs"]["dirty_rate_bytes_per_s"] == 64 * MI
    assert "will not converge" in busy["message"] and busy["evidence"]["expected"]["ending"] == "no-progress"


def test_without_metrics_kubevirt_the_check_warns_that_it_is_not_set(lab, tmp_path):
    assert main(["preflight", str(write_spec(tmp_path, spec_data(lab, tmp_path, forecast=MEASURE)))]) == 0
    check = forecast_checks(tmp_path)[QUIET]
    assert check["status"] == "warn"
    assert check["message"].startswith("unknown: the dirty rate (could not measure it: metrics.kubevirt is not set")


def test_a_store_without_the_series_warns_naming_the_vm_and_the_store(lab, tmp_path):
    with prometheus(tmp_path / "prom") as store:  # scrapes nothing: no KubeVirt series at all
        data = spec_data(lab, tmp_path, forecast=MEASURE, metrics={"kubevirt": {"url": store.base_url}})
        assert main(["preflight", str(write_spec(tmp_path, data))]) == 0
    check = forecast_checks(tmp_path)[QUIET]
    assert check["status"] == "warn"
    assert (f"could not measure it: no kubevirt_vmi_dirty_rate_bytes_per_second series for {QUIET} at "
            f"{store.base_url} in the last 300 s") in check["message"]
