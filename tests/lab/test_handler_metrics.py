"""The lab's virt-handler / virt-controller metrics: the series KubeVirt would export for each VMI and migration (pure),
and the lab's real `/metrics` endpoint read with prometheus_client's own text parser while a migration runs."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livedrill_lab.kube.handler_metrics import Series, exposition, migration_phase_series, vmi_series
from livedrill_lab.kube.precopy import PrecopyInputs, plan_precopy, transfer_at
from tests.lab.test_migration import create_vmim, wait_phase
from tests.lab_helpers import annotate_vmi

pytestmark = pytest.mark.e2e
MI = 1024**2
HTTP_TIMEOUT_S = 5.0


def vmi(phase="Running", node="node-1", state=None):
    return {"metadata": {"namespace": "banking", "name": "core-01"},
            "status": {"phase": phase, "nodeName": node, **({"migrationState": state} if state is not None else {})}}


IDS = {"node": "node-1", "namespace": "banking", "name": "core-01"}
STARTED = {"migrationUid": "u1", "startTimestamp": "2026-12-04T10:00:00Z", "completed": False, "failed": False}


@pytest.mark.parametrize("the_vmi, rate, names, expected", [
    # A running VMI that is not migrating: its dirty rate, in whole MiB/s as libvirt reports it.
    (vmi(), 6 * MI + 1000, {}, [Series("kubevirt_vmi_dirty_rate_bytes_per_second", IDS, 6.0 * MI)]),
    (vmi(), 0.5 * MI, {}, [Series("kubevirt_vmi_dirty_rate_bytes_per_second", IDS, 0.0)]),
    (vmi(phase="Scheduled"), 6 * MI, {}, []),  # not running: no dirty-rate calculation
    # Migrating: virt-handler skips the dirty rate; virt-controller reports the start, named after the VMIM.
    (vmi(state=STARTED), 6 * MI, {"u1": "drill-x"},
     [Series("kubevirt_vmi_migration_start_time_seconds", {**IDS, "migration_name": "drill-x"}, 1796378400.0)]),
    # Done: the dirty rate again, and the end with its status (a VMIM already collected leaves the name empty).
    (vmi(node="node-2", state={**STARTED, "endTimestamp": "2026-12-04T10:00:05Z", "completed": True}), 6 * MI, {},
     [Series("kubevirt_vmi_dirty_rate_bytes_per_second", {**IDS, "node": "node-2"}, 6.0 * MI),
      Series("kubevirt_vmi_migration_start_time_seconds", {**IDS, "node": "node-2", "migration_name": ""}, 1796378400.0),
      Series("kubevirt_vmi_migration_end_time_seconds",
             {**IDS, "node": "node-2", "migration_name": "", "status": "succeeded"}, 1796378405.0)]),
    (vmi(state={**STARTED, "endTimestamp": "2026-12-04T10:00:05Z", "completed": True, "failed": True}), 0, {"u1": "m"},
     [Series("kubevirt_vmi_dirty_rate_bytes_per_second", IDS, 0.0),
      Series("kubevirt_vmi_migration_start_time_seconds", {**IDS, "migration_name": "m"}, 1796378400.0),
      Series("kubevirt_vmi_migration_end_time_seconds", {**IDS, "migration_name": "m", "status": "failed"},
             1796378405.0)]),
])
def test_vmi_series(the_vmi, rate, names, expected):
    assert vmi_series(the_vmi, rate, names) == expected


def vmim(name, phase):
    return {"metadata": {"name": name, "namespace": "banking"}, "spec": {"vmiName": "core-01"},
            "status": {"phase": phase} if phase else {}}


def test_migration_phase_counts_follow_virt_controller():
    series = migration_phase_series([vmim("a", "Pending"), vmim("b", ""), vmim("c", "TargetReady"), vmim("d", "Running"),
                                     vmim("e", "Scheduling"), vmim("f", "Succeeded"), vmim("g", "Failed")])
    counts = {s.name: s.value for s in series if not s.labels}
    assert counts == {"kubevirt_vmi_migrations_in_pending_phase": 1.0, "kubevirt_vmi_migrations_in_unset_phase": 1.0,
                      "kubevirt_vmi_migrations_in_running_phase": 2.0, "kubevirt_vmi_migrations_in_scheduling_phase": 1.0}
    ends = [(s.name, s.labels["vmim"]) for s in series if s.labels]
    assert ends == [("kubevirt_vmi_migration_succeeded", "f"), ("kubevirt_vmi_migration_failed", "g")]


def test_exposition_parses_and_leaves_empty_labels_out():
    text = exposition([Series("kubevirt_vmi_migration_end_time_seconds",
                              {"name": 'a"b', "namespace": "n", "migration_name": "", "status": "failed"}, 5.0),
                       Series("kubevirt_vmi_migrations_in_running_phase", {}, 1.0)])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [end] = families["kubevirt_vmi_migration_end_time_seconds"].samples
    assert end.labels == {"name": 'a"b', "namespace": "n", "status": "failed"} and end.value == 5.0
    assert families["kubevirt_vmi_migrations_in_running_phase"].type == "gauge"


def test_transfer_follows_the_precopy_iterations():
    """256 MiB at 64 MiB/s dirtied at 6 MiB/s: round 1 ends at 4 s with 24 MiB dirty, round 2 ends at 4.375 s."""
    inputs = PrecopyInputs(memory_bytes=256 * MI, dirty_rate_bytes_per_s=6 * MI, bandwidth_bytes_per_s=64 * MI,
                           max_downtime_ms=50, progress_timeout_s=150, completion_timeout_per_gib_s=800)
    plan = plan_precopy(inputs)
    assert transfer_at(inputs, plan, 0) == (0, 256 * MI)
    assert transfer_at(inputs, plan, 1) == (64 * MI, 192 * MI)
    assert transfer_at(inputs, plan, 4) == (256 * MI, 24 * MI)
    assert transfer_at(inputs, plan, plan.precopy_s) == (280 * MI, 2.25 * MI)
    assert transfer_at(inputs, plan, 60) == (280 * MI, 2.25 * MI)  # held at the stop-and-copy


# ---------------------------------------------------------------- the lab's endpoint


def scrape(lab) -> dict[str, list]:
    text = httpx.get(lab.metrics_url, timeout=HTTP_TIMEOUT_S).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def scrape_until(lab, done, timeout_s: float = 30.0) -> dict[str, list]:
    deadline = time.monotonic() + timeout_s
    while not done(seen := scrape(lab)):
        assert time.monotonic() < deadline, f"not seen within {timeout_s} s: {sorted(seen)}"
        time.sleep(0.05)
    return seen


def test_the_endpoint_reports_the_dirty_rate_and_a_running_migration(lab, custom):
    assert lab.metrics_url.startswith("http://127.0.0.1:") and lab.metrics_url.endswith("/metrics")
    [rate] = scrape(lab)["kubevirt_vmi_dirty_rate_bytes_per_second"]
    assert rate.labels == {"namespace": "banking", "name": "banking-core-vm", "node": "node-1"}
    assert rate.value == 6 * MI  # ControllerConfig.default_dirty_rate_bytes_per_s
    annotate_vmi(lab, "lab.livedrill.io/dirty-rate", "12Mi")
    [rate] = scrape(lab)["kubevirt_vmi_dirty_rate_bytes_per_second"]
    assert rate.value == 12 * MI

    name = create_vmim(custom)["metadata"]["name"]
    # The lab's preset caps a migration at 64 MiB/s: the 256 MiB guest takes over 4 s to copy, long enough to see.
    seen = scrape_until(lab, lambda m: "kubevirt_vmi_migration_start_time_seconds" in m
                        and "kubevirt_vmi_migration_data_processed_bytes" in m)
    assert "kubevirt_vmi_dirty_rate_bytes_per_second" not in seen  # virt-handler skips a migrating VMI
    [processed] = seen["kubevirt_vmi_migration_data_processed_bytes"]
    [remaining] = seen["kubevirt_vmi_migration_data_remaining_bytes"]
    assert processed.labels == {"namespace": "banking", "name": "banking-core-vm", "node": "node-1"}
    assert 0 <= processed.value and 0 < remaining.value <= 256 * MI
    assert [s.value for s in seen["kubevirt_vmi_migration_dirty_memory_rate_bytes"]] == [12 * MI]
    assert [s.value for s in seen["kubevirt_vmi_migration_memory_transfer_rate_bytes"]] == [64 * MI]
    assert [s.value for s in seen["kubevirt_vmi_migrations_in_running_phase"]] == [1.0]
    [start] = seen["kubevirt_vmi_migration_start_time_seconds"]
    assert start.labels["migration_name"] == name and abs(start.value - time.time()) < 60

    wait_phase(custom, name, {"Succeeded"})
    done = scrape(lab)
    assert "kubevirt_vmi_migration_data_processed_bytes" not in done
    [end] = done["kubevirt_vmi_migration_end_time_seconds"]
    assert end.labels == {"namespace": "banking", "name": "banking-core-vm", "node": "node-2", "migration_name": name,
                          "status": "succeeded"}
    [rate] = done["kubevirt_vmi_dirty_rate_bytes_per_second"]
    assert (rate.labels["node"], rate.value) == ("node-2", 12 * MI)
    assert [(s.labels["vmim"], s.value) for s in done["kubevirt_vmi_migration_succeeded"]] == [(name, 1.0)]
