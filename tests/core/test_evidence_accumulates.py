"""A drill of several VMs (or with a return leg) migrates them one after another: each migration's probe
report and post-checks are added to the run's evidence, never written over the previous VM's."""

from __future__ import annotations

import json
from types import SimpleNamespace

from livedrill.evidence.archive import Archive
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.probe.report import SessionReport
from livedrill.stages.migrate import store_probe_report
from livedrill.stages.postcheck import POSTCHECK_FILE, record_postchecks


def _probe_report(name: str, breach: str | None = None) -> SessionReport:
    return SessionReport.model_validate({
        "probes": [{
            "name": name, "kind": "transaction", "vm": f"banking/{name}", "target": "http://x", "rate_per_s": 100.0,
            "series_file": f"{name}.series", "started_at": "2026-11-26T10:00:00Z", "started_monotonic": 1.0,
            "stopped_monotonic": 2.0, "window_marks": {}, "sent": 100, "ok": 100, "failed": 0, "windows": {},
            "longest_gap": None, "gap_threshold_ms": 50.0, "gaps_above_threshold": [], "gaps_above_threshold_total": 0,
            "failures_by_kind": {}, "in_flight_at_stop": 0, "unresolved_at_stop": 0, "max_send_lag_ms": 0.1,
            "reconciliation": None, "host_cpu_pressure_pct": None,
        }],
        "breach": breach, "breach_monotonic": 1.5 if breach else None,
    })


def test_probe_reports_and_postchecks_of_two_vms_are_both_kept(tmp_path):
    session = SimpleNamespace(run=Archive(tmp_path / "archive").new_run("two-vms"))
    store_probe_report(session, "probe/report.json", _probe_report("vm-a"))
    store_probe_report(session, "probe/report.json", _probe_report("vm-b", breach="probe vm-b: too slow"))
    report = SessionReport.model_validate_json((session.run.path / "probe" / "report.json").read_bytes())
    assert [p.name for p in report.probes] == ["vm-a", "vm-b"]
    assert report.breach == "probe vm-b: too slow" and report.breach_monotonic == 1.5

    record_postchecks(session, [CheckResult(name="vm-on-target", status=CheckStatus.PASS, message="a", subject="vm a")])
    record_postchecks(session, [CheckResult(name="vm-on-target", status=CheckStatus.FAIL, message="b", subject="vm b")])
    post = json.loads((session.run.path / POSTCHECK_FILE).read_text())
    assert [(c["subject"], c["status"]) for c in post] == [("vm a", "pass"), ("vm b", "fail")]
