"""The planner: each decision table-tested, and whole plans checked the way a change manager would."""

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from livedrill.programme.inventory import Inventory, Target
from livedrill.programme.plan import (
    DrillRecord, Pending, PlanWindow, Standing, VMStanding, make_plan, open_windows, pack_window, risk_key,
    standing, vm_budget_s, why_unplaced)
from livedrill.programme.spec import ClusterLimits, Programme, RetestPolicy, Windows, load_programme
from livedrill.spec import Budgets

SH = ZoneInfo("Asia/Shanghai")
Q_START, Q_END = datetime(2027, 1, 1, tzinfo=SH), datetime(2027, 4, 1, tzinfo=SH)
SHIPPED = Path(__file__).resolve().parents[2] / "drills" / "programmes" / "core-tier.yaml"


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=SH)


def rec(day: str, outcome: str) -> DrillRecord:
    return DrillRecord(cluster="a", vm="banking/core-1", at=at(day), outcome=outcome)


@pytest.mark.parametrize("records, expected, failures, retest_after", [
    ([], Standing.NEVER_PASSED, 0, None),
    ([rec("2026-11-07", "passed")], Standing.DUE, 0, None),
    ([rec("2026-11-07", "failed")], Standing.NEVER_PASSED, 0, None),
    ([rec("2027-01-09", "passed")], Standing.COVERED, 0, None),
    ([rec("2027-01-09", "failed")], Standing.RETEST, 1, "2027-01-16"),
    ([rec("2027-01-09", "failed"), rec("2027-01-23", "passed")], Standing.COVERED, 1, None),
    ([rec("2027-01-23", "passed"), rec("2027-01-09", "failed")], Standing.COVERED, 1, None),  # order of records
    ([rec("2027-01-09", "passed"), rec("2027-01-23", "failed")], Standing.RETEST, 1, "2027-01-30"),
    ([rec("2027-01-09", "failed"), rec("2027-01-23", "failed")], Standing.RETEST, 2, "2027-01-30"),
    ([rec("2027-01-09", "failed"), rec("2027-01-23", "failed"), rec("2027-02-20", "failed")],
     Standing.OPEN_DEFICIENCY, 3, None),
    ([rec("2027-04-03", "passed")], Standing.NEVER_PASSED, 0, None),  # next quarter's drill does not count
])
def test_standing(records, expected, failures, retest_after):
    s = standing(records, Q_START, Q_END, RetestPolicy(cool_off_days=7, max_attempts=3))
    assert (s.standing, s.failures) == (expected, failures)
    assert s.retest_after == (at(retest_after) if retest_after else None)


def test_risk_order_is_retest_then_never_passed_then_oldest_pass():
    standings = {
        "due-recent": VMStanding(standing=Standing.DUE, last_pass=at("2026-12-01")),
        "due-old": VMStanding(standing=Standing.DUE, last_pass=at("2026-06-01")),
        "never": VMStanding(standing=Standing.NEVER_PASSED),
        "retest-late": VMStanding(standing=Standing.RETEST, retest_after=at("2027-02-01")),
        "retest-early": VMStanding(standing=Standing.RETEST, retest_after=at("2027-01-15")),
    }
    assert sorted(standings, key=lambda k: risk_key(standings[k])) == [
        "retest-early", "retest-late", "never", "due-old", "due-recent"]


@pytest.mark.parametrize("gib, legs, expected", [
    (1, 1, 60 + 800 * 2 + 60),  # counted as at least 2 GiB, as KubeVirt's completionTimeoutPerGiB does
    (16, 1, 60 + 800 * 16 + 60),
    (16, 2, 2 * (60 + 800 * 16 + 60)),  # migrate_back: there and back
])
def test_vm_budget(gib, legs, expected):
    budgets = Budgets(migration_timeout_per_gib_s=800, min_migration_timeout_s=120, warmup_s=60, cooldown_s=60)
    assert vm_budget_s(gib, budgets, legs) == expected


