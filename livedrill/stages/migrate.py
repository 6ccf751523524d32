"""The migration stage: probes running, migration started, watched to a terminal phase, cancelled on breach or deadline."""

from __future__ import annotations

import time
import contextlib
from typing import Callable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from livedrill.decisions import LoopAction, migration_loop_action
from livedrill.outcomes import CheckResult, CheckStatus, CompensationState
from livedrill.platforms.base import MigrationHandle, MigrationObservation, PlatformAdapter, VMState
from livedrill.probe.engine import ProbeLive, ProbeSession
from livedrill.probe.report import SessionReport
from livedrill.progress import Countdown, MigrationPhaseSeen, ProbeFigures, Progress, ProgressEvent
from livedrill.spec import TargetedMode, VMName, VMRef, migration_deadline_s
from livedrill.stages.session import DrillSession

PROBE_REPORT_FILE = "probe/report.json"
RETURN_DIR = "probe/return"  # the return leg of `migrate_back`: its own series and report


class MigrationResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    started: bool
    vm: VMName
    leg: Literal["outbound", "return"] = "outbound"
    source: str | None = None
    target: str | None = None  # the requested node, then where the VM was seen to land
    migration: str | None = None  # platform id (VMIM name, libvirt job key)
    migration_uid: str | None = None
    phases_seen: list[str] = Field(default_factory=list)
    final_phase: str | None = None
    succeeded: bool = False
    cancel_reason: str | None = None  # "deadline", "probe breach: ...", "interrupted"
    cancel_outcome: str | None = None
    failure_reason: str | None = None
    checks: list[CheckResult] = Field(default_factory=list)  # baseline, migration outcome, probe SLOs
    observed_downtime_ms: float | None = None

    def labelled(self, checks: list[CheckResult]) -> list[CheckResult]:
        """Checks of this migration, their subject naming the return leg when it is one."""
        if self.leg == "outbound":
            return checks
        return [c.model_copy(update={"subject": f"{c.subject or self.vm} (return to {self.target})"}) for c in checks]

    def handle(self) -> MigrationHandle:
        return MigrationHandle(vm=self.vm, platform_id=self.migration or "",
                               source=self.source or "", target=self.target, uid=self.migration_uid)


def _say(progress: Progress | None, event: ProgressEvent) -> None:
    if progress:
        progress(event)


def baseline_check(live: list[ProbeLive], max_gap_ms: float) -> CheckResult:
    """Pure: was the warm-up healthy enough that a gap during the migration means something?"""
    problems = []
    for probe in live:
        if probe.ok == 0:
            problems.append(f"probe {probe.name}: no request succeeded during the warm-up")
        if probe.failed:
            problems.append(f"probe {probe.name}: {probe.failed} request(s) failed during the warm-up")
        if probe.last_gap_ms is not None and probe.last_gap_ms > max_gap_ms:
            problems.append(f"probe {probe.name}: a {probe.last_gap_ms:.0f} ms gap during the warm-up exceeds the SLO {max_gap_ms} ms")
    return CheckResult(
        name="probe-baseline", status=CheckStatus.FAIL if problems else CheckStatus.PASS, subject="probes",
        message="; ".join(problems) if problems else "warm-up healthy: " + ", ".join(f"{p.name} {p.ok} ok" for p in live),
        remedy="make the service healthy before drilling; a drill on a failing service proves nothing" if problems else None,
        evidence={"probes": [p.model_dump() for p in live]})


