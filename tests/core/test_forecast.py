"""Table tests of the convergence forecast, against figures computed by hand.

Most rows move a 1 GiB guest over a 128 MiB/s link (8 s for the first round) with QEMU's default 300 ms
allowed pause, so a remainder of at most 38.4 MiB (128 MiB/s x 0.3 s) is sent during the switchover.
"""

from __future__ import annotations

import pytest

from livedrill.forecast import Ending, ForecastInputs, MigrationLimits, postcopy, precopy
from livedrill.spec import Budgets, migration_deadline_s

MI = 1024**2
GI = 1024**3
BUDGET = migration_deadline_s(Budgets(), 1.0)  # 150 s/GiB counting at least 2 GiB: 300 s


def inputs(**changes) -> ForecastInputs:
    base = dict(memory_bytes=1 * GI, dirty_rate_bytes_per_s=0.0, bandwidth_bytes_per_s=128 * MI,
                allowed_downtime_ms=300.0, budget_s=BUDGET)
    return ForecastInputs(**{**base, **changes})


def test_the_budget_is_the_drills_one_formula():
    assert BUDGET == 300.0


# ratio 127/128 per round: round k ends at 1024 s x (1 - r^k); the remainder after round k is 1 GiB x r^k.
R = 127 / 128


@pytest.mark.parametrize("changes, ending, rounds, migration_s, pause_ms, sent_mib", [
    # Nothing dirtied: one round of 8 s, nothing left for the pause.
    ({}, Ending.CONVERGED, 1, 8.0, 0.0, 1024),
    # Dirtying at the link's rate (or faster): round 1 leaves all of memory dirty again, for ever.
    ({"dirty_rate_bytes_per_s": 128 * MI}, Ending.NO_PROGRESS, 1, None, None, 1024),
    ({"dirty_rate_bytes_per_s": 256 * MI}, Ending.NO_PROGRESS, 1, None, None, 1024),
    # 16 MiB/s: round 1 (8 s) leaves 128 MiB; round 2 (1 s) leaves 16 MiB, sent in a 125 ms pause.
    ({"dirty_rate_bytes_per_s": 16 * MI}, Ending.CONVERGED, 2, 9.125, 125.0, 1024 + 128 + 16),
    # Half the link: 1024 -> 512 -> ... -> 32 MiB after round 5 (8+4+2+1+0.5 s), sent in 250 ms.
    ({"dirty_rate_bytes_per_s": 64 * MI}, Ending.CONVERGED, 5, 15.75, 250.0, 1024 + 512 + 256 + 128 + 64 + 32),
    # The same guest allowed a 30 ms pause (3.84 MiB): 4 more rounds, to 2 MiB in 15.625 ms.
    ({"dirty_rate_bytes_per_s": 64 * MI, "allowed_downtime_ms": 30.0}, Ending.CONVERGED, 9,
     16 * (1 - 0.5**9) + 2 / 128, 15.625, (1024 + 512 + 256 + 128 + 64 + 32 + 16 + 8 + 4) + 2),
    # Just below the link's rate: round 45 is the first to end after 300 s (1024 s x (1 - r^45) > 300).
    ({"dirty_rate_bytes_per_s": 127 * MI}, Ending.OVER_BUDGET, 45, None, None, 300 * 128),
    # ... and with a 2000 s budget it converges after round 419, the first with 1 GiB x r^k <= 38.4 MiB.
    ({"dirty_rate_bytes_per_s": 127 * MI, "budget_s": 2000.0}, Ending.CONVERGED, 419,
     1024 * (1 - R**419) + 1024 * R**419 / 128, 1024 * R**419 / 128 * 1000, None),
    # Downtime-limited within the budget: the half-rate guest needs 15.75 s; a 15 s budget ends it in round 5.
    ({"dirty_rate_bytes_per_s": 64 * MI, "budget_s": 15.0}, Ending.OVER_BUDGET, 5, None, None, 15 * 128),
    # A working set caps what a round dirties: 32 MiB fits in the pause even at twice the link's rate ...
    ({"dirty_rate_bytes_per_s": 256 * MI, "working_set_bytes": 32 * MI}, Ending.CONVERGED, 1, 8.25, 250.0, 1024 + 32),
    # ... 64 MiB does not, and at that rate every round dirties all 64 MiB again.
    ({"dirty_rate_bytes_per_s": 256 * MI, "working_set_bytes": 64 * MI}, Ending.NO_PROGRESS, 2, None, None, 1024 + 64),
    # 64 MiB at half the link: round 2 (0.5 s) dirties 32 MiB, sent in 250 ms.
    ({"dirty_rate_bytes_per_s": 64 * MI, "working_set_bytes": 64 * MI}, Ending.CONVERGED, 2, 8.75, 250.0, 1024 + 64 + 32),
    # Copy-storage: 4 GiB of disk first (32 s), then memory.
    ({"disk_bytes": 4 * GI}, Ending.CONVERGED, 1, 40.0, 0.0, 5 * 1024),
    # Disk writes of 64 MiB/s take half the link: 4 GiB + its writes in 64 s, memory at 64 MiB/s in 16 s.
    ({"disk_bytes": 4 * GI, "disk_write_rate_bytes_per_s": 64 * MI}, Ending.CONVERGED, 1, 80.0, 0.0, 80 * 128),
    # 64 GiB of disk take 512 s, longer than the whole budget.
    ({"disk_bytes": 64 * GI}, Ending.OVER_BUDGET, 0, None, None, 300 * 128),
    # Disk writes at the link's rate: the mirror never catches up.
    ({"disk_bytes": 4 * GI, "disk_write_rate_bytes_per_s": 128 * MI}, Ending.DISK_WRITES, 0, None, None, 0),
    # Without copy-storage a disk write rate changes nothing.
    ({"disk_write_rate_bytes_per_s": 128 * MI}, Ending.CONVERGED, 1, 8.0, 0.0, 1024),
    # The model's own round limit.
    ({"dirty_rate_bytes_per_s": 127 * MI, "budget_s": 2000.0, "max_rounds": 100}, Ending.MAX_ROUNDS, 100, None, None, None),
    # Only 256 MiB of the 1 GiB hold data: zero pages go as headers, round 1 sends 256 MiB in 2 s.
    ({"touched_memory_bytes": 256 * MI}, Ending.CONVERGED, 1, 2.0, 0.0, 256),
    # ... the half-rate guest then dirties 128 MiB in round 1, 64 in round 2 (1 s), 32 in round 3 (0.5 s), sent in
    # a 250 ms pause.
    ({"touched_memory_bytes": 256 * MI, "dirty_rate_bytes_per_s": 64 * MI}, Ending.CONVERGED, 3, 3.75, 250.0,
     256 + 128 + 64 + 32),
    # A touched figure above the memory (a stale declaration) counts the memory.
    ({"touched_memory_bytes": 4 * GI}, Ending.CONVERGED, 1, 8.0, 0.0, 1024),
    # Nothing touched at all: an empty first round, done once the destination is ready.
    ({"touched_memory_bytes": 0, "setup_s": 0.3}, Ending.CONVERGED, 1, 0.3, 0.0, 0),
    # The destination's preparation comes before anything moves: 0.3 s + 8 s; with disks, before the disk copy.
    ({"setup_s": 0.3}, Ending.CONVERGED, 1, 8.3, 0.0, 1024),
    ({"setup_s": 0.3, "disk_bytes": 4 * GI}, Ending.CONVERGED, 1, 40.3, 0.0, 5 * 1024),
    # Preparation alone past the budget.
    ({"setup_s": 301.0}, Ending.OVER_BUDGET, 0, None, None, 300 * 128),
])
def test_precopy(changes, ending, rounds, migration_s, pause_ms, sent_mib):
    result = precopy(inputs(**changes))
    assert (result.ending, result.rounds) == (ending, rounds)
    assert result.converges is (ending is Ending.CONVERGED)
    if migration_s is None:
        assert result.migration_s is None and result.switchover_pause_ms is None and result.margin_s is None
    else:
        assert result.migration_s == pytest.approx(migration_s)
        assert result.switchover_pause_ms == pytest.approx(pause_ms)
        assert result.margin_s == pytest.approx(result.budget_s - migration_s)
    if sent_mib is not None:
        assert result.sent_bytes / MI == pytest.approx(sent_mib)


