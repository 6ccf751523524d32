"""Pure decisions of the libvirt migration monitor (how nova's libvirt driver and virt-launcher decide).

The adapter's observe loop reads job stats and calls these; they never touch libvirt. Each is a
table-tested function of numbers in, decision out:

- the completion budget is the drill's one migration budget (`livedrill.spec.migration_deadline_s`) over
  the data to move (memory, plus disks when they are copied); the adapter computes it and passes it in;
- progress means a new low-water mark of `data_remaining`; no new mark for `progress_timeout_s` is a stall;
- the allowed downtime is raised in steps over time (nova: `downtime_steps`);
- on a stall or an exhausted budget: switch to post-copy when the spec allows it, else abort —
  and once the guest runs in post-copy, never abort (its state is split between the hosts).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

GIB = 1024**3


class MonitorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    progress_timeout_s: float = Field(150.0, gt=0, description="No new low-water mark of data_remaining for this long = stalled")
    downtime_steps: int = Field(10, ge=1, description="Steps to raise max downtime to the spec's target (nova)")
    downtime_delay_per_gib_s: float = Field(75.0, ge=0, description="Seconds between downtime steps per GiB of data (nova)")


@dataclass(frozen=True)
class Progress:
    """The lowest data_remaining seen so far and when it was first seen (monotonic seconds)."""

    low_water_bytes: int | None
    at_s: float


def track_progress(previous: Progress, data_remaining: int | None, now_s: float) -> Progress:
    """A new low-water mark of remaining data is progress; anything else keeps the old mark and its time.

    data_remaining is None before libvirt reports the first figures: the clock keeps running from the start.
    """
    if data_remaining is None:
        return previous
    if previous.low_water_bytes is None or data_remaining < previous.low_water_bytes:
        return Progress(low_water_bytes=data_remaining, at_s=now_s)
    return previous


def is_stalled(progress: Progress, now_s: float, progress_timeout_s: float) -> bool:
    return now_s - progress.at_s >= progress_timeout_s


def downtime_steps(max_downtime_ms: int, steps: int, delay_per_gib_s: float, data_bytes: int) -> list[tuple[float, int]]:
    """(seconds after start, allowed downtime ms) pairs, from max/steps up to max (nova's schedule).

    The delay between steps grows with the data to move (a bigger guest gets longer at each step), counting
    at least 1 GiB so a small guest does not rush to the maximum.
    """
    delay_s = delay_per_gib_s * max(1.0, data_bytes / GIB)
    base = max_downtime_ms / steps
    offset = (max_downtime_ms - base) / steps
    return [(delay_s * i, int(round(base + offset * i))) for i in range(steps + 1)]


def downtime_due(schedule: list[tuple[float, int]], elapsed_s: float, applied_ms: int | None) -> int | None:
    """The downtime to apply now, or None when the current step is already applied."""
    due = None
    for after_s, downtime_ms in schedule:
        if elapsed_s >= after_s:
            due = downtime_ms
    if due is None or due == applied_ms:
        return None
    return due


class MonitorAction(str, enum.Enum):
    CONTINUE = "continue"
    SET_DOWNTIME = "set-downtime"
    START_POSTCOPY = "start-postcopy"
    ABORT = "abort"


@dataclass(frozen=True)
class Decision:
    action: MonitorAction
    reason: str = ""
    downtime_ms: int | None = None


def decide(
    *,
    elapsed_s: float,
    budget_s: float,
    progress: Progress,
    now_s: float,
    progress_timeout_s: float,
    in_postcopy: bool,
    postcopy_requested: bool,
    allow_post_copy: bool,
    downtime_now_ms: int | None,
) -> Decision:
    """One step of the monitor, from what was just observed.

    Order matters: post-copy first (nothing may abort it, and nothing more is to decide), then the
    budget, then a stall, then the downtime schedule.
    """
    if in_postcopy or postcopy_requested:
        return Decision(MonitorAction.CONTINUE, "post-copy: the guest runs on the target; it can only finish")
    trigger = None
    if elapsed_s >= budget_s:
        trigger = f"completion timeout: {elapsed_s:.1f} s elapsed of a {budget_s:.1f} s budget"
    elif is_stalled(progress, now_s, progress_timeout_s):
        trigger = (f"progress timeout: no new low-water mark of data_remaining "
                   f"({progress.low_water_bytes} bytes) for {now_s - progress.at_s:.1f} s")
    if trigger is not None:
        if allow_post_copy:
            return Decision(MonitorAction.START_POSTCOPY, f"{trigger}; switching to post-copy")
        return Decision(MonitorAction.ABORT, f"{trigger}; post-copy not allowed, aborting")
    if downtime_now_ms is not None:
        return Decision(MonitorAction.SET_DOWNTIME, f"downtime step: allow {downtime_now_ms} ms", downtime_now_ms)
    return Decision(MonitorAction.CONTINUE)
