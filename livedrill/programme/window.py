"""One change window of a programme, as its parent flow runs it: the window's drills, how each child drill
is followed to its end, and what the window leaves behind. The decisions here are pure; the parent flow's
tasks observe (Prefect's state of the child, the child's evidence) and act.

The window's drills come from the quarter's plan made at the window's start, from the archive's drills so
far: a VM that passed this quarter is not drilled again, a failed one comes back as a retest after the
cool-off, and a parent flow started again for the same window drills only what is still to drill.
"""

from __future__ import annotations

import enum
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field

from livedrill.errors import InputError
from livedrill.outcomes import DrillOutcome, Record
from livedrill.programme.coverage import Coverage
from livedrill.programme.drills import drill_spec_for
from livedrill.programme.inventory import Inventory
from livedrill.programme.plan import DrillRecord, Plan, PlanWindow, Standing, make_plan, windows_in_order
from livedrill.programme.records import CoverageFigures
from livedrill.programme.spec import Programme, ProgrammeSpec
from livedrill.spec import ApprovalPolicy, DrillSpec, VMRef

# Prefect's server frees the slot of a drill killed outright this long after its lease ran out.
LEASE_SWEEP_S = 15.0
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


class NoWindow(InputError):
    """The window asked for cannot be run (the message says which and why)."""


def pick_window(spec: ProgrammeSpec, now: datetime, index: int | None) -> PlanWindow:
    """Pure: window #`index` (1-based, in time order), or with None the window open at `now`. A window in a
    change freeze, one that has ended, or none open now is refused with the reason."""
    ordered = windows_in_order(spec.windows)
    if index is None:
        open_now = [(w, frozen) for w, frozen in ordered if w.start <= now < w.end]
        if not open_now:
            later = [w for w, _ in ordered if w.start > now]
            zone = ZoneInfo(spec.windows.timezone)
            raise NoWindow(f"programme {spec.name}: no window is open at {now.astimezone(zone):%Y-%m-%d %H:%M} "
                           f"{spec.windows.timezone}; " + (f"the next is {later[0].label()}" if later else
                                                          "the quarter has no window left"))
        chosen, frozen = open_now[0]
    elif not 1 <= index <= len(ordered):
        raise NoWindow(f"programme {spec.name}: window #{index} does not exist (it has {len(ordered)})")
    else:
        chosen, frozen = ordered[index - 1]
    if chosen.end <= now:
        raise NoWindow(f"programme {spec.name}: window {chosen.label()} ended at {chosen.end.isoformat()}")
    if frozen is not None:
        raise NoWindow(f"programme {spec.name}: window {chosen.label()} falls in the {frozen}")
    return chosen


class WindowDrill(Record):
    """One VM's drill in the window; drills of one cluster run one after another, in this order."""

    cluster: str
    vm: VMRef
    standing: Standing
    attempt: int  # this VM's drill number in the quarter (1: first)
    budget_s: float  # its migration budget plus the programme's per-drill set-up
    forecast_s: float | None = None  # the planner's forecast of one leg's migration time (PlannedVM.forecast_s)
    spec: DrillSpec  # the drill as it will run


class WindowPlan(Record):
    programme: str
    quarter: str
    timezone: str
    approval: ApprovalPolicy  # the programme's, for the whole window
    start_s: float  # the programme's drill.start_s
    index: int
    start: AwareDatetime
    end: AwareDatetime
    drills: list[WindowDrill] = Field(default_factory=list)
    plan: Plan  # the quarter's plan as made at the window's start
    inventory: Inventory

    def by_cluster(self) -> dict[str, list[WindowDrill]]:
        clusters: dict[str, list[WindowDrill]] = {}
        for drill in self.drills:
            clusters.setdefault(drill.cluster, []).append(drill)
        return clusters


def window_plan(programme: Programme, inventory: Inventory, history: list[DrillRecord], window: PlanWindow) -> WindowPlan:
    """Pure: the drills of `window` from the quarter's plan made at its start. A planned drill of several VMs
    runs them back to back, each VM a drill of its own (its own probes and evidence)."""
    plan = make_plan(programme, inventory, history, window.start)
    scopes = {scope.name: scope for scope in programme.spec.clusters}
    targets = {(t.cluster, t.vm): t for t in inventory.targets}
    setup_s = programme.spec.drill.setup_s
    drills = []
    for planned in next((w.drills for w in plan.windows if w.index == window.index), []):
        for vm in planned.vms:
            target = targets[(planned.cluster, vm.vm)]
            drills.append(WindowDrill(cluster=planned.cluster, vm=vm.vm, standing=vm.standing, attempt=vm.attempt,
                                      budget_s=setup_s + vm.budget_s, forecast_s=vm.forecast_s,
                                      spec=drill_spec_for(programme, scopes[planned.cluster], target)))
    return WindowPlan(programme=programme.spec.name, quarter=programme.spec.quarter,
                      timezone=programme.spec.windows.timezone, approval=programme.spec.approval,
                      start_s=programme.spec.drill.start_s, index=window.index, start=window.start, end=window.end,
                      drills=drills, plan=plan, inventory=inventory)


