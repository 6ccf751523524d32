"""Operational gates: may a drill start at this moment? Pure functions of the spec and a given instant.

The drill window and the change-freeze calendar are both read in the spec's `schedule.timezone`, the
zone the bank's change calendar is written in; `now` is always passed in (timezone-aware) so that the
same inputs give the same verdict in a test, a pre-flight and a readiness scan.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from livedrill.deploy.schedule import freeze_covering
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.spec import DrillSpec, DrillWindow, ScheduleConfig

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_hours(allowed_hours: str) -> tuple[time, time | None]:
    """(start, end); end None means midnight at the end of the day ("24:00")."""
    start_text, end_text = allowed_hours.split("-")
    start = time.fromisoformat(start_text)
    end = None if end_text == "24:00" else time.fromisoformat(end_text)
    return start, end


def window_open(window: DrillWindow, local: datetime) -> bool:
    """Is `local` (in the schedule's zone) inside the window? A wrapping range belongs to the day it starts on."""
    start, end = _parse_hours(window.allowed_hours)
    now_t = local.time().replace(tzinfo=None)
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local - timedelta(days=1)).weekday()]
    if end is None or start < end:  # same-day range
        return today in window.weekdays and now_t >= start and (end is None or now_t < end)
    # wraps midnight: the evening part opens on a listed day, the morning part belongs to the day before
    if now_t >= start:
        return today in window.weekdays
    return now_t < end and yesterday in window.weekdays


def window_check(window: DrillWindow | None, timezone: str, now: datetime) -> CheckResult:
    if window is None:
        return CheckResult(name="drill-window", status=CheckStatus.NOT_APPLICABLE, subject="spec window",
                           message="the spec sets no drill window: a drill may start at any time",
                           evidence={"now": now.isoformat(), "timezone": timezone})
    local = now.astimezone(ZoneInfo(timezone))
    ok = window_open(window, local)
    when = f"{local:%a %Y-%m-%d %H:%M} {timezone}"
    return CheckResult(
        name="drill-window", status=CheckStatus.PASS if ok else CheckStatus.FAIL, subject="spec window",
        message=f"{when} is inside the drill window {window.allowed_hours} on {','.join(window.weekdays)}" if ok
        else f"{when} is outside the drill window {window.allowed_hours} on {','.join(window.weekdays)}",
        remedy=None if ok else "start the drill inside the window, or change window in the drill spec (with the change board)",
        evidence={"now": now.isoformat(), "local": local.isoformat(), "timezone": timezone,
                  "window": window.model_dump()})


def freeze_check(schedule: ScheduleConfig, now: datetime) -> CheckResult:
    local = now.astimezone(ZoneInfo(schedule.timezone))
    freeze = freeze_covering(local.date(), schedule.change_freeze)
    evidence = {"now": now.isoformat(), "local_date": local.date().isoformat(), "timezone": schedule.timezone,
                "change_freeze": [f.model_dump(mode="json") for f in schedule.change_freeze]}
    if freeze is None:
        return CheckResult(name="change-freeze", status=CheckStatus.PASS, subject="change calendar",
                           message=f"{local.date()} ({schedule.timezone}) is not in a change freeze "
                           f"({len(schedule.change_freeze)} freeze(s) in the calendar)", evidence=evidence)
    span = f"{freeze.start}..{freeze.end or freeze.start}"
    return CheckResult(
        name="change-freeze", status=CheckStatus.FAIL, subject="change calendar",
        message=f"{local.date()} ({schedule.timezone}) is inside the change freeze {span}"
        + (f" ({freeze.reason})" if freeze.reason else ""),
        remedy=f"drill after {freeze.end or freeze.start}, or have the change board lift the freeze (schedule.change_freeze)",
        evidence={**evidence, "frozen_by": freeze.model_dump(mode="json")})


def operational_gates(spec: DrillSpec, now: datetime) -> list[CheckResult]:
    """The time-based gates of a drill, judged at `now` (timezone-aware)."""
    return [window_check(spec.window, spec.schedule.timezone, now), freeze_check(spec.schedule, now)]


def window_today_check(window: DrillWindow | None, timezone: str, now: datetime) -> CheckResult:
    """For a daily readiness scan: does the drill window open today (in the schedule's zone)?"""
    if window is None:
        return window_check(None, timezone, now)
    local = now.astimezone(ZoneInfo(timezone))
    today = WEEKDAYS[local.weekday()]
    ok = today in window.weekdays
    return CheckResult(
        name="drill-window", status=CheckStatus.PASS if ok else CheckStatus.FAIL, subject="spec window",
        message=f"the drill window {window.allowed_hours} {timezone} opens today ({today} {local.date()})" if ok
        else f"no drill window today ({today} {local.date()}): the window opens on {','.join(window.weekdays)}",
        remedy=None if ok else f"drill on {','.join(window.weekdays)}, or change window.weekdays in the drill spec",
        evidence={"now": now.isoformat(), "local": local.isoformat(), "timezone": timezone, "window": window.model_dump()})
