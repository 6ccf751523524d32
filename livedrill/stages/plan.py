"""What a drill does after its pre-flight, decided in pure functions: the flow only sequences what they return.

`plan_drill` reads the gate and the spec once: whether anything moves (a drain, or one migration per VM),
whether a change manager approves first, and whether the VMs migrate back. `return_legs` decides the return
leg from the outbound results, and `DrillTally` files every check where the verdict looks for it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from livedrill.decisions import DrillFacts
from livedrill.outcomes import CheckResult, CheckStatus, Compensation
from livedrill.platforms.base import VMState
from livedrill.spec import DrainMode, DrillSpec
from livedrill.stages.drain import DrainResult
from livedrill.stages.migrate import MigrationResult

# The check a migration files for itself (the platform's outcome); its other checks are its probes'.
MIGRATION_CHECK = "migration"


class Leg(BaseModel):
    """One migration the flow runs: the VM as it is before it, and for a return leg the node it goes back to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    before: VMState
    return_to: str | None = None


class DrillPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    move: Literal["nothing", "drain", "targeted"]  # nothing: the gate refused, or the platform could not be asked
    approval: bool  # a change manager answers before anything moves
    outbound: list[Leg] = Field(default_factory=list)  # targeted: one per VM, in the spec's order
    migrate_back: bool = False  # targeted: each VM that landed returns, if nothing failed on the way out

    def moves(self, pre_checks: list[CheckResult]) -> bool:
        """After the approval (when asked): does the drill move anything?"""
        return self.move != "nothing" and not failed(pre_checks)


def failed(checks: list[CheckResult]) -> bool:
    return any(c.status is CheckStatus.FAIL for c in checks)


def plan_drill(spec: DrillSpec, pre_checks: list[CheckResult], error: str | None, before: list[VMState]) -> DrillPlan:
    """Pure: the drill's plan from the spec and what the gate saw (its checks, with the probes' smoke run).

    A VM the pre-flight could not describe has no leg: the pre-flight failed it (missing or not running).
    """
    if error is not None or failed(pre_checks):
        return DrillPlan(move="nothing", approval=False)
    if isinstance(spec.mode, DrainMode):
        return DrillPlan(move="drain", approval=spec.approval.required)
    seen = {state.ref: state for state in before}
    return DrillPlan(move="targeted", approval=spec.approval.required,
                     outbound=[Leg(before=seen[vm]) for vm in spec.vms if vm in seen],
                     migrate_back=spec.mode.migrate_back)


def return_legs(plan: DrillPlan, landed: list[tuple[Leg, MigrationResult]], checks: list[CheckResult]) -> list[Leg]:
    """Pure: the return leg of `migrate_back`, from where each VM was seen to land; none after any failure."""
    if not plan.migrate_back or failed(checks):
        return []
    return [Leg(before=leg.before.moved_to(result.target), return_to=result.source)
            for leg, result in landed if result.succeeded]


def filed(result: MigrationResult) -> tuple[list[CheckResult], list[CheckResult]]:
    """Pure: one migration's checks as (the migration's own, its probes')."""
    return ([c for c in result.checks if c.name == MIGRATION_CHECK],
            [c for c in result.checks if c.name != MIGRATION_CHECK])


class DrillTally(BaseModel):
    """What the drill found so far, filed as the verdict reads it."""

    model_config = ConfigDict(extra="forbid")

    pre_checks: list[CheckResult] = Field(default_factory=list)
    migration_checks: list[CheckResult] = Field(default_factory=list)  # the migrations' outcomes and post-checks
    probe_checks: list[CheckResult] = Field(default_factory=list)
    started: bool = False  # something was changed on the platform
    downtime_ms: float | None = None  # the longest observed downtime of any leg

    def take(self, result: MigrationResult) -> None:
        migration, probes = filed(result)
        self.migration_checks += migration
        self.probe_checks += probes
        self.started = self.started or result.started
        if result.observed_downtime_ms is not None:
            self.downtime_ms = max(self.downtime_ms or 0.0, result.observed_downtime_ms)

    def take_drain(self, result: DrainResult) -> None:
        """A drain is one step: its per-VM verdicts are its migrations' checks."""
        self.migration_checks += result.checks
        self.probe_checks += result.probe_checks
        self.started = self.started or result.started
        self.downtime_ms = result.observed_downtime_ms

    def facts(self, compensations: list[Compensation], error: str | None, *, interrupted: bool = False) -> DrillFacts:
        """For the verdict. Interrupted, a registered compensation proves something changed even when the task
        that changed it returned nothing."""
        mutated = self.started or (interrupted and bool(compensations))
        return DrillFacts(self.pre_checks, self.migration_checks, self.probe_checks, compensations, mutated,
                          self.downtime_ms, "the drill was interrupted" if interrupted else error)

    @property
    def checks(self) -> list[CheckResult]:
        return self.pre_checks + self.migration_checks + self.probe_checks

    @property
    def failed(self) -> bool:
        return failed(self.checks)
