"""A short smoke run of the drill's probes before approval: a dead or failing service refuses the drill."""

from __future__ import annotations

import time

from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.probe.engine import ProbeSession
from livedrill.stages.session import DrillSession

SMOKE_FILE = "probe-smoke.json"


def smoke_probes(session: DrillSession, seconds: float = 1.0) -> list[CheckResult]:
    spec = session.spec
    if not spec.probes:
        checks = [CheckResult(name="probe-smoke", status=CheckStatus.WARN, subject="probes",
                              message="the spec defines no probes: transaction continuity will not be measured")]
        session.run.write_json(SMOKE_FILE, checks)
        return checks
    probe = ProbeSession(spec.probes, spec.slo, session.run.stream_path("probe-smoke"))
    probe.start()
    try:
        time.sleep(seconds)
    finally:
        report = probe.stop()
    checks = []
    for probe_report in report.probes:
        ok, failed = probe_report.ok, probe_report.failed
        good = ok > 0 and failed == 0
        checks.append(CheckResult(
            name="probe-smoke", status=CheckStatus.PASS if good else CheckStatus.FAIL,
            subject=f"probe {probe_report.name} -> {probe_report.target}",
            message=f"{ok} ok, {failed} failed in {seconds:.1f}s" + ("" if good else ": the service does not answer as the probe expects"),
            remedy=None if good else "check the probe's URL and success criteria, and that the service is up",
            evidence={"sent": probe_report.sent, "ok": ok, "failed": failed, "failures_by_kind": probe_report.failures_by_kind}))
    session.run.write_json(SMOKE_FILE, checks)
    return checks
