"""The quarter's plan: which VMs each change window drills, on which cluster, in what order. Pure.

Input: the programme (windows, limits, retest policy, the drill template's budgets), the inventory, the
drills already run (this quarter and before) and the time of planning. Each VM is drilled once per plan;
after every window the plan is made again from what really happened, so a VM that fails is re-planned as a
retest then.

Drills on one cluster run one after another (the cluster's slot); clusters run in parallel, so each
cluster's VMs are packed into the windows on their own. A drill's budget is the drill template's worst case
(warm-up, the migration deadline for the VM's GiB, cool-down, per leg) plus the programme's per-drill set-up:
a drill that would overrun its window is not planned into it.

Where the drill template's `forecast:` declares every figure (a dirty rate, not "measure", and the link's
bandwidth), each VM's migration is forecast from its GiB at planning time: a VM whose forecast does not converge
within its migration deadline fits no window (its pre-flight would refuse it; the reason says what would help),
and the others carry their forecast time beside the worst-case budget. Windows are still filled by the budgets:
a window's end is a limit, and a drill runs until its own deadline whatever the forecast said.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field, field_validator

from livedrill.deploy.schedule import freeze_covering
from livedrill.forecast import GIB, Forecast, ForecastConfig, MigrationLimits, forecast, resolve_inputs
from livedrill.outcomes import Record
from livedrill.programme.inventory import CoverageException, Inventory, Target
from livedrill.programme.spec import ClusterLimits, Programme, RetestPolicy, Windows
from livedrill.spec import Budgets, VMRef, migration_deadline_s


class DrillRecord(Record):
    """One drill of one VM that already ran (from the evidence archive, or a history file)."""

    cluster: str
    vm: VMRef
    at: AwareDatetime = Field(description="When the drill started")
    outcome: Literal["passed", "failed"]
    run: str | None = Field(None, description="Its run id in the evidence archive, when it was read from there")

    @field_validator("vm", mode="before")
    @classmethod
    def _vm_text(cls, v: object) -> object:
        return VMRef.parse(v) if isinstance(v, str) else v


class History(Record):
    drills: list[DrillRecord] = Field(default_factory=list)


class Standing(str, enum.Enum):
    """Where a VM stands in the quarter; the planned ones in the order they are planned (risk first)."""

    RETEST = "retest"  # its last drill this quarter failed: a deficiency, drilled again after the cool-off
    NEVER_PASSED = "never_passed"  # not drilled this quarter and no pass on record
    DUE = "due"  # not drilled this quarter; passed in an earlier one (the oldest pass first)
    COVERED = "covered"  # passed this quarter: nothing to plan
    OPEN_DEFICIENCY = "open_deficiency"  # failed retest_policy.max_attempts times this quarter: not re-planned


class VMStanding(Record):
    standing: Standing
    failures: int = 0  # failed drills this quarter
    retest_after: AwareDatetime | None = None  # RETEST: the cool-off ends then
    last_pass: AwareDatetime | None = None  # latest pass (any quarter up to the plan)
    last_failure: AwareDatetime | None = None


def standing(records: list[DrillRecord], quarter_start: datetime, quarter_end: datetime,
             policy: RetestPolicy) -> VMStanding:
    """One VM's standing from its drills: the quarter's last drill decides (a pass covers it, a failure is
    retested after the cool-off, until max_attempts failures leave an open deficiency)."""
    in_quarter = sorted((r for r in records if quarter_start <= r.at < quarter_end), key=lambda r: r.at)
    passes = [r.at for r in records if r.outcome == "passed" and r.at < quarter_end]
    last_pass = max(passes, default=None)
    if not in_quarter:
        return VMStanding(standing=Standing.NEVER_PASSED if last_pass is None else Standing.DUE, last_pass=last_pass)
    last = in_quarter[-1]
    failures = sum(r.outcome == "failed" for r in in_quarter)
    if last.outcome == "passed":
        return VMStanding(standing=Standing.COVERED, failures=failures, last_pass=last_pass)
    if failures >= policy.max_attempts:
        return VMStanding(standing=Standing.OPEN_DEFICIENCY, failures=failures, last_pass=last_pass,
                          last_failure=last.at)
    return VMStanding(standing=Standing.RETEST, failures=failures, last_pass=last_pass, last_failure=last.at,
                      retest_after=last.at + timedelta(days=policy.cool_off_days))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def risk_key(s: VMStanding) -> tuple:
    """Planning order: retests first (a deficiency has the fewest windows left to it, after its cool-off),
    then VMs that never passed, then the oldest pass."""
    order = {Standing.RETEST: 0, Standing.NEVER_PASSED: 1, Standing.DUE: 2}[s.standing]
    return order, s.retest_after or s.last_pass or _EPOCH


def vm_budget_s(gib: float, budgets: Budgets, legs: int) -> float:
    """The worst case of one VM's migration with its probes, per leg (there and, with migrate_back, back)."""
    return legs * (budgets.warmup_s + migration_deadline_s(budgets, gib) + budgets.cooldown_s)


