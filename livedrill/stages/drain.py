"""The drain stage: cordon the node, evict its pods (KubeVirt's 429 is progress), wait until every VMI has left,
with the probes of every core VM on the node running at once; then a verdict per VM and for the drain.

Compensations are registered no later than the side effect can have happened: "uncordon" with the cordon
call, "cancel-evacuation" for a VMI just before its first eviction call (an answer can be lost; each undo
reads the cluster first, so an unneeded one does nothing), or when a VMI shows an evacuation from the node
that the drill did not start. A drain that breaches a probe SLO, runs out of budget or meets a pod it cannot evict cancels its
evacuations here; the flow's rollback uncordons. An interrupted drain leaves both to the rollback, which
runs them from the journal.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from livedrill.decisions import LoopAction, migration_loop_action
from livedrill.drain import (EVACUATION_ANNOTATION, DrainSettings, EvictionAnswer, PodAction, PodDecision, PodRef, VMIFate,
                            VMVerdict, drain_summary_check, evacuations_of, needs_eviction, next_eviction_at,
                            observed_budget, pods_to_drain, vm_verdict, vmi_done, vmi_fate, vmi_ref)
from livedrill.outcomes import CheckResult, CheckStatus, CompensationState
from livedrill.platforms.base import CapabilityMissing, MigrationPhase, NodeDrain, PlatformAdapter
from livedrill.probe.engine import ProbeSession
from livedrill.progress import Countdown, DrainProgress, Progress
from livedrill.spec import DrainMode, VMRef
from livedrill.stages.migrate import PROBE_REPORT_FILE, baseline_check
from livedrill.stages.session import DrillSession

Obj = dict
VERDICTS_FILE = "drain/verdicts.json"
EVACUATIONS_FILE = "drain/evacuations.json"
PLAN_FILE = "drain/plan.json"


class DrainResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    started: bool  # the node was cordoned: something changed
    node: str
    budget_s: float | None = None
    wall_s: float | None = None  # from the cordon until every VMI had left (or the drain stopped)
    stop_reason: str | None = None
    uncordoned: bool = False
    evictions: dict[str, int] = Field(default_factory=dict)  # eviction answers by kind
    verdicts: list[VMVerdict] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)  # drain.completed and one drain.vm per VM
    probe_checks: list[CheckResult] = Field(default_factory=list)  # session-wide: baseline, abort signal
    observed_downtime_ms: float | None = None


def drain_preflight(session: DrillSession, adapter: PlatformAdapter) -> list[CheckResult]:
    """The drain's own pre-flight: every VMI on the node judged, the pods, the budget."""
    try:
        open_drain = adapter.capabilities().need_drain()
    except CapabilityMissing as exc:
        return [CheckResult(name="drain.platform", status=CheckStatus.FAIL, subject="platform", message=str(exc),
                            remedy="use mode targeted: this platform migrates one VM at a time")]
    # Recorded with the other checks, in preflight.json.
    return open_drain(DrainSettings(), session.spec.budgets.abort_timeout_s).preflight(session.spec)


class _Watch:
    """What the loop has seen: copies of evacuation migrations (KubeVirt keeps only 5 per VMI), phase changes."""

    def __init__(self, session: DrillSession, node: str):
        self.session, self.node = session, node
        self.migrations: dict[str, Obj] = {}

    def see(self, vmims: list[Obj]) -> None:
        for vmim in vmims:
            if (vmim["metadata"].get("annotations") or {}).get(EVACUATION_ANNOTATION) != self.node:
                continue
            name = vmim["metadata"]["name"]
            phase = vmim.get("status", {}).get("phase") or MigrationPhase.PENDING
            before = self.migrations.get(name)
            if before is None or (before.get("status", {}).get("phase") or MigrationPhase.PENDING) != phase:
                self.session.event("platform", "phase", migration=name, vmi=vmim["spec"].get("vmiName"), phase=phase)
            self.migrations[name] = vmim

    def all(self) -> list[Obj]:
        return list(self.migrations.values())


