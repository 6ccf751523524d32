"""What the drill needs from a platform, whichever it is: the records, the adapter, its optional capabilities.

Stages talk only to this seam (and to `livedrill.platforms.registry`, which opens the spec's platform).
Each platform package (the only modules that import its client library) turns platform objects into
these plain records, and keeps the raw objects for the evidence.

A capability only some platforms have (a change watch, a node drain, a dirty-rate reading) is declared
here as a Protocol and offered in the adapter's `Capabilities`; a stage that needs one asks with
`need_...()` and gets `CapabilityMissing` ("platform libvirt cannot drain") when the platform has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Protocol


from livedrill.errors import InputError
from livedrill.forecast import DirtyRateReading, MigrationFigures, MigrationLimits
from livedrill.metrics.config import MetricsConfig
from livedrill.outcomes import CheckResult, TimelineEvent, VMState
from livedrill.spec import Budgets, DrillSpec, VMRef

if TYPE_CHECKING:
    from livedrill.drain import DrainObservation, DrainSettings, EvictionAnswer


class MigrationPhase:
    """The one home of the phases livedrill reports, whatever the platform calls them.

    They are KubeVirt's VirtualMachineInstanceMigration phases verbatim (status.phase: the MigrationPhase
    constants of https://github.com/kubevirt/kubevirt/blob/main/staging/src/kubevirt.io/api/core/v1/types.go);
    the libvirt adapter reports a subset, plus two of its own. KubeVirt ends a migration, and an aborted one, in Succeeded or Failed; the libvirt adapter
    reports the same two once it has judged where the domain runs.
    """

    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    SCHEDULED = "Scheduled"
    PREPARING_TARGET = "PreparingTarget"
    TARGET_READY = "TargetReady"
    RUNNING = "Running"  # the guest's memory is being copied
    POSTCOPY = "PostCopy"  # libvirt: switched to post-copy, the guest runs on the target (cannot be aborted)
    SETTLING = "Settling"  # libvirt: the job ended, where the domain runs is not judged yet
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    # livedrill's own, for KubeVirt: the VirtualMachineInstanceMigration vanished before it reached an end
    # (deleted by someone else, or garbage-collected with its VMI); nothing more can be observed of it.
    DELETED = "Deleted"
    BEFORE_TRANSFER = (PENDING, SCHEDULING, SCHEDULED, PREPARING_TARGET, TARGET_READY)
    ORDER = (*BEFORE_TRANSFER, RUNNING, POSTCOPY, SETTLING, SUCCEEDED)  # as a migration passes them
    TERMINAL = frozenset({SUCCEEDED, FAILED, DELETED})


@dataclass(frozen=True)
class VMPreflight:
    """One VM's pre-flight: the platform's checks, and the VM as seen when it could be described."""

    checks: list[CheckResult]
    before: VMState | None  # None: the VM is missing or not running, so there is nothing to migrate
    limits: MigrationLimits | None = None  # what the platform will migrate it with (the convergence forecast's input)


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
UndoAction = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class AdapterContext:
    """What a platform's adapter is opened with besides its own spec section."""

    run_id: str = ""
    budgets: Budgets = field(default_factory=Budgets)
    emit: EmitEvent | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # the spec's `metrics:`: a cluster's metrics store


# ------------------------------------------------------------------ optional capabilities


class ChangeWatch(Protocol):
    """Signals that the migration changed, so the loop reads it at once instead of at the next poll.

    Only a signal: the loop still reads the migration itself, so a missed event costs one poll interval."""

    def __enter__(self) -> "ChangeWatch": ...

    def __exit__(self, *exc: object) -> None: ...

    def wait(self, timeout_s: float) -> bool:
        """Block until a change or `timeout_s`; True when a change was signalled."""
        ...

    def stats(self) -> dict[str, Any]:
        """What the watch did (events, restarts, ...), for the timeline."""
        ...


class EvictionOutcome(Protocol):
    answer: "EvictionAnswer"
    message: str
    retry_after_s: float | None


