"""Sample drill runs written the way the drill stages write them: the evidence archive's own writer,
the real records (TimelineEvent, SessionReport/ProbeReport, Compensation, Verdict), a parseable spec,
and a sealed manifest. Every figure below is chosen here, so a test can say what the exporter and
the dashboards must show without asking the exporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.outcomes import (
    CheckResult, CheckStatus, Compensation, CompensationState, DrillOutcome, TimelineEvent, Verdict,
)
from livedrill.probe.report import GapRecord, ProbeReport, ReconciliationReport, SessionReport, WindowStats
from livedrill.probe.series import Outcome, SeriesWriter, Step

VM = "banking/banking-core-vm"
MONO0 = 5000.0  # CLOCK_MONOTONIC at the run's start (any value: only differences matter)
WARMUP_S = 5.0
COOLDOWN_S = 5.0
GAP_THRESHOLD_MS = 20.0
SERIES_FILE = "core-transfer.series"
TIMEOUT_MS = 1000.0
# Latencies of the successful probes of each window, cycled (none sits on a histogram bound).
PATTERN_MS = {"baseline": (0.9, 1.1, 1.4, 2.1, 4.0), "during": (1.2, 1.6, 3.1, 4.6, 48.0), "after": (0.7, 0.8, 1.3, 1.9, 3.5)}

SPEC = """\
name: {drill}
cluster: {cluster}
platform:
  kind: kubevirt
  request_timeout_s: 10
vms:
  - namespace: banking
    name: banking-core-vm
mode:
  kind: targeted
  target_node: {target}
probes:
  - name: core-transfer
    vm: banking/banking-core-vm
    kind: transaction
    rate_per_s: 200
    write:
      method: POST
      url: http://127.0.0.1:9/transfers
      json: {{id: "{{txid}}"}}
    read:
      url: http://127.0.0.1:9/transfers/{{txid}}
slo:
  max_downtime_ms: {slo_downtime_ms}
  p99_latency_ms: {slo_p99_ms}
evidence:
  dir: /var/lib/livedrill/evidence
"""


@dataclass(frozen=True)
class SampleGap:
    duration_ms: float
    end_s: float  # seconds after the migration was created
    window: str = "during"


@dataclass(frozen=True)
class SampleDrill:
    drill: str
    cluster: str
    started_at: datetime
    outcome: DrillOutcome
    source: str
    target: str
    phases: tuple[tuple[str, float], ...]  # (phase, seconds after the migration was created)
    gaps: tuple[SampleGap, ...]
    latency_ms: dict[str, tuple[float, float, float, float]]  # window -> p50, p95, p99, max
    requests: dict[str, tuple[int, int]]  # window -> ok, failed
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    cancelled: bool = False
    compensations: tuple[tuple[str, CompensationState], ...] = (("cancel-migration", CompensationState.NOT_NEEDED),)
    slo_downtime_ms: float = 100.0
    slo_p99_ms: float = 5.0

    # ------------------------------------------------ figures a test expects, from the definition above

    @property
    def created_at(self) -> datetime:
        return self.started_at + timedelta(seconds=WARMUP_S)

    @property
    def migration_end_s(self) -> float:
        return self.phases[-1][1]

    @property
    def ended_at(self) -> datetime:
        return self.created_at + timedelta(seconds=self.migration_end_s + COOLDOWN_S + 1.5)

    @property
    def observed_downtime_ms(self) -> float:
        return max(g.duration_ms for g in self.gaps)

    @property
    def quarter(self) -> str:
        return f"{self.started_at.year}-Q{(self.started_at.month - 1) // 3 + 1}"

    @property
    def failed_requests(self) -> int:
        return sum(failed for _ok, failed in self.requests.values())

    def latencies_ms(self, window: str) -> list[float]:
        """What the series file holds for the window's successful probes."""
        ok, _failed = self.requests[window]
        return [PATTERN_MS[window][i % len(PATTERN_MS[window])] for i in range(ok)]


def _at(drill: SampleDrill, seconds_after_creation: float) -> tuple[datetime, float]:
    return (drill.created_at + timedelta(seconds=seconds_after_creation),
            MONO0 + WARMUP_S + seconds_after_creation)


