"""When the quarterly drill runs: the spec's cron in its timezone, minus the change-freeze days.

Prefect schedules cannot exclude dates from a cron, so `serve` gives the server the starts computed here
as an explicit iCalendar RDATE list (local wall-clock times with the schedule's timezone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import islice
from typing import Iterator
from zoneinfo import ZoneInfo

from cronsim import CronSim

from livedrill.spec import ChangeFreeze, ScheduleConfig


@dataclass(frozen=True)
class PlannedStart:
    """One start the cron asked for: kept, or skipped because a change freeze covers its day."""

    at: datetime  # aware, in the schedule's timezone
    frozen_by: ChangeFreeze | None = None

    @property
    def skipped(self) -> bool:
        return self.frozen_by is not None


def freeze_covering(day: date, freezes: list[ChangeFreeze]) -> ChangeFreeze | None:
    """The first change freeze whose inclusive date range contains `day`, if any."""
    for freeze in freezes:
        if freeze.start <= day <= (freeze.end or freeze.start):
            return freeze
    return None


# Prefect stores an RRULE text of at most 6,500 characters; one RDATE entry takes 16.
MAX_SCHEDULED_STARTS = 300


def _iter_planned(schedule: ScheduleConfig, after: datetime, until: datetime) -> Iterator[PlannedStart]:
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("after and until must be timezone-aware")
    zone = ZoneInfo(schedule.timezone)
    for at in CronSim(schedule.cron, after.astimezone(zone)):
        if at > until:
            return
        yield PlannedStart(at=at, frozen_by=freeze_covering(at.date(), schedule.change_freeze))


def planned_starts(schedule: ScheduleConfig, after: datetime, until: datetime,
                   limit: int | None = None) -> list[PlannedStart]:
    """Every cron start in (after, until] (the first `limit` of them), each marked with the freeze that skips it.

    `after` and `until` must be timezone-aware; the cron and the freeze days are read in the schedule's zone
    (cronsim steps through local time, so 02:00 stays 02:00 across daylight-saving changes).
    """
    return list(islice(_iter_planned(schedule, after, until), limit))


def kept_starts(schedule: ScheduleConfig, now: datetime) -> list[datetime]:
    """The starts a deployment gets: within the schedule's horizon from `now`, frozen days removed, at most
    MAX_SCHEDULED_STARTS of them (a frequent cron is cut short; running `serve` again extends it)."""
    until = now + timedelta(days=schedule.horizon_days)
    kept = (p.at for p in _iter_planned(schedule, now, until) if not p.skipped)
    return list(islice(kept, MAX_SCHEDULED_STARTS))


def rdate_rruleset(starts: list[datetime]) -> str:
    """An iCalendar rule set listing exactly these starts, as local times (the zone is given separately).

    Raises ValueError for an empty list: a schedule with no start would silently never run.
    """
    if not starts:
        raise ValueError("no start left in the horizon (every cron start falls on a change freeze?)")
    stamps = ",".join(s.strftime("%Y%m%dT%H%M%S") for s in starts)
    return f"DTSTART:{starts[0].strftime('%Y%m%dT%H%M%S')}\nRDATE:{stamps}"