# The template's figures alone: the platform's own limits are read by each pre-flight, not at planning time.
PLANNING_LIMITS = MigrationLimits(source="the drill template's forecast section (at planning time)")


def planning_forecast(config: ForecastConfig | None, gib: float, budgets: Budgets) -> Forecast | None:
    """Pure: one VM's migration forecast from the drill template's declared figures, or None when the template has
    no forecast or leaves a figure to measure on the night (its pre-flight forecasts then). Touched memory that is
    to be measured counts whole here: the planner errs long."""
    if config is None or gib <= 0:
        return None
    inputs, _ = resolve_inputs(config, PLANNING_LIMITS, gib * GIB, migration_deadline_s(budgets, gib), None)
    return forecast(inputs, PLANNING_LIMITS) if inputs is not None else None


class PlanWindow(Record):
    index: int  # 1-based, in the order of the programme's windows
    start: AwareDatetime
    end: AwareDatetime

    @property
    def length_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def label(self) -> str:
        return f"#{self.index} {self.start.isoformat(timespec='minutes')}"


class SkippedWindow(Record):
    index: int
    start: AwareDatetime
    end: AwareDatetime
    reason: str


def windows_in_order(windows: Windows) -> list[tuple[PlanWindow, str | None]]:
    """Every window in time order, numbered from 1, with the change freeze on its start date (local), said as a
    reason, or None."""
    zone = ZoneInfo(windows.timezone)
    found = []
    for index, slot in enumerate(sorted(windows.slots, key=lambda w: w.start), start=1):
        freeze = freeze_covering(slot.start.date(), windows.change_freeze)
        frozen = None if freeze is None else (f"change freeze {freeze.start}..{freeze.end or freeze.start}"
                                              + (f" ({freeze.reason})" if freeze.reason else ""))
        found.append((PlanWindow(index=index, start=slot.start.replace(tzinfo=zone), end=slot.end.replace(tzinfo=zone)),
                      frozen))
    return found


def open_windows(windows: Windows, now: datetime) -> tuple[list[PlanWindow], list[SkippedWindow]]:
    """The windows drills may still be planned into, and the others with why: a change freeze on the
    window's start date (local), or the window already began when the plan was made."""
    usable, skipped = [], []
    for window, frozen in windows_in_order(windows):
        if frozen is not None:
            skipped.append(SkippedWindow(index=window.index, start=window.start, end=window.end, reason=frozen))
        elif window.start < now:
            skipped.append(SkippedWindow(index=window.index, start=window.start, end=window.end,
                                         reason=f"began before the plan was made ({now.isoformat(timespec='minutes')})"))
        else:
            usable.append(window)
    return usable, skipped


@dataclass(slots=True)
class Pending:
    """A VM waiting for a window (internal to the planner)."""

    target: Target
    standing: VMStanding
    budget_s: float
    forecast_s: float | None

    @property
    def ready_after(self) -> datetime | None:
        return self.standing.retest_after


