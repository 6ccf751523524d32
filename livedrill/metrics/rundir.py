"""A drill's run directory turned into metric samples.

`load_run_dir` reads the files (I/O only); `drill_samples` is pure: the same records always give the
same samples, so a run sealed years ago re-exports exactly as it did live. Every sample is stamped
with when the drill measured it: the verdict at the run's end, a phase when the next one was
observed, a gap when it closed, a window's latency when the window ended.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from livedrill.errors import InputError
from livedrill.metrics.histogram import LatencyHistogram, series_histograms
from livedrill.metrics.samples import Sample
from livedrill.outcomes import Compensation, CompensationState, DrillOutcome, TimelineEvent, Verdict
from livedrill.platforms.base import MigrationPhase
from livedrill.probe.report import ProbeReport, SessionReport
from livedrill.spec import SLO, SpecError, VMName, VMRef, parse_spec

RUN_FILE = "run.json"
VERDICT_FILE = "verdict.json"
SPEC_FILE = "spec.yaml"
TIMELINE_FILE = "timeline.jsonl"
PROBE_REPORT_FILE = "probe/report.json"
COMPENSATIONS_FILE = "compensations.json"
OBJECTS_DIR = "objects"
# stages/migrate.py writes this object for each VM whose migration was created, in the drill's VM order.
_VMI_AT_START_SUFFIX = "-vmi-at-start.json"

LATENCY_QUANTILES = (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms"), ("1", "max_ms"))


class RunInfo(BaseModel):
    """The fields of run.json the exporter reads. Other keys are ignored on purpose: run.json is written by
    the finish stage and may grow, and an old run must still re-export."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    drill: str
    cluster: str
    platform: str
    mode: str
    vms: list[VMName]
    started_at: datetime
    ended_at: datetime
    outcome: DrillOutcome


class DrillRunRecords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: RunInfo
    verdict: Verdict
    slo: SLO | None = None
    timeline: list[TimelineEvent] = Field(default_factory=list)
    probes: SessionReport | None = None
    compensations: list[Compensation] = Field(default_factory=list)
    vms_started: list[str] = Field(default_factory=list)  # VMs whose migration was created, in drill order
    latency_histograms: dict[str, dict[str, LatencyHistogram]] = Field(default_factory=dict)  # probe -> window -> histogram


class PhaseSpan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: str
    entered_at: datetime
    left_at: datetime | None  # None for the last phase seen


class ObservedMigration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vm: str
    migration: str | None
    created_at: datetime
    source: str | None
    target: str | None
    phases: list[PhaseSpan]
    cancelled: bool = False

    @property
    def terminal(self) -> PhaseSpan | None:
        last = self.phases[-1] if self.phases else None
        return last if last is not None and last.phase in MigrationPhase.TERMINAL else None

    @property
    def succeeded(self) -> bool:
        terminal = self.terminal
        return terminal is not None and terminal.phase == MigrationPhase.SUCCEEDED and not self.cancelled


# ---------------------------------------------------------------- reading