def test_budget_margin():
    """The half-rate guest (15.75 s) against a 16 s budget keeps 0.25 s, 1.5625 % of it."""
    result = precopy(inputs(dirty_rate_bytes_per_s=64 * MI, budget_s=16.0))
    assert result.margin_s == pytest.approx(0.25)
    assert result.margin_fraction == pytest.approx(0.015625)


def test_auto_converge_throttles_a_guest_that_dirties_at_the_links_rate():
    """dirtied/sent per round = (1 - throttle) at D = B; a round is unproductive while that is above 50 %.

    Rounds 1-2 at 0 % (ratio 1.0), then every second round +10 %: 3-4 at 20 %, 5-6 at 30 %, 7-8 at 40 %,
    from 9 at 50 % (ratio 0.5, no longer unproductive). Remainders (MiB): 1024, 1024, 819.2, 655.36, 458.752,
    321.1264, 192.67584, 115.605504, 57.802752, 28.901376 <= 38.4 after round 10."""
    guest = inputs(dirty_rate_bytes_per_s=128 * MI)
    assert precopy(guest).ending is Ending.NO_PROGRESS
    result = precopy(guest, auto_converge=True)
    sent_before_switchover = 3 * 1024 + 819.2 + 655.36 + 458.752 + 321.1264 + 192.67584 + 115.605504 + 57.802752
    assert (result.ending, result.rounds, result.final_throttle_pct) == (Ending.CONVERGED, 10, 50)
    assert result.migration_s == pytest.approx((sent_before_switchover + 28.901376) / 128)
    assert result.switchover_pause_ms == pytest.approx(28.901376 / 128 * 1000)


