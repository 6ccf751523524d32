"""The probe's findings as records for the verdict and the evidence, and the SLO checks judged on them."""

from __future__ import annotations

from datetime import datetime

from livedrill.outcomes import CheckResult, CheckStatus, Record
from livedrill.spec import SLO, VMName


# When the instrument warns about itself: sends later than this many probe periods (and this floor), or
# Linux CPU pressure above this share of the run.
INSTRUMENT_LAG_PERIODS = 5
INSTRUMENT_LAG_FLOOR_MS = 10.0
INSTRUMENT_CPU_PRESSURE_PCT = 20.0


class WindowStats(Record):
    """One window (baseline / during / after) of one probe; a probe belongs to the window it was scheduled in."""

    window: str
    start_monotonic: float | None
    count: int
    ok: int
    failed: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    p99_outside_gaps_ms: float | None = None  # p99 of the probes that did not overlap a listed gap


class GapRecord(Record):
    """A stretch without any success: from the last success to the next one (a transaction counts from its
    write's acknowledgement, any other probe from its answer; see measure.success_time)."""

    duration_ms: float
    start_monotonic: float
    end_monotonic: float
    start_at: datetime
    end_at: datetime
    windows: list[str]
    open: bool = False  # not closed by a success before sending stopped


class StallRecord(Record):
    """The longest any sent probe waited for its answer or its failure (TCP's retransmissions included): what
    a customer's transaction already in flight suffered. It can exceed the outage: a request sent into a
    switchover waits for TCP's retransmission timer (200 ms, doubling) after the path is back."""

    duration_ms: float
    seq: int
    outcome: str  # "ok" when it was answered in the end
    start_monotonic: float
    end_monotonic: float
    start_at: datetime
    windows: list[str]


class ReconciliationReport(Record):
    acknowledged: int
    verified: int
    lost: int
    duplicated: int
    unverifiable: int
    lost_ids: list[str]  # capped at `ids_listed_at_most`; the counts are complete
    duplicated_ids: list[str]
    unverifiable_ids: list[str]
    ids_listed_at_most: int
    budget_s: float
    budget_exhausted: bool  # ids not read before the budget ran out count as unverifiable
    duration_s: float
    details_file: str | None = None  # JSONL, one line per id that was not verified