class NodeDrain(Protocol):
    """Cordon a node, evict its pods and follow the VMs' evacuations (objects as the platform shows them)."""

    def preflight(self, spec: DrillSpec) -> list[CheckResult]: ...

    def observe(self, spec: DrillSpec, node: str) -> "DrainObservation": ...

    def pods_on(self, node: str) -> list[dict]: ...

    def vmis(self) -> list[dict]: ...

    def vmis_on(self, node: str) -> list[dict]: ...

    def vmi(self, ref: VMRef) -> dict | None: ...

    def vmims(self) -> list[dict]: ...

    def cordon(self, node: str) -> dict: ...

    def uncordon(self, params: dict[str, Any]) -> str: ...

    def evict(self, namespace: str, pod: str) -> EvictionOutcome: ...

    def cancel_evacuation(self, params: dict[str, Any]) -> str: ...


class DirtyRateMeter(Protocol):
    """Measures how fast a running guest dirties its memory, without migrating it (the forecast's input)."""

    def measure_dirty_rate(self, vm: VMRef, window_s: int, windows: int) -> DirtyRateReading:
        """Bytes per second, or why there is no figure. A meter that samples the guest samples `windows` windows of
        `window_s` seconds one after another and reports the highest (livedrill.forecast.busiest_reading); one
        that reads a metrics store reads what the store already holds over its own lookback."""
        ...


class TouchedMemoryMeter(Protocol):
    """Estimates how much of a running guest's memory holds data (pages not all zero), without migrating it: what a
    pre-copy's first round sends (the forecast's input)."""

    def measure_touched_memory(self, vm: VMRef, sample_pages: int) -> float | None:
        """Bytes, from `sample_pages` sampled pages; None when it could not be measured."""
        ...


class MigrationFiguresReader(Protocol):
    """What the platform measured of a finished migration (its time, pause, data, rounds), beside the forecast."""

    def migration_figures(self, handle: MigrationHandle) -> MigrationFigures | None:
        """None when the platform keeps no figures for it (e.g. libvirt after post-copy)."""
        ...


class CapabilityMissing(InputError):
    """The spec asks for something its platform cannot do (bad input: nothing was changed)."""


OpenDrain = Callable[["DrainSettings", float], NodeDrain]  # (settings, cancel timeout in s) -> a drain


@dataclass(frozen=True)
class Capabilities:
    """What a platform offers beyond the adapter's core; None = it cannot."""

    kind: str
    watch: Callable[[MigrationHandle], ChangeWatch] | None = None
    drain: OpenDrain | None = None
    dirty_rate_meter: DirtyRateMeter | None = None
    touched_memory_meter: TouchedMemoryMeter | None = None
    migration_figures: MigrationFiguresReader | None = None

    def need_drain(self) -> OpenDrain:
        if self.drain is None:
            raise CapabilityMissing(f"platform {self.kind} cannot drain a node")
        return self.drain


# ------------------------------------------------------------------ the adapter


class PlatformAdapter(Protocol):
    poll_interval_s: float  # how often a loop re-reads a migration when nothing signals a change

    def capabilities(self) -> Capabilities: ...

    def versions(self) -> dict[str, str]: ...

    def describe_vm(self, vm: VMRef) -> VMState: ...

    def preflight(self, spec: DrillSpec, vm: VMRef) -> VMPreflight: ...

    def start_migration(self, vm: VMRef, target: str | None, register: RegisterCompensation) -> MigrationHandle: ...

    def observe_migration(self, handle: MigrationHandle) -> MigrationObservation: ...

    def cancel_migration(self, handle: MigrationHandle, timeout_s: float) -> str:
        """Cancel an in-flight migration and wait until the platform reports it over; returns the outcome."""
        ...

    def postcheck(self, handle: MigrationHandle, before: VMState) -> list[CheckResult]: ...

    def undo_actions(self, abort_timeout_s: float) -> dict[str, UndoAction]:
        """The undo of each compensation this platform registers, by action name; each is idempotent.

        An undo that waits for the platform to show its effect waits at most `abort_timeout_s` (the spec's
        budgets.abort_timeout_s), then raises UndoNotObserved naming what the operator must do by hand.
        """
        ...

    def close(self) -> None: ...