def run_drain(session: DrillSession, adapter: PlatformAdapter, progress: Progress | None = None,
              settings: DrainSettings = DrainSettings()) -> DrainResult:
    spec = session.spec
    mode = spec.mode
    assert isinstance(mode, DrainMode)
    node = mode.node
    drain = adapter.capabilities().need_drain()(settings, spec.budgets.abort_timeout_s)
    session.event("livedrill", "stage", stage="drain", node=node)
    result = DrainResult(started=False, node=node)
    obs = drain.observe(spec, node)
    fates = {vmi_ref(v): vmi_fate(v, obs.kubevirt_cr) for v in obs.vmis}
    budget_s, lanes, _ = observed_budget(obs, settings)
    result.budget_s = budget_s
    session.run.write_json(PLAN_FILE, {
        "node": node, "budget_s": budget_s, "lanes": lanes,
        "vmis": {str(ref): {"fate": fate.value, "why": why} for ref, (fate, why) in fates.items()},
        "pods": [d.evidence() for d in pods_to_drain(obs.pods, node, ignore_daemonsets=mode.ignore_daemonsets,
                                                      delete_emptydir_data=mode.delete_emptydir_data)]})
    session.run.write_json("objects/drain-before.json", {"vmis": obs.vmis, "pods": obs.pods})

    probes = [p for p in spec.probes if p.vm in fates]
    probe = ProbeSession(probes, spec.slo, session.run.stream_path("probe"), on_event=session.emit) if probes else None
    watch = _Watch(session, node)
    started_at: float | None = None
    try:
        if probe:
            probe.start()
            session.event("probe", "window", window="baseline")
            _wait(spec.budgets.warmup_s, progress, "warm-up")
            check = baseline_check(probe.live(), spec.slo.max_downtime_ms)
            result.probe_checks.append(check)
            if check.status is CheckStatus.FAIL:
                session.event("livedrill", "refused", reason=check.message)
                return result

        try:
            drain.cordon(node)
        finally:
            # Registered even when the cordon raised: an unanswered patch may still have landed, and the undo
            # reads the node before it acts (pre-flight refused a node that was already cordoned).
            session.journal.register("uncordon", {"node": node})
        result.started = True
        started_at = time.monotonic()
        session.event("livedrill", "cordoned", node=node, budget_s=budget_s)
        if probe:
            probe.mark_window("during")
            session.event("probe", "window", window="during")
        result.stop_reason = _drain_loop(session, drain, mode, fates, watch, result, started_at + budget_s,
                                         probe, progress, settings)
        result.wall_s = time.monotonic() - started_at
        if result.stop_reason is not None:
            _cancel_evacuations(session, drain)
    finally:
        if probe:
            if result.started:
                probe.mark_window("after")
                session.event("probe", "window", window="after")
                _wait(spec.budgets.cooldown_s, progress, "cool-down")
            report = probe.stop()
            session.run.write_json(PROBE_REPORT_FILE, report)
            by_vm: dict[VMRef, list] = {}
            for probe_report in report.probes:
                by_vm.setdefault(probe_report.vm, []).append(probe_report)
            result.observed_downtime_ms = report.observed_downtime_ms
            result.probe_checks += [c for c in report.checks(spec.slo) if c.name == "probe.abort-signal"]
        else:
            by_vm = {}
    _judge(session, drain, mode, fates, watch, result, by_vm)
    return result


