"""What the drill needs from a platform, whichever it is (KubeVirt or plain libvirt hosts).

Tasks talk only to this seam. Each adapter (the only modules that import `kubernetes` / `libvirt`)
turns platform objects into these plain records, and keeps the raw objects for the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from livedrill.outcomes import CheckResult, TimelineEvent
from livedrill.spec import DrillSpec, VMRef


@dataclass(frozen=True)
class VMState:
    """A VM as observed now."""

    ref: VMRef
    node: str | None  # KubeVirt node or libvirt host name where it runs
    running: bool
    memory_gib: float
    raw: dict[str, Any] = field(default_factory=dict)  # the platform's own object(s), unredacted


class MigrationPhase:
    """Phases livedrill reports, whatever the platform calls them (KubeVirt's VMIM phases verbatim)."""

    TERMINAL_OK = "Succeeded"
    TERMINAL_FAILED = "Failed"


@dataclass(frozen=True)
class MigrationHandle:
    """Identifies one migration the drill started: enough to observe and cancel it after a crash."""

    vm: VMRef
    platform_id: str  # VMIM name (KubeVirt) or "src->dst" job key (libvirt)
    source: str
    target: str | None
    uid: str | None = None


@dataclass(frozen=True)
class MigrationObservation:
    phase: str  # e.g. Pending, Scheduling, ..., Running, Succeeded, Failed
    terminal: bool
    succeeded: bool
    source: str | None
    target: str | None
    failure_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


# A compensation registrar: the adapter calls it the moment a side effect has succeeded,
# with the action name and the parameters its undo needs (persisted before the next step).
RegisterCompensation = Callable[[str, dict[str, Any]], None]
# Timeline sink: the adapter reports what it observes while it waits.
EmitEvent = Callable[[TimelineEvent], None]


class PlatformAdapter(Protocol):
    def versions(self) -> dict[str, str]: ...

    def describe_vm(self, vm: VMRef) -> VMState: ...

    def preflight(self, spec: DrillSpec, vm: VMRef) -> list[CheckResult]: ...

    def start_migration(self, vm: VMRef, target: str | None, register: RegisterCompensation) -> MigrationHandle: ...

    def observe_migration(self, handle: MigrationHandle) -> MigrationObservation: ...

    def cancel_migration(self, handle: MigrationHandle, timeout_s: float) -> str:
        """Cancel an in-flight migration and wait until the platform reports it over; returns the outcome."""
        ...

    def postcheck(self, handle: MigrationHandle, before: VMState) -> list[CheckResult]: ...

    def undo_actions(self) -> dict[str, Callable[[dict[str, Any]], str]]:
        """The undo of each compensation this platform registers, by action name; each is idempotent."""
        ...

    def close(self) -> None: ...
