"""SLO checks judged on a probe report: what an approver and an auditor read."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from livedrill.outcomes import CheckStatus
from livedrill.probe.report import GapRecord, ProbeReport, ReconciliationReport, SessionReport, WindowStats
from livedrill.spec import SLO

SLO_100 = SLO(max_downtime_ms=100, p99_latency_ms=5, max_failed_requests=0)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def window(name, p99, p99_outside=None, ok=100, failed=0):
    return WindowStats(window=name, start_monotonic=0.0, count=ok + failed, ok=ok, failed=failed, p50_ms=p99 / 2,
                       p95_ms=p99, p99_ms=p99, max_ms=p99 * 2, p99_outside_gaps_ms=p99 if p99_outside is None else p99_outside)


def report(gap_ms=40.0, p99=(1.0, 300.0, 1.0), p99_during_outside=2.0, failed=0, failures=None, rec=None, lag=1.0,
           pressure=None, ok=300):
    gap = GapRecord(duration_ms=gap_ms, start_monotonic=10.0, end_monotonic=10.0 + gap_ms / 1000, start_at=T0, end_at=T0,
                    windows=["during"])
    return ProbeReport(
        name="tx", kind="transaction", vm="banking/core", target="http://x/transfers", rate_per_s=1000.0,
        series_file="tx.series", started_at=T0, started_monotonic=0.0, stopped_monotonic=30.0,
        window_marks={"baseline": 0.0, "during": 10.0, "after": 20.0}, sent=ok + failed, ok=ok, failed=failed,
        windows={"baseline": window("baseline", p99[0]), "during": window("during", p99[1], p99_during_outside),
                 "after": window("after", p99[2])},
        longest_gap=gap if ok else None, gap_threshold_ms=10.0, gaps_above_threshold=[gap], gaps_above_threshold_total=1,
        failures_by_kind=failures or {}, in_flight_at_stop=0, unresolved_at_stop=0, max_send_lag_ms=lag,
        host_cpu_pressure_pct=pressure, reconciliation=rec,
    )


def rec(acked=300, lost=(), dup=(), unverifiable=0, exhausted=False):
    return ReconciliationReport(acknowledged=acked, verified=acked - len(lost) - len(dup) - unverifiable, lost=len(lost),
                                duplicated=len(dup), unverifiable=unverifiable, lost_ids=list(lost), duplicated_ids=list(dup),
                                unverifiable_ids=[], ids_listed_at_most=1000, budget_s=10.0, budget_exhausted=exhausted,
                                duration_s=0.1)


def statuses(r: ProbeReport, slo: SLO = SLO_100) -> dict[str, CheckStatus]:
    return {c.name: c.status for c in r.checks(slo)}


@pytest.mark.parametrize(
    "r, name, status, fragment",
    [
        (report(gap_ms=40), "slo.max-downtime", CheckStatus.PASS, "40.0 ms (during), within max_downtime_ms 100"),
        (report(gap_ms=140), "slo.max-downtime", CheckStatus.FAIL, "beyond max_downtime_ms 100"),
        (report(ok=0, failed=5, failures={"connect": 5}), "slo.max-downtime", CheckStatus.FAIL, "never observed available"),
        # the freeze's own slow requests do not count against p99: "during" is judged outside the gaps
        (report(p99=(1.0, 300.0, 1.0), p99_during_outside=2.0), "slo.p99-latency", CheckStatus.PASS, "during 2.00 ms"),
        (report(p99=(1.0, 300.0, 9.0)), "slo.p99-latency", CheckStatus.FAIL, "exceeded in after"),
        (report(failed=2, failures={"timeout": 2}), "slo.failed-requests", CheckStatus.FAIL, "timeout 2"),
        (report(rec=rec()), "slo.lost-transactions", CheckStatus.PASS, "0 of 300"),
        (report(rec=rec(lost=["t7"])), "slo.lost-transactions", CheckStatus.FAIL, "t7"),
        (report(rec=rec(unverifiable=3, exhausted=True)), "slo.lost-transactions", CheckStatus.FAIL, "budget ran out"),
        (report(rec=rec(dup=["t9"])), "slo.duplicated-transactions", CheckStatus.FAIL, "t9"),
        (report(lag=3.0, pressure=5.0), "probe.instrument-health", CheckStatus.PASS, "kept its schedule"),
        (report(lag=80.0), "probe.instrument-health", CheckStatus.WARN, "80.0 ms after its scheduled time"),
        (report(lag=3.0, pressure=60.0), "probe.instrument-health", CheckStatus.WARN, "60 %"),
    ],
)
def test_checks(r, name, status, fragment):
    check = {c.name: c for c in r.checks(SLO_100)}[name]
    assert check.status is status
    assert fragment in check.message


def test_no_reconciliation_checks_for_probes_without_transactions():
    assert "slo.lost-transactions" not in statuses(report(rec=None))


def test_session_report_downtime_and_breach():
    session = SessionReport(probes=[report(gap_ms=40), report(gap_ms=70)], breach="probe tx: no successful probe", breach_monotonic=12.0)
    assert session.observed_downtime_ms == 70
    names = [c.name for c in session.checks(SLO_100)]
    assert names.count("slo.max-downtime") == 2 and names[-1] == "probe.abort-signal"
    assert SessionReport(probes=[]).observed_downtime_ms is None
    # the report survives the JSON round trip the evidence and the probe process use
    assert SessionReport.model_validate_json(session.model_dump_json()) == session
