"""Table tests of the pure migration-monitor decisions (no libvirt needed)."""

from __future__ import annotations

import pytest

from livedrill.migration_monitor import (
    GIB,
    MonitorAction,
    MonitorConfig,
    Progress,
    decide,
    downtime_due,
    downtime_steps,
    is_stalled,
    track_progress,
)


@pytest.mark.parametrize(
    "previous, remaining, now, expected",
    [
        (Progress(None, 0.0), None, 5.0, Progress(None, 0.0)),  # no figures yet: clock keeps running from start
        (Progress(None, 0.0), 900, 1.0, Progress(900, 1.0)),  # first figure is a mark
        (Progress(900, 1.0), 800, 2.0, Progress(800, 2.0)),  # lower: progress
        (Progress(800, 2.0), 800, 3.0, Progress(800, 2.0)),  # equal: no progress
        (Progress(800, 2.0), 950, 4.0, Progress(800, 2.0)),  # dirtied back up (new pass): no new mark
        (Progress(800, 2.0), 0, 5.0, Progress(0, 5.0)),
    ],
)
def test_track_progress_low_water_mark(previous, remaining, now, expected):
    assert track_progress(previous, remaining, now) == expected


@pytest.mark.parametrize(
    "at, now, timeout, stalled",
    [(0.0, 149.9, 150, False), (0.0, 150.0, 150, True), (10.0, 12.0, 2.0, True), (10.0, 11.0, 2.0, False)],
)
def test_is_stalled(at, now, timeout, stalled):
    assert is_stalled(Progress(1, at), now, timeout) is stalled


@pytest.mark.parametrize(
    "max_ms, steps, delay, data, expected",
    [
        # nova's defaults (500 ms, 10 steps, 75 s/GiB) for a 3 GiB guest
        (500, 10, 75, 3 * GIB, [(225.0 * i, int(round(50 + 45 * i))) for i in range(11)]),
        # small guests count as 1 GiB for the delay
        (100, 4, 75, 256 * 1024**2, [(0.0, 25), (75.0, 44), (150.0, 62), (225.0, 81), (300.0, 100)]),
        # one step: straight to the target
        (30, 1, 10, GIB, [(0.0, 30), (10.0, 30)]),
    ],
)
def test_downtime_steps(max_ms, steps, delay, data, expected):
    schedule = downtime_steps(max_ms, steps, delay, data)
    assert schedule == expected
    assert schedule[-1][1] == max_ms
    assert [d for _, d in schedule] == sorted(d for _, d in schedule)


@pytest.mark.parametrize(
    "elapsed, applied, expected",
    [
        (0.0, None, 25),  # first step applies at once
        (0.0, 25, None),  # already applied
        (80.0, 25, 44),  # next step due
        (1000.0, 62, 100),  # late: jump to the step due now, not the next one
        (1000.0, 100, None),
    ],
)
def test_downtime_due(elapsed, applied, expected):
    schedule = [(0.0, 25), (75.0, 44), (150.0, 62), (225.0, 81), (300.0, 100)]
    assert downtime_due(schedule, elapsed, applied) == expected


def test_downtime_due_before_first_step():
    assert downtime_due([(5.0, 10)], 1.0, None) is None


BASE = dict(budget_s=100.0, now_s=50.0, progress_timeout_s=20.0, postcopy_requested=False, downtime_now_ms=None)


@pytest.mark.parametrize(
    "case, overrides, action",
    [
        ("healthy", dict(elapsed_s=50.0, progress=Progress(10, 45.0), in_postcopy=False, allow_post_copy=False),
         MonitorAction.CONTINUE),
        ("budget spent, no post-copy", dict(elapsed_s=100.0, progress=Progress(10, 49.0), in_postcopy=False,
                                            allow_post_copy=False), MonitorAction.ABORT),
        ("budget spent, post-copy allowed", dict(elapsed_s=120.0, progress=Progress(10, 49.0), in_postcopy=False,
                                                 allow_post_copy=True), MonitorAction.START_POSTCOPY),
        ("stalled, no post-copy", dict(elapsed_s=50.0, progress=Progress(10, 30.0), in_postcopy=False,
                                       allow_post_copy=False), MonitorAction.ABORT),
        ("stalled, post-copy allowed", dict(elapsed_s=50.0, progress=Progress(10, 30.0), in_postcopy=False,
                                            allow_post_copy=True), MonitorAction.START_POSTCOPY),
        ("in post-copy and over budget: never abort", dict(elapsed_s=500.0, progress=Progress(10, 0.0),
                                                           in_postcopy=True, allow_post_copy=False),
         MonitorAction.CONTINUE),
        ("post-copy requested, not yet observed", dict(elapsed_s=500.0, progress=Progress(10, 0.0), in_postcopy=False,
                                                       allow_post_copy=True, postcopy_requested=True),
         MonitorAction.CONTINUE),
        ("downtime step due", dict(elapsed_s=10.0, progress=Progress(10, 45.0), in_postcopy=False,
                                   allow_post_copy=False, downtime_now_ms=44), MonitorAction.SET_DOWNTIME),
        ("abort wins over a downtime step", dict(elapsed_s=100.0, progress=Progress(10, 45.0), in_postcopy=False,
                                                 allow_post_copy=False, downtime_now_ms=44), MonitorAction.ABORT),
    ],
)
def test_decide(case, overrides, action):
    decision = decide(**{**BASE, **overrides})
    assert decision.action is action, case
    if action is MonitorAction.SET_DOWNTIME:
        assert decision.downtime_ms == overrides["downtime_now_ms"]
    if action in (MonitorAction.ABORT, MonitorAction.START_POSTCOPY):
        assert "timeout" in decision.reason