def load_run_dir(run_dir: str | Path) -> DrillRunRecords:
    """Read a finished run (run.json and verdict.json present); optional files may be absent."""
    path = Path(run_dir)
    try:
        run = RunInfo.model_validate_json((path / RUN_FILE).read_bytes())
        verdict = Verdict.model_validate_json((path / VERDICT_FILE).read_bytes())
    except FileNotFoundError as exc:
        raise InputError(f"{path} is not a finished drill run: {Path(exc.filename).name} is missing") from exc
    except ValueError as exc:
        raise InputError(f"{path}: run.json or verdict.json is not a livedrill record: {exc}") from exc
    slo = None
    if (path / SPEC_FILE).exists():
        try:
            slo = parse_spec((path / SPEC_FILE).read_text(encoding="utf-8"), source=str(path / SPEC_FILE)).slo
        except SpecError:
            slo = None  # a spec from an older livedrill: the SLO series are left out, the rest exports
    timeline = []
    if (path / TIMELINE_FILE).exists():
        timeline = [TimelineEvent.model_validate_json(line)
                    for line in (path / TIMELINE_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
    probes = None
    histograms: dict[str, dict[str, LatencyHistogram]] = {}
    if (path / PROBE_REPORT_FILE).exists():
        probes = SessionReport.model_validate_json((path / PROBE_REPORT_FILE).read_bytes())
        for report in probes.probes:
            series = _series_path(path, report.series_file)
            if series is not None:
                histograms[report.name] = series_histograms(series)
    compensations = []
    if (path / COMPENSATIONS_FILE).exists():
        compensations = [Compensation.model_validate(e) for e in json.loads((path / COMPENSATIONS_FILE).read_text(encoding="utf-8"))]
    objects = {p.name for p in (path / OBJECTS_DIR).glob(f"*{_VMI_AT_START_SUFFIX}")} if (path / OBJECTS_DIR).is_dir() else set()
    vms_started = [str(vm) for vm in run.vms if f"{vm.namespace}-{vm.name}{_VMI_AT_START_SUFFIX}" in objects]
    return DrillRunRecords(run=run, verdict=verdict, slo=slo, timeline=timeline, probes=probes,
                           compensations=compensations, vms_started=vms_started, latency_histograms=histograms)


def _series_path(run_dir: Path, series_file: str) -> Path | None:
    """The probe engine records the series file's name; the file lives in the run's probe/ directory."""
    if not series_file:
        return None
    for candidate in (run_dir / series_file, run_dir / "probe" / Path(series_file).name):
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------- pure decisions


def quarter_of(when: datetime) -> str:
    when = when.astimezone(timezone.utc)
    return f"{when.year}-Q{(when.month - 1) // 3 + 1}"


def migrations_from_timeline(events: list[TimelineEvent], vms: list[VMRef], vms_started: list[str]) -> list[ObservedMigration]:
    """The migrations a drill observed, each with its phases, in the order they appeared.

    Targeted mode: phase events follow the `migration-created` event of the VM being migrated (one
    at a time); that VM is the event's own `vm` detail when present, else the n-th VM whose migration
    was started. Drain mode: KubeVirt creates the migrations, and each phase event names its
    `migration` and `vmi`; they run side by side, leaving the node the drill cordoned.
    Phases seen before any migration is known are ignored.
    """
    migrations: dict[str, ObservedMigration] = {}
    current: str | None = None  # the migration a phase event without a `migration` detail belongs to
    drained_node: str | None = None
    for event in sorted(events, key=lambda e: e.monotonic):
        detail = event.detail
        if event.source == "livedrill" and event.kind == "cordoned":
            drained_node = detail.get("node")
        elif event.source == "livedrill" and event.kind == "migration-created":
            index = len(migrations)
            key = str(detail.get("migration") or f"#{index}")
            vm = detail.get("vm") or (vms_started[index] if index < len(vms_started) else "unknown")
            migrations[key] = ObservedMigration(vm=vm, migration=detail.get("migration"), created_at=event.at,
                                                source=detail.get("source"), target=detail.get("target"), phases=[])
            current = key
        elif event.source == "platform" and event.kind == "phase":
            key = detail.get("migration") or current
            if key is None:
                continue
            if key not in migrations:  # created by the platform (a drain's evacuation): first seen now
                migrations[key] = ObservedMigration(vm=_vm_named(detail.get("vmi"), vms), migration=key, created_at=event.at,
                                                    source=drained_node, target=None, phases=[])
            _enter_phase(migrations[key], event)
        elif event.source == "livedrill" and event.kind == "cancel-requested":
            key = detail.get("migration") if detail.get("migration") in migrations else current
            if key is not None:
                migrations[key].cancelled = True
    return list(migrations.values())


def _enter_phase(migration: ObservedMigration, event: TimelineEvent) -> None:
    phase = str(event.detail.get("phase"))
    if migration.phases and migration.phases[-1].phase == phase:
        return
    if migration.phases:
        migration.phases[-1] = migration.phases[-1].model_copy(update={"left_at": event.at})
    migration.phases.append(PhaseSpan(phase=phase, entered_at=event.at, left_at=None))
    migration.source = migration.source or event.detail.get("source")
    migration.target = event.detail.get("target") or migration.target


def _vm_named(vmi: str | None, vms: list[VMRef]) -> str:
    """A drain's phase event names the VMI without its namespace: find it among the drill's VMs."""
    if not vmi:
        return "unknown"
    matches = [vm for vm in vms if vm.name == vmi]
    return str(matches[0]) if len(matches) == 1 else vmi


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def _probe_wall(report: ProbeReport, monotonic: float) -> datetime:
    return report.started_at + timedelta(seconds=monotonic - report.started_monotonic)


def _window_end(report: ProbeReport, window: str) -> float:
    start = report.window_marks.get(window)
    later = [t for t in report.window_marks.values() if start is not None and t > start]
    return min(later) if later else report.stopped_monotonic


def drill_samples(records: DrillRunRecords) -> list[Sample]:
    """Every metric sample of one drill run, labelled cluster, drill, run_id, mode, outcome, quarter (+ vm, node, ...)."""
    run = records.run
    base = {"cluster": run.cluster, "drill": run.drill, "run_id": run.run_id, "mode": run.mode,
            "platform": run.platform, "outcome": run.outcome.value, "quarter": quarter_of(run.started_at)}
    end_ms = _ms(run.ended_at)
    samples: list[Sample] = []

    def add(name: str, value: float, at_ms: int, **labels: str) -> None:
        samples.append(Sample(name=name, labels={**base, **labels}, value=value, timestamp_ms=at_ms))

    add("livedrill_drill_result", 1.0 if run.outcome is DrillOutcome.PASSED else 0.0, end_ms)
    add("livedrill_drill_end_time_seconds", run.ended_at.timestamp(), end_ms)
    add("livedrill_drill_duration_seconds", (run.ended_at - run.started_at).total_seconds(), end_ms)
    if records.verdict.observed_downtime_ms is not None:
        add("livedrill_drill_observed_downtime_seconds", records.verdict.observed_downtime_ms / 1000, end_ms)
    if records.slo is not None:
        add("livedrill_slo_max_downtime_seconds", records.slo.max_downtime_ms / 1000, end_ms)
        add("livedrill_slo_p99_latency_seconds", records.slo.p99_latency_ms / 1000, end_ms)
    for state in CompensationState:
        add("livedrill_rollback_actions", float(sum(c.state is state for c in records.compensations)), end_ms, state=state.value)

    nodes: dict[str, tuple[str, str]] = {}
    for m in migrations_from_timeline(records.timeline, run.vms, records.vms_started):
        node, target = m.source or "unknown", m.target or "unknown"
        nodes[m.vm] = (node, target)
        vm_labels = {"vm": m.vm, "node": node, "target_node": target}
        for span in m.phases:
            add("livedrill_migration_phase_start_offset_seconds", (span.entered_at - m.created_at).total_seconds(),
                _ms(span.entered_at), phase=span.phase, **vm_labels)
            if span.left_at is not None:
                add("livedrill_migration_phase_duration_seconds", (span.left_at - span.entered_at).total_seconds(),
                    _ms(span.left_at), phase=span.phase, **vm_labels)
        terminal = m.terminal
        if terminal is not None:
            add("livedrill_migration_duration_seconds", (terminal.entered_at - m.phases[0].entered_at).total_seconds(),
                _ms(terminal.entered_at), **vm_labels)
        ended = terminal.entered_at if terminal is not None else run.ended_at
        add("livedrill_migration_succeeded", 1.0 if m.succeeded else 0.0, _ms(ended), **vm_labels)

    for report in records.probes.probes if records.probes else []:
        node, _target = nodes.get(str(report.vm), ("unknown", "unknown"))
        labels = {"probe": report.name, "probe_kind": report.kind, "vm": str(report.vm), "node": node}
        stop_ms = _ms(_probe_wall(report, report.stopped_monotonic))
        for window, stats in report.windows.items():
            at_ms = _ms(_probe_wall(report, _window_end(report, window)))
            for quantile, field in LATENCY_QUANTILES:
                value = getattr(stats, field)
                if value is not None:
                    add("livedrill_probe_latency_quantile_seconds", value / 1000, at_ms, window=window, quantile=quantile, **labels)
            histogram = records.latency_histograms.get(report.name, {}).get(window)
            if histogram is not None:
                for bound, count in [*zip(histogram.bounds_s, histogram.cumulative), (float("inf"), histogram.count)]:
                    add("livedrill_probe_latency_seconds_bucket", float(count), at_ms, window=window,
                        le="+Inf" if bound == float("inf") else f"{bound:g}", **labels)
                add("livedrill_probe_latency_seconds_count", float(histogram.count), at_ms, window=window, **labels)
                add("livedrill_probe_latency_seconds_sum", histogram.sum_s, at_ms, window=window, **labels)
            add("livedrill_probe_requests", float(stats.ok), at_ms, window=window, result="ok", **labels)
            add("livedrill_probe_requests", float(stats.failed), at_ms, window=window, result="failed", **labels)
        for kind, count in report.failures_by_kind.items():
            add("livedrill_probe_failures", float(count), stop_ms, kind=kind, **labels)
        if report.longest_gap is not None:
            add("livedrill_probe_longest_gap_seconds", report.longest_gap.duration_ms / 1000,
                _ms(report.longest_gap.end_at), **labels)
        if report.longest_stall is not None:
            add("livedrill_probe_longest_stall_seconds", report.longest_stall.duration_ms / 1000,
                _ms(report.longest_stall.start_at) + round(report.longest_stall.duration_ms), **labels)
        add("livedrill_probe_abandoned", float(report.abandoned), stop_ms, **labels)
        add("livedrill_probe_gaps_above_threshold", float(report.gaps_above_threshold_total), stop_ms, **labels)
        for gap in report.gaps_above_threshold:
            add("livedrill_probe_gap_seconds", gap.duration_ms / 1000, _ms(gap.end_at), window="+".join(gap.windows), **labels)
        if report.kind == "transaction":
            add("livedrill_transactions_failed", float(report.failed), stop_ms, **labels)
        rec = report.reconciliation
        if rec is not None:
            rec_ms = stop_ms + round(rec.duration_s * 1000)
            add("livedrill_transactions_lost", float(rec.lost), rec_ms, **labels)
            add("livedrill_transactions_duplicated", float(rec.duplicated), rec_ms, **labels)
            add("livedrill_transactions_unverifiable", float(rec.unverifiable), rec_ms, **labels)
    return _one_value_per_instant(samples)


def _one_value_per_instant(samples: list[Sample]) -> list[Sample]:
    """Two values of one series at the same millisecond (two gaps closing together) keep the larger:
    stores refuse a second, different value for a timestamp they already hold."""
    kept: dict[tuple, Sample] = {}
    for s in samples:
        key = (s.series_key(), s.timestamp_ms)
        if key not in kept or s.value > kept[key].value:
            kept[key] = s
    return sorted(kept.values(), key=lambda s: (s.timestamp_ms, s.series_key()))


def samples_from_run_dir(run_dir: str | Path) -> list[Sample]:
    return drill_samples(load_run_dir(run_dir))