class PlannedVM(Record):
    vm: VMRef
    node: str | None
    gib: float
    budget_s: float
    forecast_s: float | None = Field(None, description="The forecast migration time of one leg, from the drill "
                                                       "template's declared figures; None: no such forecast")
    standing: Standing
    attempt: int  # this VM's drill number in the quarter (1: first)


class PlannedDrill(Record):
    cluster: str
    start: AwareDatetime  # when the drills before it take their whole budget; earlier if they end sooner
    budget_s: float  # set-up plus its VMs' budgets (it migrates them one after another)
    vms: list[PlannedVM]


def pack_window(candidates: list[Pending], length_s: float, setup_s: float, limits: ClusterLimits
                ) -> list[tuple[float, float, list[Pending]]]:
    """One cluster's drills in one window: (offset_s, budget_s, VMs) each, back to back, first-fit in the
    candidates' order. A drill takes up to vms_per_drill VMs, at most outbound_per_node from one node; it
    migrates them one after another, so it lasts the set-up plus the sum of their budgets."""
    drills: list[tuple[float, float, list[Pending]]] = []
    used = 0.0
    while candidates and (limits.drills_per_window is None or len(drills) < limits.drills_per_window):
        room = length_s - used - setup_s
        batch: list[Pending] = []
        keep: list[Pending] = []
        per_node: Counter = Counter()
        total = 0.0
        for i, p in enumerate(candidates):
            if len(batch) == limits.vms_per_drill:
                keep.extend(candidates[i:])
                break
            if p.budget_s > room:
                continue  # the room only shrinks: it fits nowhere later in this window either
            if p.budget_s > room - total or per_node[p.target.node] >= limits.outbound_per_node:
                keep.append(p)  # a later drill of this window may still hold it
                continue
            batch.append(p)
            per_node[p.target.node] += 1
            total += p.budget_s
        if not batch:
            break
        drills.append((used, setup_s + total, batch))
        used += setup_s + total
        candidates = keep
    return drills


class Unplaced(Record):
    """A VM the windows left in the quarter cannot hold, and why."""

    cluster: str
    vm: VMRef
    standing: Standing
    budget_s: float  # its drill's: set-up plus the VM's migration budget
    reason: str


def why_unplaced(p: Pending, windows: list[PlanWindow], setup_s: float, quarter_end: datetime) -> str:
    """Pure (`quarter_end`: the first moment after the quarter): why a VM found no window — too long for any, a retest due too late, or the windows are full."""
    longest = max((w.length_s for w in windows), default=0.0)
    if p.budget_s + setup_s > longest:
        return (f"needs {p.budget_s + setup_s:.0f} s (set-up and migration budget for {p.target.gib:g} GiB); the "
                f"longest window left is {longest:.0f} s")
    eligible = [w for w in windows if p.ready_after is None or w.start >= p.ready_after]
    if not eligible:
        return (f"retest due after {p.ready_after.isoformat(timespec='minutes')} (cool-off); no window opens "
                f"between then and the quarter's last day {(quarter_end - timedelta(days=1)).date()}")
    return (f"no room left on cluster {p.target.cluster} in the {len(eligible)} window(s) it could use "
            f"({eligible[0].label()} .. {eligible[-1].label()})")


class PlannedWindow(Record):
    index: int
    start: AwareDatetime
    end: AwareDatetime
    drills: list[PlannedDrill] = Field(default_factory=list)


class CoveredVM(Record):
    cluster: str
    vm: VMRef
    passed_at: AwareDatetime


class OpenDeficiency(Record):
    cluster: str
    vm: VMRef
    failures: int
    last_failure: AwareDatetime


class Plan(Record):
    programme: str
    quarter: str
    planned_at: AwareDatetime
    windows: list[PlannedWindow] = Field(default_factory=list)
    skipped_windows: list[SkippedWindow] = Field(default_factory=list)
    covered: list[CoveredVM] = Field(default_factory=list)
    open_deficiencies: list[OpenDeficiency] = Field(default_factory=list)
    exceptions: list[CoverageException] = Field(default_factory=list)
    empty_clusters: list[str] = Field(default_factory=list)  # no VM of the inventory matched their selector
    unplaced: list[Unplaced] = Field(default_factory=list)

    @property
    def fits(self) -> bool:
        """Every VM still to drill has a window."""
        return not self.unplaced