class ProbeReport(Record):
    name: str
    kind: str
    vm: VMName
    target: str
    rate_per_s: float
    series_file: str
    started_at: datetime
    started_monotonic: float
    stopped_monotonic: float
    window_marks: dict[str, float]
    sent: int
    ok: int
    failed: int
    windows: dict[str, WindowStats]
    longest_gap: GapRecord | None
    gap_threshold_ms: float
    gaps_above_threshold: list[GapRecord]
    gaps_above_threshold_total: int
    failures_by_kind: dict[str, int]
    in_flight_at_stop: int
    unresolved_at_stop: int
    max_send_lag_ms: float  # how late the worst send left after its scheduled time (instrument health)
    longest_stall: StallRecord | None = None
    abandoned: int = 0  # hunters given up during an outage: never delivered, not failures (see probe.http1)
    host_cpu_pressure_pct: float | None = None  # share of the run some task waited for a CPU (Linux PSI), if known
    reconciliation: ReconciliationReport | None = None

    def checks(self, slo: SLO) -> list[CheckResult]:
        subject = f"probe {self.name} ({self.kind} -> {self.target}, vm {self.vm})"
        results = [self._downtime_check(slo, subject), self._stall_check(slo, subject), self._latency_check(slo, subject),
                   self._failures_check(slo, subject), self._instrument_check(subject)]
        if self.reconciliation is not None:
            results += self._reconciliation_checks(slo, subject)
        return results

    def _downtime_check(self, slo: SLO, subject: str) -> CheckResult:
        gap = self.longest_gap
        if self.ok == 0 or gap is None:
            return CheckResult(name="slo.max-downtime", status=CheckStatus.FAIL, subject=subject,
                               message="no probe succeeded: the service was never observed available",
                               evidence={"sent": self.sent, "failures_by_kind": self.failures_by_kind})
        status = CheckStatus.PASS if gap.duration_ms <= slo.max_downtime_ms else CheckStatus.FAIL
        verb = "within" if status is CheckStatus.PASS else "beyond"
        return CheckResult(
            name="slo.max-downtime", status=status, subject=subject,
            message=(f"outage (longest gap between successful probes) {gap.duration_ms:.1f} ms ({', '.join(gap.windows)}), "
                     f"{verb} max_downtime_ms {slo.max_downtime_ms:g}"),
            remedy=None if status is CheckStatus.PASS else "lower the migration's allowed downtime (max_downtime_ms / "
                   "bandwidth), or check the destination's network path; see the gap list in the evidence",
            evidence={"longest_gap": gap.model_dump(mode="json"), "gaps_above_threshold": self.gaps_above_threshold_total,
                      "gap_threshold_ms": self.gap_threshold_ms},
        )

    def _stall_check(self, slo: SLO, subject: str) -> CheckResult:
        """The longest wait of a probe already sent: judged only against an explicit max_stall_ms."""
        stall = self.longest_stall
        evidence = {"longest_stall": stall.model_dump(mode="json") if stall else None, "abandoned": self.abandoned,
                    "max_stall_ms": slo.max_stall_ms}
        if stall is None:
            return CheckResult(name="slo.max-stall", status=CheckStatus.NOT_APPLICABLE, subject=subject,
                               message="no probe was sent", evidence=evidence)
        figure = (f"longest stall of a request in flight {stall.duration_ms:.1f} ms (probe #{stall.seq}, {stall.outcome}, "
                  f"{', '.join(stall.windows)}; TCP retransmissions included)")
        if slo.max_stall_ms is None:  # reported beside the outage; only an explicit limit can fail a drill on it
            return CheckResult(name="slo.max-stall", status=CheckStatus.PASS, subject=subject,
                               message=f"{figure}; no max_stall_ms set (reported, not judged)", evidence=evidence)
        status = CheckStatus.PASS if stall.duration_ms <= slo.max_stall_ms else CheckStatus.FAIL
        return CheckResult(
            name="slo.max-stall", status=status, subject=subject,
            message=f"{figure}, {'within' if status is CheckStatus.PASS else 'beyond'} max_stall_ms {slo.max_stall_ms:g}",
            remedy=None if status is CheckStatus.PASS else "packets were lost at the switchover and TCP waited for its "
                   "retransmission timer: check the hosts' network path (frames sent to the old port), a lower TCP rto_min "
                   "on the route, or a gateway that retries on a fresh connection",
            evidence=evidence)

    def _latency_check(self, slo: SLO, subject: str) -> CheckResult:
        # The SLO is p99 outside stop-and-copy: baseline and after in full, "during" without the gap-overlapping probes.
        figures = {}
        for name, w in self.windows.items():
            p99 = w.p99_outside_gaps_ms if name == "during" else w.p99_ms
            if p99 is not None:
                figures[name] = p99
        if not figures:
            return CheckResult(name="slo.p99-latency", status=CheckStatus.FAIL, subject=subject,
                               message="no successful probe, so no latency to judge")
        worst_window = max(figures, key=figures.get)
        worst = figures[worst_window]
        status = CheckStatus.PASS if worst <= slo.p99_latency_ms else CheckStatus.FAIL
        shown = ", ".join(f"{k} {v:.2f} ms" for k, v in figures.items())
        return CheckResult(
            name="slo.p99-latency", status=status, subject=subject,
            message=f"p99 latency {shown} (during: outside gaps); limit {slo.p99_latency_ms:g} ms"
                    + ("" if status is CheckStatus.PASS else f", exceeded in {worst_window}"),
            evidence={"p99_ms": figures, "windows": {k: w.model_dump(mode="json") for k, w in self.windows.items()}},
        )

    def _failures_check(self, slo: SLO, subject: str) -> CheckResult:
        status = CheckStatus.PASS if self.failed <= slo.max_failed_requests else CheckStatus.FAIL
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.failures_by_kind.items())) or "none"
        return CheckResult(
            name="slo.failed-requests", status=status, subject=subject,
            message=f"{self.failed} of {self.sent} probes failed ({kinds}); limit {slo.max_failed_requests}",
            evidence={"failures_by_kind": self.failures_by_kind, "sent": self.sent,
                      "in_flight_at_stop": self.in_flight_at_stop, "unresolved_at_stop": self.unresolved_at_stop},
        )

    def _instrument_check(self, subject: str) -> CheckResult:
        """Was the instrument itself on time? A late probe process stretches gaps and latencies."""
        allowed_lag_ms = max(INSTRUMENT_LAG_FLOOR_MS, INSTRUMENT_LAG_PERIODS * 1000.0 / self.rate_per_s)
        problems = []
        if self.max_send_lag_ms > allowed_lag_ms:
            problems.append(f"a probe left {self.max_send_lag_ms:.1f} ms after its scheduled time (allowed {allowed_lag_ms:g} ms)")
        if self.host_cpu_pressure_pct is not None and self.host_cpu_pressure_pct > INSTRUMENT_CPU_PRESSURE_PCT:
            problems.append(f"tasks on this host waited for a CPU {self.host_cpu_pressure_pct:.0f} % of the run")
        return CheckResult(
            name="probe.instrument-health", status=CheckStatus.WARN if problems else CheckStatus.PASS, subject=subject,
            message=("the probe was starved: " + "; ".join(problems) + "; gaps and latencies may be overstated by up to"
                     f" {self.max_send_lag_ms:.0f} ms") if problems else
                    f"the probe kept its schedule (worst send lag {self.max_send_lag_ms:.1f} ms)",
            remedy="run the drill's probes on a host with spare CPU" if problems else None,
            evidence={"max_send_lag_ms": self.max_send_lag_ms, "host_cpu_pressure_pct": self.host_cpu_pressure_pct},
        )

    def _reconciliation_checks(self, slo: SLO, subject: str) -> list[CheckResult]:
        rec = self.reconciliation
        assert rec is not None
        evidence = rec.model_dump(mode="json")
        lost_ok = rec.lost <= slo.max_lost_transactions
        lost_msg = f"{rec.lost} of {rec.acknowledged} acknowledged transactions not found; limit {slo.max_lost_transactions}"
        if rec.lost:
            lost_msg += f"; first ids: {', '.join(rec.lost_ids[:5])}"
        if lost_ok and rec.unverifiable:
            # Zero loss cannot be claimed for what could not be read back.
            lost_ok = False
            lost_msg += f"; {rec.unverifiable} could not be verified" + (" (budget ran out)" if rec.budget_exhausted else "")
        dup_ok = rec.duplicated <= slo.max_duplicated_transactions
        dup_msg = f"{rec.duplicated} acknowledged transactions posted more than once; limit {slo.max_duplicated_transactions}"
        if rec.duplicated:
            dup_msg += f"; first ids: {', '.join(rec.duplicated_ids[:5])}"
        return [
            CheckResult(name="slo.lost-transactions", status=CheckStatus.PASS if lost_ok else CheckStatus.FAIL,
                        subject=subject, message=lost_msg, evidence=evidence,
                        remedy=None if lost_ok else "compare the listed ids with the core system's journal"),
            CheckResult(name="slo.duplicated-transactions", status=CheckStatus.PASS if dup_ok else CheckStatus.FAIL,
                        subject=subject, message=dup_msg, evidence={"duplicated": rec.duplicated,
                                                                    "duplicated_ids": rec.duplicated_ids},
                        remedy=None if dup_ok else "the idempotency key was not honoured; check the listed ids"),
        ]


class SessionReport(Record):
    probes: list[ProbeReport]
    breach: str | None = None
    breach_monotonic: float | None = None

    @property
    def observed_downtime_ms(self) -> float | None:
        """The longest gap over every probe (the outage): what the drill reports as observed downtime."""
        gaps = [p.longest_gap.duration_ms for p in self.probes if p.longest_gap is not None]
        return max(gaps) if gaps else None

    @property
    def observed_stall_ms(self) -> float | None:
        """The longest wait of any request in flight over every probe."""
        stalls = [p.longest_stall.duration_ms for p in self.probes if p.longest_stall is not None]
        return max(stalls) if stalls else None

    def checks(self, slo: SLO) -> list[CheckResult]:
        results = [c for p in self.probes for c in p.checks(slo)]
        if self.breach is not None:
            results.append(CheckResult(name="probe.abort-signal", status=CheckStatus.FAIL, subject="probes",
                                       message=f"stop condition fired during the migration: {self.breach}",
                                       evidence={"breach_monotonic": self.breach_monotonic}))
        return results