def test_open_windows_skip_frozen_and_begun():
    windows = Windows.model_validate({
        "timezone": "Asia/Shanghai",
        "change_freeze": [{"start": "2027-02-05", "end": "2027-02-13", "reason": "Spring Festival"}],
        "slots": [{"start": f"2027-{d}T01:00", "end": f"2027-{d}T05:00"}
                  for d in ("02-13", "01-02", "01-09", "02-06", "02-20")]})
    usable, skipped = open_windows(windows, now=at("2027-01-09T02:00"))
    assert [(w.index, w.start) for w in usable] == [(5, at("2027-02-20T01:00"))]
    assert [(s.index, s.reason.split(" (")[0].split(" 2027")[0]) for s in skipped] == [
        (1, "began before the plan was made"), (2, "began before the plan was made"),
        (3, "change freeze"), (4, "change freeze")]
    assert "Spring Festival" in skipped[2].reason


def pend(name: str, node: str = "n1", budget: float = 1000, retest_after: datetime | None = None) -> Pending:
    s = VMStanding(standing=Standing.RETEST if retest_after else Standing.NEVER_PASSED, retest_after=retest_after)
    return Pending(Target(cluster="a", vm=f"banking/{name}", node=node, gib=4), s, budget, None)


@pytest.mark.parametrize("budgets_nodes, length, setup, limits, expected", [
    # one VM per drill, back to back while they fit
    ([(1000, "n1")] * 3, 2400, 100, {}, [(0, 1100, [0]), (1100, 1100, [1])]),
    # first fit: a VM too long for what is left is passed over for a shorter one after it
    ([(1000, "n1"), (2000, "n1"), (500, "n1")], 2000, 0, {}, [(0, 1000, [0]), (1000, 500, [2])]),
    # several VMs per drill migrate one after another: the drill lasts the sum of their budgets
    ([(1000, "n1"), (3000, "n2"), (500, "n3")], 9000, 100, {"vms_per_drill": 2},
     [(0, 4100, [0, 1]), (4100, 600, [2])]),
    # a VM that fits the window but not beside the drill's others waits for the next drill (here: no room left)
    ([(1000, "n1"), (1500, "n2"), (500, "n3")], 2000, 0, {"vms_per_drill": 3}, [(0, 1500, [0, 2])]),
    # at most outbound_per_node VMs of one drill leave the same node
    ([(1000, "n1"), (1000, "n1"), (1000, "n2")], 9000, 0, {"vms_per_drill": 3, "outbound_per_node": 1},
     [(0, 2000, [0, 2]), (2000, 1000, [1])]),
    # the cluster's cap on drills per window
    ([(100, "n1")] * 5, 9000, 0, {"drills_per_window": 2}, [(0, 100, [0]), (100, 100, [1])]),
    # nothing fits
    ([(5000, "n1")], 4000, 0, {}, []),
])
def test_pack_window(budgets_nodes, length, setup, limits, expected):
    candidates = [pend(f"vm-{i}", node, budget) for i, (budget, node) in enumerate(budgets_nodes)]
    drills = pack_window(candidates, length, setup, ClusterLimits(**limits))
    assert [(off, dur, [candidates.index(p) for p in batch]) for off, dur, batch in drills] == expected


W1 = PlanWindow(index=1, start=at("2027-03-20T01:00"), end=at("2027-03-20T05:00"))
W2 = PlanWindow(index=2, start=at("2027-03-27T01:00"), end=at("2027-03-27T03:00"))


@pytest.mark.parametrize("p, words", [
    (pend("huge", budget=20000), "needs 20300 s (set-up and migration budget for 4 GiB); the longest window left is 14400 s"),
    (pend("late", retest_after=at("2027-03-28T00:00")), "retest due after 2027-03-28T00:00+08:00 (cool-off); no window"),
    (pend("crowded"), "no room left on cluster a in the 2 window(s) it could use (#1 2027-03-20T01:00+08:00 .. #2"),
    (pend("retest", retest_after=at("2027-03-21T00:00")), "in the 1 window(s) it could use (#2 2027-03-27"),
])
def test_why_unplaced(p, words):
    assert words in why_unplaced(p, [W1, W2], setup_s=300, quarter_end=Q_END)


# ---------------------------------------------------------------- whole plans


@pytest.fixture(scope="module")
def programme() -> Programme:
    return load_programme(SHIPPED)


