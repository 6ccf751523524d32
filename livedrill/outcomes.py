"""The fixed vocabulary of drill outcomes and journal records.

Every record a drill writes (to its evidence, to the terminal, to Prefect) is one of these models,
so an auditor reading a run from 2026 and one from 2030 reads the same words.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from livedrill.specbase import VMName


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ExitCode(enum.IntEnum):
    """The command line's exit codes, for every command (README, "Exit codes")."""

    OK = 0  # passed, verified, done
    FAILED = 1  # a check or an SLO failed: the drill was refused or ran and failed; the evidence does not verify
    BAD_INPUT = 2  # bad input, or the platform could not be reached: nothing was changed
    INTEGRITY_ONLY = 3  # evidence intact but no trusted key was given: who sealed it is not established


class DrillOutcome(str, enum.Enum):
    """How a drill ended; each outcome is one exit code."""

    PASSED = "PASSED"  # migrated, post-checks and every SLO met
    FAILED = "FAILED"  # ran (or was refused by pre-flight) and failed a check or an SLO
    ERROR = "ERROR"  # bad input, unreachable platform, or an internal fault before any mutation

    @property
    def exit_code(self) -> ExitCode:
        return {DrillOutcome.PASSED: ExitCode.OK, DrillOutcome.FAILED: ExitCode.FAILED,
                DrillOutcome.ERROR: ExitCode.BAD_INPUT}[self]


class CheckStatus(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"


class CheckResult(Record):
    """One named check (pre-flight, post-check, SLO), the verdict and the evidence it judged."""

    name: str
    status: CheckStatus
    message: str
    remedy: str | None = None
    subject: str | None = None  # the object judged, e.g. "vmi banking/banking-core-vm"
    evidence: dict[str, Any] = Field(default_factory=dict)


class TimelineEvent(Record):
    """Something observed during the drill, stamped on both clocks.

    `monotonic` places it on the probe series (same system-wide CLOCK_MONOTONIC);
    `at` is the wall clock for humans and auditors.
    """

    at: datetime
    monotonic: float
    source: str  # "livedrill", "vmim", "vmi", "event", "libvirt", "probe"
    kind: str  # e.g. "stage", "phase", "migrationState", "abort-signal"
    detail: dict[str, Any] = Field(default_factory=dict)


class VMState(BaseModel):
    """A VM as observed: by the pre-flight before the drill (then handed to the migration and its post-checks),
    or by `describe_vm` at any time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: VMName
    node: str | None  # KubeVirt node or libvirt host name where it runs
    running: bool
    memory_gib: float
    # The platform's own object(s), unredacted: written to the evidence by whoever observed it, never carried
    # further (not serialised, so a task parameter or result holds only the fields above).
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    def moved_to(self, node: str | None) -> "VMState":
        """The same VM as it should be after migrating to `node`: the `before` of a return leg."""
        return self.model_copy(update={"node": node, "raw": {}})


class PreflightResult(Record):
    """The pre-flight as recorded in a run's preflight.json, whether the drill was a dry run, a gate or a real run."""

    checks: list[CheckResult] = Field(default_factory=list)
    error: str | None = None  # the platform could not be asked at all, or stopped answering mid-way
    before: list[VMState] = Field(default_factory=list)  # each VM that could be described, as it was

    @property
    def passed(self) -> bool:
        return self.error is None and not any(c.status is CheckStatus.FAIL for c in self.checks)


class CompensationState(str, enum.Enum):
    PENDING = "pending"  # side effect done, undo not yet needed or not yet run
    DONE = "done"  # undo ran and its effect was observed
    NOT_NEEDED = "not_needed"  # the drill finished normally, or observed state shows nothing to undo
    FAILED = "failed"  # undo failed: a human must act (see `manual_action`)


class Compensation(Record):
    """The undo of one side effect, registered the moment the side effect succeeded."""

    id: int
    action: str  # e.g. "cancel-migration", "uncordon", "cancel-evacuation", "restore-labels"
    params: dict[str, Any]
    registered_at: datetime
    state: CompensationState = CompensationState.PENDING
    outcome: str | None = None
    manual_action: str | None = None


class Verdict(Record):
    """The drill's final judgement, with every reason it did not pass."""

    outcome: DrillOutcome
    reasons: list[str] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    observed_downtime_ms: float | None = None
    evidence_dir: str | None = None