def _drain_loop(session: DrillSession, drain: NodeDrain, mode: DrainMode, fates: dict, watch: _Watch, result: DrainResult,
                deadline: float, probe: ProbeSession | None, progress: Progress | None,
                settings: DrainSettings) -> str | None:
    """Evict what needs evicting, observe, repeat until drained; returns why it stopped early, or None."""
    node = mode.node
    due: dict[PodRef, float] = {}  # pod -> monotonic time its next eviction may be sent
    registered: set[VMRef] = set()
    moved: set[VMRef] = set()  # VMIs seen off the node with their migration completed: no need to read them again
    next_copy = 0.0
    while True:
        # Reads kept small (the API server also runs the migrations): pods and VMIs still on the node; a VMI
        # that dropped off that list is read alone until it shows its migration completed.
        pods = drain.pods_on(node)
        vmis = {vmi_ref(v): v for v in drain.vmis_on(node)}
        for ref in fates.keys() - vmis.keys() - moved:
            vmis[ref] = drain.vmi(ref)
            if vmi_done(fates[ref][0], vmis[ref], node, 0):
                moved.add(ref)
        if time.monotonic() >= next_copy:
            watch.see(drain.vmims())
            next_copy = time.monotonic() + settings.migrations_poll_s
        for ref, vmi in vmis.items():  # an evacuation we did not see triggered (a lost answer) is ours too
            if ref in fates and vmi and vmi.get("status", {}).get("evacuationNodeName") == node \
                    and ref not in registered:
                _register_evacuation(session, registered, ref, node)
        decisions = pods_to_drain(pods, node, ignore_daemonsets=mode.ignore_daemonsets,
                                  delete_emptydir_data=mode.delete_emptydir_data)
        refused = [f"{d.pod}: {d.reason}" for d in decisions if d.action is PodAction.REFUSE]
        if refused:
            return f"the drain cannot evict {refused}"
        now = time.monotonic()
        for decision in decisions:
            owner = decision.vmi
            vmi = vmis.get(owner) if owner is not None else None
            if not needs_eviction(decision, True, vmi, node) or now < due.get(decision.pod, 0.0):
                continue
            if owner in fates and owner not in registered:
                # Before the call: an eviction whose answer is lost (or a kill right after it) may have
                # triggered the evacuation. The undo reads the VMI first, so an unneeded one does nothing.
                _register_evacuation(session, registered, owner, node)
            answer = drain.evict(decision.pod.namespace, decision.pod.name)
            result.evictions[answer.answer.value] = result.evictions.get(answer.answer.value, 0) + 1
            if answer.answer is not EvictionAnswer.EVACUATION_IN_PROGRESS:  # a repeat says nothing new
                session.event("livedrill", "eviction", pod=str(decision.pod), answer=answer.answer.value,
                              message=answer.message[-200:])
            next_at = next_eviction_at(answer.answer, time.monotonic(), settings, answer.retry_after_s)
            if next_at is None:
                return f"eviction of {decision.pod} refused for good: {answer.message}"
            due[decision.pod] = next_at
        counts = _running_launchers(decisions)
        left = sum(ref in moved or vmi_done(fate, vmis.get(ref), node, counts.get(ref, 0))
                   for ref, (fate, _) in fates.items())
        remaining = [d.pod for d in decisions if d.action is PodAction.EVICT]
        drained = left == len(fates) and not remaining
        action = migration_loop_action(terminal=drained, now=time.monotonic(), deadline=deadline,
                                       breach=bool(probe and probe.abort_event.is_set()))
        if progress:
            progress(DrainProgress(node=node, vmis_off=left, vmis=len(fates), pods_left=len(remaining),
                                   migrating=sum(1 for m in watch.all() if m.get("status", {}).get("phase") == "Running")))
        if action is LoopAction.FINISHED:
            return None
        if action is LoopAction.CANCEL_BREACH:
            return f"probe breach: {probe.breach if probe else ''}"
        if action is LoopAction.CANCEL_DEADLINE:
            return f"deadline: {left}/{len(fates)} VMIs off the node, {len(remaining)} pod(s) left within the budget"
        time.sleep(settings.poll_interval_s)


def _running_launchers(decisions: list[PodDecision]) -> dict[VMRef, int]:
    """VMI -> its virt-launcher pods still running on the node (one decision per pod; `finished` is Succeeded/Failed)."""
    counts: dict[VMRef, int] = {}
    for decision in decisions:
        if decision.vmi is not None and not decision.finished:
            counts[decision.vmi] = counts.get(decision.vmi, 0) + 1
    return counts


def _register_evacuation(session: DrillSession, registered: set[VMRef], ref: VMRef, node: str) -> None:
    session.journal.register("cancel-evacuation", {"namespace": ref.namespace, "vmi": ref.name, "node": node})
    registered.add(ref)