def test_auto_converge_gives_up_at_the_maximum_throttle():
    """Even throttled by 99 %, a guest dirtying 100 x the link's rate dirties all of memory every round."""
    result = precopy(inputs(dirty_rate_bytes_per_s=12800 * MI, budget_s=1e6), auto_converge=True)
    assert (result.ending, result.final_throttle_pct) == (Ending.NO_PROGRESS, 99)


def test_auto_converge_leaves_a_productive_guest_alone():
    """At a quarter of the link every round is productive (25 % < 50 %): no throttle, the same forecast."""
    guest = inputs(dirty_rate_bytes_per_s=32 * MI)
    assert precopy(guest, auto_converge=True) == precopy(guest)


LIMITS = MigrationLimits(source="test")


@pytest.mark.parametrize("changes, limits, migration_s, refused", [
    # After round 1 (8 s) the destination pulls the 1 GiB dirtied meanwhile (8 s more), whatever the rate.
    ({"dirty_rate_bytes_per_s": 256 * MI}, LIMITS.model_copy(update={"post_copy": True}), 16.0, False),
    # 16 MiB/s dirtied 128 MiB during round 1: 1 s more.
    ({"dirty_rate_bytes_per_s": 16 * MI}, LIMITS, 9.0, False),
    # Disk first: 4 GiB in 32 s.
    ({"disk_bytes": 4 * GI}, LIMITS, 40.0, False),
    ({"disk_bytes": 4 * GI, "disk_write_rate_bytes_per_s": 128 * MI}, LIMITS, None, False),
    # 256 MiB touched: round 1 in 2 s, 32 MiB dirtied at 16 MiB/s pulled in 0.25 s, after a 0.5 s preparation.
    ({"dirty_rate_bytes_per_s": 16 * MI, "touched_memory_bytes": 256 * MI, "setup_s": 0.5}, LIMITS, 2.75, False),
    # KubeVirt, core VM: a post-copy failure fails the VMI.
    ({"dirty_rate_bytes_per_s": 256 * MI}, LIMITS.model_copy(update={"post_copy": True, "post_copy_fails_vm": True}),
     16.0, True),
])
def test_postcopy(changes, limits, migration_s, refused):
    result = postcopy(inputs(**changes), limits)
    assert result.enabled is limits.post_copy
    assert result.migration_s == (None if migration_s is None else pytest.approx(migration_s))
    assert (result.refused is not None) is refused
    if refused:
        assert "KubeVirt" in result.refused