def inventory(n_per_cluster: int, gib: float = 2, clusters=("prod-core-a", "prod-core-b", "kvm-core-sh")) -> Inventory:
    return Inventory(targets=[Target(cluster=c, vm=f"banking/core-{i:03d}", node=f"{c}-n{i % 4}", gib=gib)
                              for c in clusters for i in range(n_per_cluster)])


BEFORE_QUARTER = datetime(2026, 12, 20, tzinfo=SH)


def test_every_vm_gets_a_window_with_drills_back_to_back_inside_it(programme):
    plan = make_plan(programme, inventory(40), [], BEFORE_QUARTER)
    assert plan.fits
    planned = [(d.cluster, str(v.vm)) for w in plan.windows for d in w.drills for v in d.vms]
    assert sorted(planned) == sorted((t.cluster, str(t.vm)) for t in inventory(40).targets)
    assert [s.index for s in plan.skipped_windows] == [6, 7]  # the Spring Festival freeze
    for window in plan.windows:
        for cluster in {d.cluster for d in window.drills}:
            drills = [d for d in window.drills if d.cluster == cluster]
            for before, after in zip(drills, drills[1:]):  # one drill per cluster at a time
                assert before.start + timedelta(seconds=before.budget_s) <= after.start
            assert drills[-1].start + timedelta(seconds=drills[-1].budget_s) <= window.end
    kvm = [d for w in plan.windows for d in w.drills if d.cluster == "kvm-core-sh"]
    assert max(sum(d.cluster == "kvm-core-sh" for d in w.drills) for w in plan.windows) <= 6 and kvm


def test_history_covered_retest_and_open_deficiency(programme):
    history = [
        DrillRecord(cluster="prod-core-a", vm="banking/core-000", at=at("2027-01-02T01:10"), outcome="passed"),
        DrillRecord(cluster="prod-core-a", vm="banking/core-001", at=at("2027-01-02T01:30"), outcome="failed"),
        *[DrillRecord(cluster="prod-core-a", vm="banking/core-002", at=at(d), outcome="failed")
          for d in ("2027-01-02T02:00", "2027-01-09T01:00", "2027-01-16T01:00")],
    ]
    plan = make_plan(programme, inventory(5, clusters=("prod-core-a",)), history, at("2027-01-20T00:00"))
    assert [str(c.vm) for c in plan.covered] == ["banking/core-000"]
    assert [(str(d.vm), d.failures) for d in plan.open_deficiencies] == [("banking/core-002", 3)]
    first = plan.windows[0]
    assert first.start == at("2027-01-23T01:00")
    # the retest comes first in the first window after its cool-off, as the VM's second attempt
    assert [(str(v.vm), v.standing, v.attempt) for v in first.drills[0].vms] == [
        ("banking/core-001", Standing.RETEST, 2)]
    assert {str(v.vm) for d in first.drills for v in d.vms} == {"banking/core-001", "banking/core-003", "banking/core-004"}


def test_short_capacity_names_the_vms_that_do_not_fit(programme):
    # 16 GiB at 800 s/GiB: 13,220 s per drill with set-up, so one per 4-hour window and cluster; 11 windows open
    plan = make_plan(programme, inventory(13, gib=16, clusters=("prod-core-b",)), [], BEFORE_QUARTER)
    assert not plan.fits
    assert sum(len(w.drills) for w in plan.windows) == 11
    assert [str(u.vm) for u in plan.unplaced] == ["banking/core-011", "banking/core-012"]
    assert "no room left on cluster prod-core-b in the 11 window(s)" in plan.unplaced[0].reason


def test_a_vm_longer_than_any_window_is_named(programme):
    plan = make_plan(programme, inventory(1, gib=20, clusters=("prod-core-a",)), [], BEFORE_QUARTER)
    assert [(str(u.vm), u.reason.split(";")[0]) for u in plan.unplaced] == [
        ("banking/core-000", "needs 16420 s (set-up and migration budget for 20 GiB)")]


def test_a_retest_whose_cool_off_outlasts_the_quarter_is_named(programme):
    history = [DrillRecord(cluster="prod-core-a", vm="banking/core-000", at=at("2027-03-20T01:30"), outcome="failed")]
    plan = make_plan(programme, inventory(1, clusters=("prod-core-a",)), history, at("2027-03-21T00:00"))
    assert [w.index for w in plan.windows] == [13] and not plan.windows[0].drills
    [unplaced] = plan.unplaced
    assert (str(unplaced.vm), unplaced.standing) == ("banking/core-000", Standing.RETEST)
    assert unplaced.reason == ("retest due after 2027-03-27T01:30+08:00 (cool-off); no window opens between then "
                               "and the quarter's last day 2027-03-31")