def _cancel_evacuations(session: DrillSession, drain: NodeDrain) -> None:
    """Stop what is still moving at once; each outcome is recorded, a failure stays for a human."""
    for entry in session.journal.pending():
        if entry.action != "cancel-evacuation":
            continue
        try:
            outcome = drain.cancel_evacuation(entry.params)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded; the rollback does not retry a failed undo
            session.journal.settle(entry, CompensationState.FAILED, f"{type(exc).__name__}: {exc}",
                                   manual_action=f"cancel the evacuation of {entry.params} by hand")
            continue
        session.journal.settle(entry, CompensationState.DONE, outcome)
        session.event("rollback", "compensation", action=entry.action, state="done", outcome=outcome)


def _judge(session: DrillSession, drain: NodeDrain, mode: DrainMode, fates: dict, watch: _Watch, result: DrainResult,
           probes_by_vm: dict) -> None:
    if not result.started:
        return
    node = mode.node
    spec = session.spec
    core = set(spec.vms)
    vmis = {vmi_ref(v): v for v in drain.vmis()}
    watch.see(drain.vmims())
    pods = drain.pods_on(node)
    decisions = pods_to_drain(pods, node, ignore_daemonsets=mode.ignore_daemonsets,
                              delete_emptydir_data=mode.delete_emptydir_data)
    launchers = _running_launchers(decisions)
    for ref, (fate, _) in sorted(fates.items(), key=lambda item: str(item[0])):
        reports = probes_by_vm.get(ref, [])
        gaps = [r.longest_gap.duration_ms for r in reports if r.longest_gap is not None]
        result.verdicts.append(vm_verdict(
            ref, core=ref in core, fate=fate, node=node, vmi=vmis.get(ref),
            evacuations=evacuations_of(watch.all(), ref.namespace, ref.name, node), launcher_pods_left=launchers.get(ref, 0),
            probe_checks=[c for r in reports for c in r.checks(spec.slo)],
            observed_downtime_ms=max(gaps) if gaps else None, stop_reason=result.stop_reason))
    pods_left = [d.pod for d in decisions if d.action is not PodAction.SKIP]
    result.checks.append(drain_summary_check(node, result.verdicts, pods_left, result.wall_s or 0.0,
                                             result.budget_s or 0.0, result.stop_reason))
    result.checks += [v.as_check() for v in result.verdicts]
    session.run.write_json(VERDICTS_FILE, result.verdicts)
    session.run.write_json(EVACUATIONS_FILE, watch.all())
    _settle(session, drain, mode, fates, result, vmis)


def _settle(session: DrillSession, drain: NodeDrain, mode: DrainMode, fates: dict, result: DrainResult, vmis: dict) -> None:
    """Evacuations that finished need no undo; a clean drain uncordons now (unless the spec keeps it cordoned)."""
    done = {v.vm for v in result.verdicts if v.status is not CheckStatus.FAIL and v.fate is not VMIFate.SHUTS_DOWN}
    for entry in session.journal.pending():
        if entry.action != "cancel-evacuation":
            continue
        ref = VMRef(namespace=entry.params["namespace"], name=entry.params["vmi"])
        if ref in done:
            where = vmis.get(ref, {}).get("status", {}).get("nodeName")
            session.journal.settle(entry, CompensationState.NOT_NEEDED, f"evacuation completed: VM on {where}")
    clean = result.started and result.stop_reason is None and \
        not any(c.status is CheckStatus.FAIL for c in result.checks + result.probe_checks)
    uncordon = next((e for e in session.journal.pending() if e.action == "uncordon"), None)
    if not clean or uncordon is None:
        return  # the flow's rollback uncordons a drain that did not pass
    if mode.keep_cordoned:
        session.journal.settle(uncordon, CompensationState.NOT_NEEDED, "kept cordoned, as mode.keep_cordoned asks")
        session.event("livedrill", "kept-cordoned", node=mode.node)
        return
    outcome = drain.uncordon(uncordon.params)
    session.journal.settle(uncordon, CompensationState.DONE, outcome)
    result.uncordoned = True
    session.event("livedrill", "uncordoned", node=mode.node, outcome=outcome)


def _wait(seconds: float, progress: Progress | None, stage: Literal["warm-up", "cool-down"]) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if progress:
            progress(Countdown(stage=stage, seconds_left=left))
        time.sleep(min(0.25, left))
