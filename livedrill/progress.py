"""Progress of a running stage as typed events, a fixed vocabulary.

The migrate and drain stages emit these; the operator's terminal line (`status_line`) and the Prefect
progress bar (`livedrill.deploy.report.progress_percent`) both render from the event, so rewording the
terminal cannot move the bar.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeFigures(_Event):
    """One probe's live figures, as the terminal shows them beside the stage."""

    name: str
    rate_per_s: float
    ok: int
    failed: int
    in_flight: int
    last_gap_ms: float | None = None  # the gap closed by the latest success


class Countdown(_Event):
    """The probes' warm-up before a migration, or their cool-down after it."""

    kind: Literal["countdown"] = "countdown"
    stage: Literal["warm-up", "cool-down"]
    seconds_left: float
    probes: list[ProbeFigures] = Field(default_factory=list)


class MigrationPhaseSeen(_Event):
    """The migration as last observed: its platform phase and where it goes."""

    kind: Literal["migration_phase"] = "migration_phase"
    phase: str  # the platform's phase name (livedrill.platforms.base.MigrationPhase for the terminal ones)
    source: str | None = None
    target: str | None = None
    probes: list[ProbeFigures] = Field(default_factory=list)


class DrainProgress(_Event):
    """A node drain as last observed."""

    kind: Literal["drain"] = "drain"
    node: str
    vmis_off: int
    vmis: int
    pods_left: int
    migrating: int


ProgressEvent = Annotated[Union[Countdown, MigrationPhaseSeen, DrainProgress], Field(discriminator="kind")]
Progress = Callable[[ProgressEvent], None]


def status_line(event: ProgressEvent) -> str:
    """The terminal's one status line for `event`: for a person to read, never parsed."""
    if isinstance(event, Countdown):
        return f"{event.stage:<9} {event.seconds_left:4.1f}s left" + _figures(event.probes)
    if isinstance(event, MigrationPhaseSeen):
        return f"migrate  phase={event.phase:<15} {event.source or '?'} -> {event.target or '?'}" + _figures(event.probes)
    return (f"drain {event.node}: {event.vmis_off}/{event.vmis} VMIs off, {event.pods_left} pod(s) left, "
            f"{event.migrating} migrating")


def _figures(probes: list[ProbeFigures]) -> str:
    if not probes:
        return ""
    return " | " + " ".join(f"{p.name} {p.rate_per_s:.0f}/s ok={p.ok} failed={p.failed} in-flight={p.in_flight}"
                            f" last-gap={p.last_gap_ms or 0:.0f}ms" for p in probes)