def write_sample_run(archive_root: Path, drill: SampleDrill, signer: Signer | None) -> Path:
    """Write one run directory, sealed when a signer is given (else left open, as before seal-evidence)."""
    run = Archive(archive_root).new_run(drill.drill, now=drill.started_at)
    run.write_text("spec.yaml", SPEC.format(drill=drill.drill, cluster=drill.cluster, target=drill.target,
                                            slo_downtime_ms=drill.slo_downtime_ms, slo_p99_ms=drill.slo_p99_ms))

    def event(at: tuple[datetime, float], source: str, kind: str, /, **detail) -> None:
        run.append_jsonl("timeline.jsonl", TimelineEvent(at=at[0], monotonic=at[1], source=source, kind=kind, detail=detail))

    event((drill.started_at, MONO0), "livedrill", "run-created", run_id=run.run_id)
    event((drill.started_at, MONO0), "probe", "window", window="baseline")
    event(_at(drill, 0.0), "livedrill", "migration-created", migration="kubevirt-drill-x1", uid="0000-1",
          source=drill.source, target=drill.target)
    run.write_json("objects/banking-banking-core-vm-vmi-at-start.json",
                   {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                    "metadata": {"namespace": "banking", "name": "banking-core-vm"}, "status": {"nodeName": drill.source}})
    for phase, offset in drill.phases:
        if drill.cancelled and phase == "Failed":
            event(_at(drill, offset - 0.05), "livedrill", "cancel-requested", migration="kubevirt-drill-x1", reason="probe breach")
        event(_at(drill, offset), "platform", "phase", phase=phase, source=drill.source, target=drill.target)

    during_mono = MONO0 + WARMUP_S
    after_mono = during_mono + drill.migration_end_s
    stopped_mono = after_mono + COOLDOWN_S
    started_wall = drill.started_at

    def gap_record(g: SampleGap) -> GapRecord:
        end_wall, end_mono = _at(drill, g.end_s)
        return GapRecord(duration_ms=g.duration_ms, start_monotonic=end_mono - g.duration_ms / 1000,
                         end_monotonic=end_mono, start_at=end_wall - timedelta(milliseconds=g.duration_ms),
                         end_at=end_wall, windows=[g.window])

    bounds = {"baseline": (MONO0, during_mono), "during": (during_mono, after_mono), "after": (after_mono, stopped_mono - 1.0)}
    _write_series(run.stream_path(f"probe/{SERIES_FILE}"), drill, bounds)
    gaps = [gap_record(g) for g in drill.gaps]
    windows = {}
    for name, (p50, p95, p99, mx) in drill.latency_ms.items():
        ok, failed = drill.requests[name]
        windows[name] = WindowStats(window=name, start_monotonic={"baseline": MONO0, "during": during_mono, "after": after_mono}[name],
                                    count=ok + failed, ok=ok, failed=failed, p50_ms=p50, p95_ms=p95, p99_ms=p99, max_ms=mx)
    sent = sum(ok + failed for ok, failed in drill.requests.values())
    ok_total = sum(ok for ok, _ in drill.requests.values())
    report = ProbeReport(
        name="core-transfer", kind="transaction", vm=VM, target="http://127.0.0.1:9/transfers", rate_per_s=200.0,
        series_file=SERIES_FILE, started_at=started_wall, started_monotonic=MONO0,
        stopped_monotonic=stopped_mono, window_marks={"baseline": MONO0, "during": during_mono, "after": after_mono},
        sent=sent, ok=ok_total, failed=drill.failed_requests, windows=windows,
        longest_gap=max(gaps, key=lambda g: g.duration_ms), gap_threshold_ms=GAP_THRESHOLD_MS,
        gaps_above_threshold=[g for g in gaps if g.duration_ms > GAP_THRESHOLD_MS],
        gaps_above_threshold_total=sum(g.duration_ms > GAP_THRESHOLD_MS for g in gaps),
        failures_by_kind=dict(drill.failures_by_kind), in_flight_at_stop=0, unresolved_at_stop=0, max_send_lag_ms=0.4,
        reconciliation=ReconciliationReport(
            acknowledged=ok_total, verified=ok_total - drill.lost, lost=drill.lost, duplicated=drill.duplicated,
            unverifiable=0, lost_ids=[f"tx-{i}" for i in range(drill.lost)], duplicated_ids=[f"tx-d{i}" for i in range(drill.duplicated)],
            unverifiable_ids=[], ids_listed_at_most=100, budget_s=30.0, budget_exhausted=False, duration_s=1.5),
    )
    run.write_json("probe/report.json", SessionReport(probes=[report]).model_dump(mode="json"))
    run.write_json("compensations.json", [
        Compensation(id=i + 1, action=action, params={"name": "kubevirt-drill-x1"}, registered_at=_at(drill, 0.0)[0],
                     state=state, outcome=None if state is CompensationState.PENDING else state.value).model_dump(mode="json")
        for i, (action, state) in enumerate(drill.compensations)])
    passed = drill.outcome is DrillOutcome.PASSED
    verdict = Verdict(outcome=drill.outcome, reasons=[] if passed else ["sample failure"],
                      checks=[CheckResult(name="migration", status=CheckStatus.PASS if passed else CheckStatus.FAIL, message="sample")],
                      observed_downtime_ms=drill.observed_downtime_ms, evidence_dir=str(run.path))
    event((drill.ended_at, stopped_mono + 1.5), "livedrill", "verdict", outcome=drill.outcome.value, reasons=verdict.reasons)
    run.write_json("verdict.json", verdict.model_dump(mode="json"))
    run.write_json("run.json", {
        "run_id": run.run_id, "drill": drill.drill, "cluster": drill.cluster, "platform": "kubevirt", "mode": "targeted",
        "vms": [VM], "started_at": drill.started_at.isoformat(), "ended_at": drill.ended_at.isoformat(),
        "outcome": drill.outcome.value, "operator": "ops-alice", "livedrill_version": "0.1.0"})
    if signer is not None:
        run.seal(signer)
    return run.path


