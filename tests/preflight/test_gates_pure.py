"""Table tests of the operational gates (drill window, change freeze) and the readiness judgement."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from livedrill import gates
from livedrill.errors import InputError
from livedrill.outcomes import CheckStatus
from livedrill.platforms.kubevirt.checks import CheckPolicy, ClusterObjects
from livedrill.readiness import judge_readiness, parse_selector
from livedrill.spec import ChangeFreeze, DrillWindow, ScheduleConfig, SpecError, parse_spec

SHANGHAI = "Asia/Shanghai"  # UTC+8, no DST


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# 2026-11-28 is a Saturday; Shanghai local = UTC + 8h.
@pytest.mark.parametrize("hours, weekdays, now_utc, inside", [
    ("01:00-05:00", ["sat"], "2026-11-27T17:30", True),   # Sat 01:30 local
    ("01:00-05:00", ["sat"], "2026-11-27T21:00", False),  # Sat 05:00 local: the end is exclusive
    ("01:00-05:00", ["sun"], "2026-11-27T17:30", False),  # right hours, wrong day
    ("22:00-04:00", ["fri"], "2026-11-27T15:00", True),   # Fri 23:00 local
    ("22:00-04:00", ["fri"], "2026-11-27T19:00", True),   # Sat 03:00 local belongs to Friday's window
    ("22:00-04:00", ["sat"], "2026-11-27T19:00", False),  # ...not to Saturday's
    ("22:00-04:00", ["fri"], "2026-11-27T21:00", False),  # Sat 05:00 local
    ("20:00-24:00", ["sat"], "2026-11-28T15:59", True),   # Sat 23:59 local
    ("00:00-24:00", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "2026-11-28T03:00", True),
])
def test_window_open(hours, weekdays, now_utc, inside):
    check = gates.window_check(DrillWindow(allowed_hours=hours, weekdays=weekdays), SHANGHAI, utc(now_utc))
    assert (check.status is CheckStatus.PASS) == inside, check.message
    if not inside:
        assert "outside the drill window" in check.message and check.remedy
    assert check.evidence["timezone"] == SHANGHAI


def test_no_window_is_not_applicable():
    check = gates.window_check(None, SHANGHAI, utc("2026-11-28T03:00"))
    assert check.status is CheckStatus.NOT_APPLICABLE


@pytest.mark.parametrize("text, error", [
    ("25:00-04:00", "not a range"), ("01:00-24:30", "not a range"), ("01:00", "not a range"),
    ("03:00-03:00", "empty range")])
def test_window_hours_are_validated(text, error):
    with pytest.raises(ValueError, match=error):
        DrillWindow(allowed_hours=text)


def test_window_in_a_spec_loads_and_old_specs_stay_valid():
    base = ("name: t\ncluster: lab\nplatform: {kind: kubevirt}\nvms: [{namespace: banking, name: core}]\n"
            "mode: {kind: targeted}\nslo: {max_downtime_ms: 100, p99_latency_ms: 5}\n")
    assert parse_spec(base).window is None and parse_spec(base).preflight.core_tier_selector == {"tier": "core"}
    spec = parse_spec(base + "window: {allowed_hours: '01:00-05:00', weekdays: [sat, sun]}\n")
    assert spec.window.weekdays == ["sat", "sun"]
    with pytest.raises(SpecError) as err:
        parse_spec(base + "window: {weekdays: [someday]}\n")
    assert err.value.problems[0].path.startswith("window.weekdays")


@pytest.mark.parametrize("freezes, now_utc, frozen", [
    ([], "2026-12-30T12:00", False),
    ([ChangeFreeze(start=date(2026, 12, 25), end=date(2027, 1, 3), reason="year-end close")], "2026-12-30T12:00", True),
    ([ChangeFreeze(start=date(2026, 12, 31))], "2026-12-30T16:30", True),   # already Dec 31 in Shanghai
    ([ChangeFreeze(start=date(2026, 12, 31))], "2026-12-30T15:30", False),  # still Dec 30 in Shanghai
])
def test_change_freeze(freezes, now_utc, frozen):
    check = gates.freeze_check(ScheduleConfig(timezone=SHANGHAI, change_freeze=freezes), utc(now_utc))
    assert (check.status is CheckStatus.FAIL) == frozen, check.message
    if frozen:
        assert "change freeze" in check.message and check.remedy and check.evidence["frozen_by"]
    if freezes and freezes[0].reason and frozen:
        assert "year-end close" in check.message


@pytest.mark.parametrize("weekdays, now_utc, status", [
    (["sat"], "2026-11-28T10:00", CheckStatus.PASS), (["sun"], "2026-11-28T10:00", CheckStatus.FAIL)])
def test_window_today_for_readiness(weekdays, now_utc, status):
    check = gates.window_today_check(DrillWindow(allowed_hours="01:00-05:00", weekdays=weekdays), SHANGHAI, utc(now_utc))
    assert check.status is status


# ------------------------------------------------------------------ readiness


@pytest.mark.parametrize("text, expected", [
    ("tier=core", {"tier": "core"}), ("tier==core, app=ledger", {"tier": "core", "app": "ledger"})])
def test_parse_selector(text, expected):
    assert parse_selector(text) == expected


@pytest.mark.parametrize("text", ["tier", "tier!=core", "", "tier in (core)"])
def test_parse_selector_rejects_what_it_cannot_match(text):
    with pytest.raises(InputError, match="--selector"):
        parse_selector(text)


def _vm(namespace, name, labels, template_labels=None):
    return {"metadata": {"namespace": namespace, "name": name, "labels": labels},
            "spec": {"runStrategy": "Halted", "template": {"metadata": {"labels": template_labels or {}}}},
            "status": {"printableStatus": "Stopped"}}


def test_readiness_selects_vms_by_own_or_template_labels_and_reports_stopped_ones():
    vms = [_vm("banking", "by-label", {"tier": "core"}), _vm("banking", "by-template", {}, {"tier": "core"}),
           _vm("banking", "web", {"tier": "web"}), _vm("other", "elsewhere", {"tier": "core"})]
    objects = ClusterObjects(kubevirt_cr={}, nodes={}, vmims=[], now=utc("2026-11-28T10:00"))
    report = judge_readiness([], vms, objects, CheckPolicy(), {"tier": "core"}, namespace="banking")
    assert [str(v.vm) for v in report.vms] == ["banking/by-label", "banking/by-template"]
    assert all(not v.ready and "Stopped" in v.reasons[0] for v in report.vms)
    assert not report.ready


def test_readiness_of_nothing_is_not_ready():
    objects = ClusterObjects(kubevirt_cr={}, nodes={}, vmims=[], now=utc("2026-11-28T10:00"))
    assert not judge_readiness([], [], objects, CheckPolicy(), {"tier": "core"}).ready
