"""The quarterly schedule: first Saturday of Jan/Apr/Jul/Oct at 02:00 Asia/Shanghai, change freezes skipped."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from livedrill.deploy.schedule import freeze_covering, kept_starts, planned_starts, rdate_rruleset
from livedrill.spec import ChangeFreeze, ScheduleConfig, parse_spec
from tests.core.test_spec import GOOD

UTC, SHANGHAI = timezone.utc, ZoneInfo("Asia/Shanghai")


def _freeze(start: str, end: str | None = None, reason: str = "") -> ChangeFreeze:
    return ChangeFreeze(start=date.fromisoformat(start), end=date.fromisoformat(end) if end else None, reason=reason)


@pytest.mark.parametrize("after, expected", [
    # 2026-11-26 (a Thursday): the next first Saturdays of a quarter month.
    (datetime(2026, 11, 26, tzinfo=UTC), ["2027-01-02", "2027-04-03", "2027-07-03", "2027-10-02"]),
    # 2027-01-01 18:00 UTC is already 2027-01-02 02:00 in Shanghai: that start is not after `after`.
    (datetime(2027, 1, 1, 18, 0, tzinfo=UTC), ["2027-04-03", "2027-07-03", "2027-10-02", "2028-01-01"]),
    # One minute earlier it still is.
    (datetime(2027, 1, 1, 17, 59, tzinfo=UTC), ["2027-01-02", "2027-04-03", "2027-07-03", "2027-10-02"]),
])
def test_default_is_the_first_saturday_of_each_quarter_at_two_in_shanghai(after, expected):
    starts = planned_starts(ScheduleConfig(), after, after.replace(year=after.year + 2))[:4]
    assert [s.at.date().isoformat() for s in starts] == expected
    for s in starts:
        assert (s.at.weekday(), s.at.day <= 7, s.at.hour, s.at.minute) == (5, True, 2, 0)
        assert s.at.utcoffset().total_seconds() == 8 * 3600


@pytest.mark.parametrize("freezes, day, covered", [
    ([], "2027-01-02", False),
    ([("2027-01-02", None)], "2027-01-02", True),  # a single day
    ([("2026-12-20", "2027-01-05")], "2027-01-02", True),  # inside a range
    ([("2026-12-20", "2027-01-05")], "2027-01-05", True),  # the end is inclusive
    ([("2026-12-20", "2027-01-05")], "2027-01-06", False),
    ([("2027-01-03", None), ("2027-01-01", "2027-01-02")], "2027-01-02", True),  # any freeze counts
])
def test_freeze_covering(freezes, day, covered):
    assert (freeze_covering(date.fromisoformat(day), [_freeze(*f) for f in freezes]) is not None) is covered


def test_a_frozen_quarter_is_skipped_and_marked_with_its_freeze():
    sched = ScheduleConfig(change_freeze=[_freeze("2026-12-25", "2027-01-03", "year-end close")])
    after = datetime(2026, 11, 26, tzinfo=UTC)
    planned = planned_starts(sched, after, datetime(2027, 12, 31, tzinfo=UTC))
    assert [(p.at.date().isoformat(), p.skipped) for p in planned] == [
        ("2027-01-02", True), ("2027-04-03", False), ("2027-07-03", False), ("2027-10-02", False)]
    assert planned[0].frozen_by.reason == "year-end close"
    assert kept_starts(sched, after)[0] == datetime(2027, 4, 3, 2, 0, tzinfo=SHANGHAI)


def test_a_start_is_frozen_by_its_local_day_in_the_schedules_timezone():
    # 02:00 Shanghai on 2 January is 18:00 UTC on 1 January: a 2 January freeze skips it, a 1 January one does not.
    after, until = datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)
    [by_local_day] = planned_starts(ScheduleConfig(change_freeze=[_freeze("2027-01-02")]), after, until)
    [by_utc_day] = planned_starts(ScheduleConfig(change_freeze=[_freeze("2027-01-01")]), after, until)
    assert by_local_day.skipped and not by_utc_day.skipped


def test_a_custom_cron_and_zone_keep_local_time_across_daylight_saving():
    sched = ScheduleConfig(cron="30 1 * * 0#2", timezone="Europe/Berlin")  # second Sunday of every month
    starts = kept_starts(sched.model_copy(update={"horizon_days": 200}), datetime(2027, 1, 1, tzinfo=UTC))
    assert {(s.hour, s.minute, s.weekday()) for s in starts} == {(1, 30, 6)}
    assert {s.utcoffset().total_seconds() for s in starts} == {3600, 7200}  # CET and CEST both seen


def test_naive_bounds_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        planned_starts(ScheduleConfig(), datetime(2027, 1, 1), datetime(2028, 1, 1, tzinfo=UTC))


def test_the_rdate_rule_set_gives_the_prefect_server_exactly_the_kept_starts():
    from prefect.server.schemas.schedules import RRuleSchedule

    sched = ScheduleConfig(change_freeze=[_freeze("2027-07-01", "2027-07-31", "mid-year close")])
    now = datetime(2026, 11, 26, tzinfo=UTC)
    kept = kept_starts(sched, now)
    server = RRuleSchedule(rrule=rdate_rruleset(kept), timezone=sched.timezone)
    dates = asyncio.run(server.get_dates(n=6, start=now))
    assert [d.isoformat() for d in dates] == [k.isoformat() for k in kept[:6]]
    assert date(2027, 7, 3) not in {d.date() for d in dates}


def test_an_empty_schedule_is_an_error_not_a_silent_never():
    with pytest.raises(ValueError, match="no start"):
        rdate_rruleset([])


@pytest.mark.parametrize("yaml_tail, words", [
    ("schedule: {cron: '0 2 * 13 *'}", "5-field cron"),
    ("schedule: {timezone: Mars/Olympus}", "IANA timezone"),
    ("schedule: {change_freeze: [{start: 2027-01-10, end: 2027-01-01}]}", "before start"),
    ("approval: {required: yes, timeout_s: 0}", "greater than 0"),
    ("concurrency: {on_busy: queue}", "'wait' or 'fail'"),
])
def test_spec_rejects_bad_operations_settings(yaml_tail, words):
    from livedrill.spec import SpecError

    with pytest.raises(SpecError) as info:
        parse_spec(GOOD + yaml_tail + "\n")
    assert words in str(info.value)


def test_existing_specs_get_the_defaults():
    spec = parse_spec(GOOD)
    assert (spec.schedule.cron, spec.schedule.timezone, spec.approval.required, spec.concurrency.on_busy) == \
        ("0 2 * 1,4,7,10 6#1", "Asia/Shanghai", False, "fail")


def test_a_frequent_cron_is_cut_to_what_prefect_can_store():
    from livedrill.deploy.schedule import MAX_SCHEDULED_STARTS

    hourly = ScheduleConfig(cron="0 * * * *", timezone="UTC")
    starts = kept_starts(hourly, datetime(2027, 1, 1, tzinfo=UTC))
    assert len(starts) == MAX_SCHEDULED_STARTS
    assert len(rdate_rruleset(starts)) <= 6500  # Prefect's limit on a stored RRULE
    assert [p.at.hour for p in planned_starts(hourly, datetime(2027, 1, 1, tzinfo=UTC),
                                              datetime(2028, 1, 1, tzinfo=UTC), limit=3)] == [1, 2, 3]