def run_migration(session: DrillSession, adapter: PlatformAdapter, vm: VMRef, before: VMState,
                  progress: Progress | None = None, return_to: str | None = None) -> MigrationResult:
    """Migrate `vm` to the spec's target, or with `return_to` back to that node (the return leg of migrate_back)."""
    spec = session.spec
    budgets = spec.budgets
    leg = "outbound" if return_to is None else "return"
    target = return_to if return_to is not None else spec.mode.target_node if isinstance(spec.mode, TargetedMode) else None
    result = MigrationResult(started=False, vm=vm, leg=leg, source=before.node, target=target)
    probes = [p for p in spec.probes if p.vm == vm]
    series_dir = session.run.stream_path("probe" if leg == "outbound" else RETURN_DIR)
    probe = ProbeSession(probes, spec.slo, series_dir, on_event=session.emit) if probes else None
    handle: MigrationHandle | None = None
    observation: MigrationObservation | None = None
    try:
        if probe:
            probe.start()
            session.event("probe", "window", window="baseline")
            _wait(budgets.warmup_s, probe, progress, "warm-up")
            check = baseline_check(probe.live(), spec.slo.max_downtime_ms)
            result.checks.append(check)
            if check.status is CheckStatus.FAIL:
                session.event("livedrill", "refused", reason=check.message)
                return result

        deadline = time.monotonic() + migration_deadline_s(spec.budgets, before.memory_gib)
        handle = adapter.start_migration(vm, target, session.journal.register)
        result.started, result.migration, result.migration_uid = True, handle.platform_id, handle.uid
        session.event("livedrill", "migration-created", migration=handle.platform_id, uid=handle.uid,
                      source=handle.source, target=target, leg=leg)
        session.run.write_json(f"objects/{_slug(vm, leg)}-vmi-at-start.json", adapter.describe_vm(vm).raw)
        if probe:
            probe.mark_window("during")
            session.event("probe", "window", window="during")

        with _watch(session, adapter, handle) as changed:
            observation = _follow(session, adapter, handle, result, probe, deadline, changed, progress)
    except BaseException as exc:
        # Never swallow cancellation: stop what is in flight, record it, then re-raise.
        if handle is not None and (observation is None or not observation.terminal) and result.cancel_reason is None:
            _cancel(session, adapter, handle, result, f"interrupted: {type(exc).__name__}")
        raise
    finally:
        if probe:
            if result.started:
                probe.mark_window("after")
                session.event("probe", "window", window="after")
                _wait(budgets.cooldown_s, probe, progress, "cool-down")
            report = probe.stop()
            store_probe_report(session, PROBE_REPORT_FILE if leg == "outbound" else f"{RETURN_DIR}/report.json", report)
            result.checks.extend(report.checks(spec.slo))
            result.observed_downtime_ms = report.observed_downtime_ms

    result.final_phase = observation.phase if observation else None
    result.succeeded = bool(observation and observation.succeeded and result.cancel_reason is None)
    result.failure_reason = observation.failure_reason if observation else None
    if result.succeeded and observation.target:
        result.target = observation.target
    result.checks.append(_migration_check(result))
    result.checks = result.labelled(result.checks)
    if observation is not None:
        session.run.write_json(f"objects/{_slug(vm, leg)}-after.json", observation.raw)
    return result


def store_probe_report(session: DrillSession, relpath: str, report: SessionReport) -> None:
    """Write the probes' report; a drill of several VMs migrates them one by one, so add to what is there."""
    previous = session.run.path / relpath
    if previous.exists():
        earlier = SessionReport.model_validate_json(previous.read_bytes())
        report = SessionReport(probes=earlier.probes + report.probes, breach=earlier.breach or report.breach,
                               breach_monotonic=earlier.breach_monotonic if earlier.breach else report.breach_monotonic)
    session.run.write_json(relpath, report)