# ---------------------------------------------------------------- the forecast in the plan

MI, GI = 1024**2, 1024**3


def with_forecast(programme: Programme, **figures) -> Programme:
    from livedrill.forecast import ForecastConfig

    template = programme.template.model_copy(update={"forecast": ForecastConfig(**figures)})
    return programme.model_copy(update={"template": template})


@pytest.mark.parametrize("figures, gib, converges, migration_s", [
    (None, 2, None, None),  # no forecast section
    ({"dirty_rate_bytes_per_s": "measure", "bandwidth_bytes_per_s": 128 * MI}, 2, None, None),  # measured on the night
    ({"dirty_rate_bytes_per_s": 0}, 2, None, None),  # no link figure: the platform's cap is read by the pre-flight
    # 2 GiB over 128 MiB/s, nothing dirtied: 16 s, plus a declared 0.5 s preparation.
    ({"dirty_rate_bytes_per_s": 0, "bandwidth_bytes_per_s": 128 * MI, "setup_s": 0.5}, 2, True, 16.5),
    # Touched memory to be measured counts whole at planning time (errs long).
    ({"dirty_rate_bytes_per_s": 0, "bandwidth_bytes_per_s": 128 * MI, "touched_memory_bytes": "measure"}, 2, True, 16.0),
    ({"dirty_rate_bytes_per_s": 128 * MI, "bandwidth_bytes_per_s": 128 * MI}, 2, False, None),  # never shrinks
])
def test_planning_forecast(figures, gib, converges, migration_s):
    from livedrill.forecast import ForecastConfig
    from livedrill.programme.plan import planning_forecast

    result = planning_forecast(ForecastConfig(**figures) if figures else None, gib, Budgets())
    assert (result.expected.converges if result else None) == converges
    assert (result.expected.migration_s if result else None) == (pytest.approx(migration_s) if migration_s else None)


def test_the_plan_carries_each_vms_forecast_and_leaves_out_those_that_would_not_converge(programme):
    from livedrill.programme.report import format_plan

    # 2 GiB VMs dirtying 16 MiB/s on a 128 MiB/s link: round 1 16 s (256 MiB dirtied), round 2 2 s (32 MiB), which
    # fits the 300 ms pause (38.4 MiB): 18.25 s.
    quiet = with_forecast(programme, dirty_rate_bytes_per_s=16 * MI, bandwidth_bytes_per_s=128 * MI)
    plan = make_plan(quiet, inventory(3, clusters=("prod-core-a",)), [], BEFORE_QUARTER)
    assert plan.fits
    planned = [v for w in plan.windows for d in w.drills for v in d.vms]
    assert [v.forecast_s for v in planned] == [pytest.approx(18.25)] * 3
    assert "forecast 18.2 s a leg" in format_plan(plan, "Asia/Shanghai")
    # The budgets still fill the windows: the same drills, the same starts, as without a forecast.
    plain = make_plan(programme, inventory(3, clusters=("prod-core-a",)), [], BEFORE_QUARTER)
    assert [(d.start, d.budget_s) for w in plan.windows for d in w.drills] == \
        [(d.start, d.budget_s) for w in plain.windows for d in w.drills]
    # Dirtying at the link's rate: no drill is planned, each VM named with the forecast's reason.
    busy = with_forecast(programme, dirty_rate_bytes_per_s=128 * MI, bandwidth_bytes_per_s=128 * MI)
    plan = make_plan(busy, inventory(2, clusters=("prod-core-a",)), [], BEFORE_QUARTER)
    assert not any(w.drills for w in plan.windows)
    assert [str(u.vm) for u in plan.unplaced] == ["banking/core-000", "banking/core-001"]
    assert plan.unplaced[0].reason.startswith("its forecast does not converge within its 1600 s migration budget (round 1")
    assert "so its pre-flight would refuse it" in plan.unplaced[0].reason