def _write_series(path: Path, drill: SampleDrill, bounds: dict[str, tuple[float, float]]) -> None:
    """The probe's binary series as the engine writes it: window marks, then each probe spaced evenly
    over its window (successes with the window's latencies, failures as timeouts)."""
    writer = SeriesWriter(path, {"probe": "core-transfer", "kind": "transaction", "first_send_monotonic": MONO0},
                          (drill.started_at.timestamp(), MONO0))
    seq = 0
    try:
        for window, (start, end) in bounds.items():
            writer.mark(window, start)
            latencies = drill.latencies_ms(window)
            failed = drill.requests[window][1]
            total = len(latencies) + failed
            for i in range(total):
                t_sched = start + (end - start) * i / total
                if i < len(latencies):
                    writer.append(seq, t_sched, t_sched, t_sched + latencies[i] / 2000, t_sched + latencies[i] / 1000,
                                  Outcome.OK, Step.READ, 200)
                else:
                    writer.append(seq, t_sched, t_sched, None, t_sched + TIMEOUT_MS / 1000, Outcome.TIMEOUT, Step.WRITE, 0)
                seq += 1
    finally:
        writer.close()


OK_PHASES = (("Pending", 0.0), ("Scheduling", 0.4), ("Scheduled", 1.6), ("PreparingTarget", 2.0),
             ("TargetReady", 4.2), ("Running", 4.5), ("Succeeded", 19.5))
LATENCY = {"baseline": (1.1, 2.0, 2.9, 4.0), "during": (1.4, 3.1, 4.6, 48.0), "after": (1.0, 1.9, 2.7, 3.5)}
UTC = timezone.utc

# A year of quarterly drills of one cluster, and one drill of another cluster (that filters must exclude).
QUARTERLY = [
    SampleDrill("banking-core-quarterly", "prod-core-a", datetime(2026, 2, 10, 9, 0, tzinfo=UTC), DrillOutcome.PASSED,
                "node-1", "node-2", OK_PHASES, (SampleGap(48.0, 19.2), SampleGap(22.0, 12.0)), LATENCY,
                {"baseline": (1000, 0), "during": (2890, 0), "after": (1000, 0)}),
    SampleDrill("banking-core-quarterly", "prod-core-a", datetime(2026, 5, 12, 9, 30, tzinfo=UTC), DrillOutcome.FAILED,
                "node-2", "node-3", OK_PHASES, (SampleGap(180.0, 19.3), SampleGap(45.0, 6.0)), LATENCY,
                {"baseline": (1000, 0), "during": (2880, 12), "after": (1000, 0)},
                failures_by_kind={"timeout": 12}, lost=2,
                compensations=(("cancel-migration", CompensationState.NOT_NEEDED), ("restore-labels", CompensationState.DONE))),
    SampleDrill("banking-core-quarterly", "prod-core-a", datetime(2026, 8, 20, 14, 0, tzinfo=UTC), DrillOutcome.FAILED,
                "node-3", "node-1",
                (("Pending", 0.0), ("Scheduling", 0.5), ("Scheduled", 1.7), ("PreparingTarget", 2.2),
                 ("TargetReady", 4.0), ("Running", 4.4), ("Failed", 11.0)),
                (SampleGap(350.0, 10.9), SampleGap(40.0, 8.0)), LATENCY,
                {"baseline": (1000, 0), "during": (1300, 30), "after": (1000, 0)},
                failures_by_kind={"timeout": 20, "connect": 10}, cancelled=True,
                compensations=(("cancel-migration", CompensationState.DONE),)),
    SampleDrill("banking-core-quarterly", "prod-core-a", datetime(2026, 11, 3, 10, 0, tzinfo=UTC), DrillOutcome.PASSED,
                "node-1", "node-3", OK_PHASES, (SampleGap(62.0, 19.25), SampleGap(35.0, 19.28), SampleGap(25.0, 3.0)),
                LATENCY, {"baseline": (1000, 0), "during": (2895, 0), "after": (1000, 0)}, duplicated=1),
    SampleDrill("banking-core-quarterly", "prod-core-b", datetime(2026, 11, 10, 10, 0, tzinfo=UTC), DrillOutcome.PASSED,
                "b-node-1", "b-node-2", OK_PHASES, (SampleGap(30.0, 19.2),), LATENCY,
                {"baseline": (1000, 0), "during": (2890, 0), "after": (1000, 0)}),
]
