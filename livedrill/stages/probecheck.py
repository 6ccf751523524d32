"""A short smoke run of the drill's probes before approval: a dead or failing service refuses the drill."""

from __future__ import annotations

import time

from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.probe.engine import ProbeSession
from livedrill.probe.threaded import ProbeLive
from livedrill.stages.session import DrillSession

SMOKE_FILE = "probe-smoke.json"


def smoke_settled(live: list[ProbeLive], successes: int) -> bool:
    """Pure: the smoke run's answer is known: a probe failed, or every probe has `successes` successes."""
    return bool(live) and (any(p.failed for p in live) or all(p.ok >= successes for p in live))


def smoke_probes(session: DrillSession) -> list[CheckResult]:
    spec = session.spec
    if not spec.probes:
        checks = [CheckResult(name="probe-smoke", status=CheckStatus.WARN, subject="probes",
                              message="the spec defines no probes: transaction continuity will not be measured")]
        session.run.write_json(SMOKE_FILE, checks)
        return checks
    budget_s, successes = spec.budgets.probe_smoke_s, spec.budgets.probe_smoke_successes
    poll_s = min(1.0 / p.rate_per_s for p in spec.probes)  # the fastest probe's period: nothing changes sooner
    # In this process: the smoke run judges answers, not gaps, so the stamping that needs the probe
    # engine's own process (livedrill.probe.process) does not matter here, and its start-up (an interpreter
    # and its imports, 0.5-1.3 s measured on 2 shared CPUs) would be most of the smoke run's time.
    probe = ProbeSession(spec.probes, spec.slo, session.run.stream_path("probe-smoke"), isolation="thread")
    probe.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < budget_s and not smoke_settled(probe.live(), successes):
            time.sleep(poll_s)
    finally:
        elapsed = time.monotonic() - started
        report = probe.stop()
    checks = []
    for probe_report in report.probes:
        ok, failed = probe_report.ok, probe_report.failed
        good = ok > 0 and failed == 0
        checks.append(CheckResult(
            name="probe-smoke", status=CheckStatus.PASS if good else CheckStatus.FAIL,
            subject=f"probe {probe_report.name} -> {probe_report.target}",
            message=f"{ok} ok, {failed} failed in {elapsed:.2f}s" + ("" if good else ": the service does not answer as the probe expects"),
            remedy=None if good else "check the probe's URL and success criteria, and that the service is up",
            evidence={"sent": probe_report.sent, "ok": ok, "failed": failed, "failures_by_kind": probe_report.failures_by_kind}))
    session.run.write_json(SMOKE_FILE, checks)
    return checks
