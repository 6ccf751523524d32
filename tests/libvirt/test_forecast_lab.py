"""On the real libvirt lab: `forecast: {dirty_rate_bytes_per_s: measure}` makes the pre-flight measure the running
guest's dirty rate with QEMU (nothing migrates) and forecast its migration from that figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livedrill.spec import load_spec
from tests.libvirt.test_lab_e2e import make_adapter, other_host

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt]
MI = 1024**2


def preflight_with_forecast(info, tmp_path: Path, target: str, forecast: str) -> tuple[subprocess.CompletedProcess, Path, dict]:
    """`livedrill preflight` of the lab's drill towards `target` with `forecast` (YAML lines under `forecast:`);
    returns the command's result, the run's evidence dir and its convergence-forecast check."""
    text = Path(info.drill_spec).read_text().replace("target_node: host-b", f"target_node: {target}")
    drill_file = tmp_path / "drill.yaml"
    drill_file.write_text(text + "forecast:\n" + "".join(f"  {line.strip()}\n" for line in forecast.strip().splitlines()))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run([str(Path(sys.executable).with_name("livedrill")), "preflight", str(drill_file)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    [run] = [p for p in (tmp_path / "evidence").iterdir() if (p / "preflight.json").exists()]
    checks = {c["name"]: c for c in json.loads((run / "preflight.json").read_text())["checks"]}
    return done, run, checks["convergence-forecast"]


def test_preflight_measures_the_dirty_rate_and_forecasts_from_it(libvirt_lab, tmp_path):
    spec = load_spec(libvirt_lab.drill_spec)
    adapter = make_adapter(spec)
    try:
        before = adapter.describe_vm(spec.vms[0])
    finally:
        adapter.close()
    done, _, forecast = preflight_with_forecast(libvirt_lab, tmp_path, other_host(spec, before.node), """
        dirty_rate_bytes_per_s: measure
        bandwidth_bytes_per_s: 128Mi
        measure_window_s: 1""")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert forecast["status"] == "pass", forecast["message"]  # a warning would mean the rate was not measured
    inputs = forecast["evidence"]["inputs"]
    # QEMU's figure, in whole MiB/s: an idle ledger guest dirties far less than its 256 MiB per second.
    assert inputs["dirty_rate_bytes_per_s"] % MI == 0 and 0 <= inputs["dirty_rate_bytes_per_s"] < 256 * MI
    assert inputs["memory_bytes"] == before.memory_gib * 1024**3
    assert forecast["evidence"]["expected"]["migration_s"] >= 256 * MI / (128 * MI)  # at least one full round
    print(f"measured dirty rate {inputs['dirty_rate_bytes_per_s'] / MI:.0f} MiB/s (1 s window, TCG guest); "
          f"forecast: {forecast['message']}")


def test_a_guest_set_to_dirty_its_memory_is_measured_near_that_rate_and_refused_when_it_outruns_the_link(
        libvirt_lab, tmp_path):
    from livedrill_lab.libvirt.manager import set_guest_dirtying

    spec = load_spec(libvirt_lab.drill_spec)
    adapter = make_adapter(spec)
    try:
        before = adapter.describe_vm(spec.vms[0])
    finally:
        adapter.close()
    rate = 32 * MI
    assert set_guest_dirtying(libvirt_lab.ledger_url, rate, 128 * MI, 10) == {"bytes_per_s": rate,
                                                                               "working_set_bytes": 128 * MI}
    try:
        # a link slower than the guest dirties: the remainder never shrinks
        done, _, forecast = preflight_with_forecast(libvirt_lab, tmp_path, other_host(spec, before.node), """
            dirty_rate_bytes_per_s: measure
            bandwidth_bytes_per_s: 16Mi
            measure_window_s: 1""")
    finally:
        set_guest_dirtying(libvirt_lab.ledger_url, 0, 0, 10)
    measured = forecast["evidence"]["inputs"]["dirty_rate_bytes_per_s"]
    print(f"set {rate / MI:.0f} MiB/s, QEMU measured {measured / MI:.0f} MiB/s; {forecast['message']}")
    assert rate / 2 <= measured <= rate * 2, measured / MI
    assert done.returncode == 1 and forecast["status"] == "fail", forecast["message"]
    assert forecast["evidence"]["expected"]["ending"] == "no-progress"


def test_preflight_samples_the_touched_memory_that_qemu_then_sends(libvirt_lab, tmp_path):
    """`touched_memory_bytes: measure`: the pre-flight samples the running guest's pages (memoryPeek) for the ones
    holding data; the migration that follows sends about that much memory as normal pages (the rest as zero-page
    headers), so the forecast's first round is that figure, not the guest's whole 256 MiB."""
    from tests.libvirt.test_lab_e2e import wait_terminal

    spec = load_spec(libvirt_lab.drill_spec)
    adapter = make_adapter(spec)
    try:
        before = adapter.describe_vm(spec.vms[0])
        target = other_host(spec, before.node)
        done, run, forecast = preflight_with_forecast(libvirt_lab, tmp_path, target, """
            dirty_rate_bytes_per_s: 0
            bandwidth_bytes_per_s: 128Mi
            touched_memory_bytes: measure""")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        touched = forecast["evidence"]["inputs"]["touched_memory_bytes"]
        assert touched is not None and 0 < touched < 256 * MI, forecast["message"]
        assert f"{touched / MI:.0f} MiB of memory holding data" in forecast["message"]
        events = [json.loads(line) for line in (run / "timeline.jsonl").read_text().splitlines()]
        [sampled] = [e["detail"] for e in events if e["kind"] == "touched-memory"]
        assert sampled["sampled_pages"] == 256 and sampled["bytes"] == touched
        handle = adapter.start_migration(spec.vms[0], target, lambda action, params: None)
        obs, phases = wait_terminal(adapter, handle, budget_s=120)
        assert obs.succeeded, (phases, obs.failure_reason)
        sent = obs.raw["completed_job_stats"]["memory_normal_bytes"]
    finally:
        adapter.close()
    print(f"sampled {touched / MI:.1f} MiB holding data; QEMU sent {sent / MI:.1f} MiB as normal pages")
    assert abs(touched - sent) <= 0.25 * sent