def make_plan(programme: Programme, inventory: Inventory, history: list[DrillRecord], now: datetime) -> Plan:
    spec, budgets = programme.spec, programme.template.budgets
    legs = 2 if programme.template.mode.migrate_back else 1
    quarter_start, quarter_end = spec.quarter_span()
    windows, skipped = open_windows(spec.windows, now)
    by_vm: dict[tuple[str, str, str], list[DrillRecord]] = {}
    for record in history:
        by_vm.setdefault((record.cluster, record.vm.namespace, record.vm.name), []).append(record)

    out = Plan(programme=spec.name, quarter=spec.quarter, planned_at=now, skipped_windows=skipped,
               exceptions=list(inventory.exceptions), empty_clusters=list(inventory.empty_clusters),
               windows=[PlannedWindow(index=w.index, start=w.start, end=w.end) for w in windows])
    pending: dict[str, list[Pending]] = {}
    budget_by_gib: dict[float, float] = {}
    forecast_by_gib: dict[float, Forecast | None] = {}
    setup_s = spec.drill.setup_s
    for target in inventory.targets:
        s = standing(by_vm.get((target.cluster, target.vm.namespace, target.vm.name), []),
                     quarter_start, quarter_end, spec.retest)
        if s.standing is Standing.COVERED:
            out.covered.append(CoveredVM(cluster=target.cluster, vm=target.vm, passed_at=s.last_pass))
        elif s.standing is Standing.OPEN_DEFICIENCY:
            out.open_deficiencies.append(OpenDeficiency(cluster=target.cluster, vm=target.vm, failures=s.failures,
                                                        last_failure=s.last_failure))
        else:
            if target.gib not in budget_by_gib:
                budget_by_gib[target.gib] = vm_budget_s(target.gib, budgets, legs)
                forecast_by_gib[target.gib] = planning_forecast(programme.template.forecast, target.gib, budgets)
            predicted = forecast_by_gib[target.gib]
            if predicted is not None and not predicted.expected.converges:
                out.unplaced.append(Unplaced(
                    cluster=target.cluster, vm=target.vm, standing=s.standing,
                    budget_s=setup_s + budget_by_gib[target.gib],
                    reason=f"its forecast does not converge within its {predicted.expected.budget_s:.0f} s migration "
                           f"budget ({predicted.expected.reason}), so its pre-flight would refuse it"))
                continue
            pending.setdefault(target.cluster, []).append(Pending(
                target, s, budget_by_gib[target.gib],
                predicted.expected.migration_s if predicted is not None else None))

    limits = {scope.name: scope.limits for scope in spec.clusters}
    for cluster, waiting in sorted(pending.items()):
        waiting.sort(key=lambda p: (risk_key(p.standing), p.target.vm.namespace, p.target.vm.name))
        for window, planned in zip(windows, out.windows):
            if not waiting:
                break
            candidates = [p for p in waiting if p.ready_after is None or p.ready_after <= window.start]
            drills = pack_window(candidates, window.length_s, setup_s, limits[cluster])
            taken = set()
            for offset, budget, batch in drills:
                planned.drills.append(PlannedDrill(
                    cluster=cluster, start=window.start + timedelta(seconds=offset), budget_s=budget,
                    vms=[PlannedVM(vm=p.target.vm, node=p.target.node, gib=p.target.gib, budget_s=p.budget_s,
                                   forecast_s=p.forecast_s, standing=p.standing.standing,
                                   attempt=p.standing.failures + 1) for p in batch]))
                taken.update(id(p) for p in batch)
            if taken:
                waiting = [p for p in waiting if id(p) not in taken]
        out.unplaced += [Unplaced(cluster=cluster, vm=p.target.vm, standing=p.standing.standing,
                                  budget_s=setup_s + p.budget_s,
                                  reason=why_unplaced(p, windows, setup_s, quarter_end)) for p in waiting]
    return out