def _follow(session: DrillSession, adapter: PlatformAdapter, handle: MigrationHandle, result: MigrationResult,
            probe: ProbeSession | None, deadline: float, changed: Callable[[float], bool],
            progress: Progress | None) -> MigrationObservation:
    """Observe, decide, act, until the migration is over: the loop of the migration stage."""
    while True:
        observation = adapter.observe_migration(handle)
        if not result.phases_seen or result.phases_seen[-1] != observation.phase:
            result.phases_seen.append(observation.phase)
            session.event("platform", "phase", phase=observation.phase, source=observation.source,
                          target=observation.target)
        _say(progress, MigrationPhaseSeen(phase=observation.phase, source=observation.source, target=observation.target,
                                          probes=probe_figures(probe.live()) if probe else []))
        action = migration_loop_action(terminal=observation.terminal, now=time.monotonic(), deadline=deadline,
                                       breach=bool(probe and probe.abort_event.is_set()))
        if action is LoopAction.FINISHED:
            return observation
        if action is not LoopAction.CONTINUE:
            reason = "deadline: the migration did not finish within its budget" if action is LoopAction.CANCEL_DEADLINE \
                else f"probe breach: {probe.breach}"
            _cancel(session, adapter, handle, result, reason)
            return adapter.observe_migration(handle)
        # Woken early by a watch event; the probe's abort signal is checked at least every poll interval.
        changed(adapter.poll_interval_s)


@contextlib.contextmanager
def _watch(session: DrillSession, adapter: PlatformAdapter, handle: MigrationHandle) -> Iterator[Callable[[float], bool]]:
    """The platform's change notification when it declares one (KubeVirt's watch), else a plain sleep."""
    watch = adapter.capabilities().watch
    if watch is None:
        yield lambda timeout_s: time.sleep(timeout_s) or False
        return
    with watch(handle) as w:
        try:
            yield w.wait
        finally:
            session.event("platform", "watch", **w.stats())


def _cancel(session: DrillSession, adapter: PlatformAdapter, handle: MigrationHandle, result: MigrationResult, reason: str) -> None:
    result.cancel_reason = reason
    session.event("livedrill", "cancel-requested", migration=handle.platform_id, reason=reason)
    entry = next((e for e in session.journal.pending() if e.action == "cancel-migration"
                  and e.params.get("name") == handle.platform_id), None)
    try:
        outcome = adapter.cancel_migration(handle, session.spec.budgets.abort_timeout_s)
    except Exception as exc:  # noqa: BLE001 - left pending in the journal; rollback/recover retries it
        result.cancel_outcome = f"cancel failed: {exc}"
        session.event("livedrill", "cancel-failed", migration=handle.platform_id, error=str(exc))
        return
    result.cancel_outcome = outcome
    if entry is not None:
        session.journal.settle(entry, CompensationState.DONE, outcome)
    session.event("livedrill", "cancelled", migration=handle.platform_id, outcome=outcome)


def _migration_check(result: MigrationResult) -> CheckResult:
    if result.succeeded:
        return CheckResult(name="migration", status=CheckStatus.PASS, subject=f"vm {result.vm}",
                           message=f"migration {result.migration} Succeeded ({' -> '.join(result.phases_seen)})")
    why = result.cancel_reason or result.failure_reason or f"ended in phase {result.final_phase}"
    detail = f"; cancel: {result.cancel_outcome}" if result.cancel_outcome else ""
    return CheckResult(name="migration", status=CheckStatus.FAIL, subject=f"vm {result.vm}",
                       message=f"migration {result.migration} did not succeed: {why}{detail}",
                       evidence={"phases_seen": result.phases_seen})


def probe_figures(live: list[ProbeLive]) -> list[ProbeFigures]:
    return [ProbeFigures(name=p.name, rate_per_s=p.rate_per_s, ok=p.ok, failed=p.failed, in_flight=p.in_flight,
                         last_gap_ms=p.last_gap_ms) for p in live]


def _wait(seconds: float, probe: ProbeSession, progress: Progress | None, stage: Literal["warm-up", "cool-down"]) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        _say(progress, Countdown(stage=stage, seconds_left=left, probes=probe_figures(probe.live())))
        time.sleep(min(0.25, left))


def _slug(vm: VMRef, leg: str = "outbound") -> str:
    return f"{vm.namespace}-{vm.name}" + ("" if leg == "outbound" else f"-{leg}")