class ChildDeadlines(Record):
    """How long the parent waits for one child drill, from when it asked for it."""

    start_s: float  # until its evidence opens: a worker takes it, and the cluster's slot comes free
    end_s: float  # until it ends
    cancel_grace_s: float  # after a cancel, for its own rollback and seal


def child_deadlines(drill: WindowDrill, start_s: float) -> ChildDeadlines:
    """Pure: the slot may still be held by a drill killed outright before this one, for its lease and the
    server's sweep; a cancelled drill rolls back within its abort budget, and then seals."""
    slot_s = drill.spec.concurrency.lease_s + LEASE_SWEEP_S
    grace_s = 2 * drill.spec.budgets.abort_timeout_s + start_s
    return ChildDeadlines(start_s=start_s + slot_s, end_s=start_s + slot_s + drill.budget_s, cancel_grace_s=grace_s)


class EvidenceSeen(str, enum.Enum):
    """What the archive shows of a child drill's evidence run."""

    NONE = "none"  # no run yet (the drill has not started, or died before it opened its evidence)
    LIVE = "live"  # unsealed, its owner process alive
    ORPHANED = "orphaned"  # unsealed, its owner process gone: killed mid-drill
    SEALED = "sealed"


class ChildFate(str, enum.Enum):
    WAIT = "wait"
    FINISHED = "finished"  # Prefect shows it ended; an orphaned run of it is still recovered
    LOST = "lost"  # its process died mid-drill while Prefect still shows it running: recover it, mark it crashed
    OVERDUE = "overdue"  # not started, or not ended, in time: cancel it (its rollback runs), recover what it left


def child_fate(state_type: str, evidence: EvidenceSeen, waited_s: float, deadlines: ChildDeadlines) -> ChildFate:
    """Pure: what the parent does about a child drill it has waited on for `waited_s`."""
    if state_type in TERMINAL_STATES:
        return ChildFate.FINISHED
    if evidence is EvidenceSeen.ORPHANED:
        return ChildFate.LOST
    if waited_s > deadlines.end_s or (evidence is EvidenceSeen.NONE and waited_s > deadlines.start_s):
        return ChildFate.OVERDUE
    return ChildFate.WAIT


class ChildOutcome(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"  # the drill ran, or was refused by its pre-flight, and failed: a deficiency
    ERROR = "error"  # bad input or an unreachable platform before anything moved
    RECOVERED = "recovered"  # its process died; `recover` rolled back and sealed it (a failed drill)
    NO_EVIDENCE = "no_evidence"  # it ended (or was given up) without a sealed run: the VM stays to drill


def child_outcome(fate: ChildFate, verdict: DrillOutcome | None, recovered: bool) -> ChildOutcome:
    """Pure: how the window reports one child, from the sealed verdict (never from Prefect's state)."""
    if verdict is None:
        return ChildOutcome.NO_EVIDENCE
    if recovered:
        return ChildOutcome.RECOVERED
    return {DrillOutcome.PASSED: ChildOutcome.PASSED, DrillOutcome.FAILED: ChildOutcome.FAILED,
            DrillOutcome.ERROR: ChildOutcome.ERROR}[verdict]


class ChildResult(Record):
    """One child drill of the window, as the parent saw it end."""

    cluster: str
    vm: VMRef
    attempt: int
    flow_run_id: str
    flow_run_name: str
    state: str  # Prefect's state type when the parent stopped waiting (or set by it)
    fate: ChildFate
    outcome: ChildOutcome
    evidence_run: str | None = None
    started_at: AwareDatetime
    ended_at: AwareDatetime
    note: str = ""
    cluster_unsafe: bool = False  # its drill could not be recovered: the window drills nothing more on the cluster


class WindowReport(Record):
    programme: str
    quarter: str
    index: int
    start: AwareDatetime
    end: AwareDatetime
    approval: str | None = None  # "approved by NAME (TICKET)" / "rejected by NAME" / None when not required
    results: list[ChildResult] = Field(default_factory=list)
    coverage: CoverageFigures
    still_to_drill: int  # VMs the quarter's plan after this window still has to drill
    cannot_fit: int  # of those, VMs no window left in the quarter can hold


def window_markdown(wp: WindowPlan) -> str:
    """The window's plan as its approver reads it: who, what, where, each drill's budget."""
    zone = ZoneInfo(wp.timezone)
    total = sum(d.budget_s for d in wp.drills)
    lines = [f"# Programme {wp.programme} {wp.quarter}: window #{wp.index}",
             f"{wp.start.astimezone(zone):%Y-%m-%d %a %H:%M}–{wp.end.astimezone(zone):%H:%M} {wp.timezone}: "
             f"{len(wp.drills)} drill(s) on {len(wp.by_cluster())} cluster(s), clusters in parallel, one drill at a "
             f"time per cluster; the drills' budgets add up to {total:.0f} s.", "",
             "| cluster | order | VM | why now | attempt | budget (s) | forecast (s a leg) |",
             "|---|---|---|---|---|---|---|"]
    for cluster, drills in sorted(wp.by_cluster().items()):
        lines += [f"| {cluster} | {i} | {d.vm} | {d.standing.value} | {d.attempt} | {d.budget_s:.0f} | "
                  f"{'-' if d.forecast_s is None else f'{d.forecast_s:.1f}'} |" for i, d in enumerate(drills, start=1)]
    if wp.inventory.exceptions:
        lines += ["", "Not drilled (coverage exceptions):"]
        lines += [f"- {e.cluster} {e.vm}: {e.kind}: {e.reason}" for e in wp.inventory.exceptions]
    if wp.plan.unplaced:
        lines += ["", f"{len(wp.plan.unplaced)} VM(s) fit no window left in the quarter (see `livedrill programme plan`)."]
    return "\n".join(lines)


def coverage_rows(cov: Coverage) -> list[dict[str, str]]:
    """The quarter's coverage table after a window: every VM to drill, then the exceptions."""
    rows = [{"cluster": r.cluster, "vm": str(r.vm), "status": r.status.value, "drills": str(r.drills),
             "failures": str(r.failures), "evidence": r.last_run or "-"} for r in cov.rows]
    return rows + [{"cluster": e.cluster, "vm": str(e.vm), "status": f"exception: {e.kind}", "drills": "0",
                    "failures": "0", "evidence": e.reason} for e in cov.exceptions]


def results_rows(results: list[ChildResult], timezone: str, ui_url: str | None) -> list[dict[str, str]]:
    """The window's table: one row per child drill, with its evidence and a link to its run."""
    zone = ZoneInfo(timezone)
    rows = []
    for r in sorted(results, key=lambda r: (r.cluster, r.started_at)):
        run = f"[{r.flow_run_name}]({ui_url}/runs/flow-run/{r.flow_run_id})" if ui_url else r.flow_run_name
        rows.append({"cluster": r.cluster, "vm": str(r.vm), "attempt": str(r.attempt), "outcome": r.outcome.value,
                     "started": f"{r.started_at.astimezone(zone):%H:%M:%S}",
                     "took": f"{(r.ended_at - r.started_at).total_seconds():.0f} s",
                     "evidence": r.evidence_run or "-", "run": run, "note": r.note})
    return rows


def format_window_report(report: WindowReport, timezone: str) -> str:
    """What `livedrill programme run` prints: each drill of the window, then the quarter's coverage after it."""
    zone = ZoneInfo(timezone)
    passed = sum(r.outcome is ChildOutcome.PASSED for r in report.results)
    lines = [f"programme {report.programme} {report.quarter} window #{report.index} "
             f"{report.start.astimezone(zone):%Y-%m-%d %H:%M}-{report.end.astimezone(zone):%H:%M} {timezone}: "
             f"{len(report.results)} drill(s), {passed} passed" + (f"; {report.approval}" if report.approval else "")]
    for r in sorted(report.results, key=lambda r: (r.cluster, r.started_at)):
        took = (r.ended_at - r.started_at).total_seconds()
        lines.append(f"  {r.outcome.value.upper():<12} {r.cluster:<12} {r.vm}  {took:>5.0f} s  "
                     f"evidence {r.evidence_run or '-'}" + (f"  ({r.note})" if r.note else ""))
    c = report.coverage
    lines.append(f"coverage {report.quarter}: {'COVERED' if c.complete else 'NOT COVERED'}: {c.passed} of {c.to_drill} "
                 f"passed, {c.failed} failed awaiting retest, {c.open_deficiencies} open deficiency(ies), "
                 f"{c.not_drilled} not drilled, {c.exceptions} exception(s); still to drill {report.still_to_drill}"
                 + (f", {report.cannot_fit} fit no window left" if report.cannot_fit else ""))
    return "\n".join(lines)
