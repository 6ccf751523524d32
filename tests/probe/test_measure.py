"""Table tests of the probe's pure decisions: gaps, percentiles, windows, reconciliation, breaches."""

from __future__ import annotations

import random

import pytest

from livedrill.probe.measure import (
    DUPLICATED,
    LOST,
    UNVERIFIABLE,
    VERIFIED,
    LatencyHistogram,
    StopLimits,
    breach_reason,
    classify_readback,
    default_gap_threshold_ms,
    find_gaps,
    json_mismatch,
    substitute,
    window_at,
    windows_overlapping,
)

MARKS = [(10.0, "baseline"), (20.0, "during"), (30.0, "after")]


@pytest.mark.parametrize(
    "origin, oks, stop, threshold, longest, above, longest_open",
    [
        # steady 1 ms completions: longest is the first completion after the origin
        (0.0, [0.001 * i for i in range(1, 101)], 0.1, 10.0, 1.0, [], False),
        # a 250 ms hole between 0.010 and 0.260
        (0.0, [0.005, 0.010, 0.260, 0.261], 0.262, 10.0, 250.0, [250.0], False),
        # two holes, the second longer
        (0.0, [0.001, 0.051, 0.052, 0.152], 0.153, 20.0, 100.0, [50.0, 100.0], False),
        # nothing ever succeeded: the whole run is one open gap
        (5.0, [], 5.5, 10.0, 500.0, [500.0], True),
        # service died: trailing silence until the stop is an open gap
        (0.0, [0.001, 0.002], 0.402, 10.0, 400.0, [400.0], True),
        # gap exactly at the threshold is not "above" it
        (0.0, [0.010, 0.020], 0.020, 10.0, 10.0, [], False),
    ],
)
def test_find_gaps(origin, oks, stop, threshold, longest, above, longest_open):
    tracker = find_gaps(origin, [(t, t) for t in oks], stop, threshold, reorder_lag_s=0.0)
    assert tracker.longest.ms == pytest.approx(longest, abs=1e-6)
    assert tracker.longest.open is longest_open
    assert [round(g.ms, 6) for g in tracker.above] == [pytest.approx(a) for a in above]
    assert tracker.above_total == len(above)


@pytest.mark.parametrize(
    "successes, lag_s, longest_ms, above_ms",
    [
        # in order: nothing to restore
        ([(0.001, 0.001), (0.100, 0.101), (0.101, 0.102)], 1.0, 99.0, [99.0]),
        # the transaction acknowledged at 0.100 became known (read-back) after the one acknowledged at 0.101
        ([(0.001, 0.001), (0.101, 0.150), (0.100, 0.200)], 1.0, 99.0, [99.0]),
        # many late read-backs after a freeze: acknowledgements 0.300..0.304 known in reverse order
        ([(0.001, 0.001)] + [(0.300 + i / 1000, 0.320 - i / 1000) for i in range(5)], 1.0, 299.0, [299.0]),
        # a lag shorter than the real lateness overstates the gap (0.100 comes too late), never understates it
        ([(0.001, 0.001), (0.101, 0.150), (0.100, 0.200)], 0.01, 100.0, [100.0]),
    ],
)
def test_find_gaps_restores_time_order(successes, lag_s, longest_ms, above_ms):
    tracker = find_gaps(0.0, successes, 0.5, 50.0, reorder_lag_s=lag_s)
    # the trailing silence to the stop is an open gap; compare the closed ones
    closed = [g for g in tracker.above if not g.open]
    assert max(g.ms for g in closed) == pytest.approx(longest_ms, abs=1e-6)
    assert [round(g.ms, 6) for g in closed] == [pytest.approx(a) for a in above_ms]


@pytest.mark.parametrize(
    "adds_and_horizons, expected_releases",
    [
        # each add is followed by release(horizon): only times up to the horizon come out, sorted
        ([(5.0, 4.0), (4.0, 4.5), (6.0, 5.2)], [[], [4.0], [5.0]]),
        ([(1.0, 2.0), (2.5, 2.4), (2.0, 2.6)], [[1.0], [], [2.0, 2.5]]),
        ([(1.0, 0.0), (1.0, 1.0)], [[], [1.0, 1.0]]),
    ],
)
def test_success_order_releases_only_what_cannot_be_preceded(adds_and_horizons, expected_releases):
    from livedrill.probe.measure import SuccessOrder

    order = SuccessOrder()
    released = []
    for t, horizon in adds_and_horizons:
        order.add(t)
        released.append(order.release(horizon))
    assert released == expected_releases
    everything = [t for batch in released for t in batch] + order.release_all()
    assert everything == sorted(t for t, _ in adds_and_horizons)


@pytest.mark.parametrize("t_ack, t_end, expected", [(None, 2.0, 2.0), (1.5, 2.0, 1.5)])
def test_success_time_is_the_write_acknowledgement_when_there_is_one(t_ack, t_end, expected):
    from livedrill.probe.measure import success_time

    assert success_time(t_ack, t_end) == expected


def test_gap_list_is_capped_but_counted():
    tracker = find_gaps(0.0, [(0.1 * i, 0.1 * i) for i in range(1, 51)], 5.0, 10.0, reorder_lag_s=0.0)
    tracker2 = find_gaps(0.0, [], 0.0, 10.0, reorder_lag_s=0.0)
    assert tracker.above_total == 50 and len(tracker.above) == 50
    assert tracker2.longest is None
    from livedrill.probe.measure import GapTracker

    capped = GapTracker(origin=0.0, threshold_ms=10.0, keep_at_most=3)
    for i in range(1, 11):
        capped.ok(0.1 * i)
    assert capped.above_total == 10 and len(capped.above) == 3


@pytest.mark.parametrize(
    "samples, q, expected",
    [
        ([1.0] * 100, 50, 1.0),
        (list(range(1, 101)), 50, 50.0),
        (list(range(1, 101)), 99, 99.0),
        (list(range(1, 101)), 100, 100.0),
        ([0.2] * 99 + [500.0], 99, 0.2),
        ([0.2] * 98 + [500.0] * 2, 99, 500.0),
        ([], 99, None),
    ],
)
def test_percentiles_within_one_percent(samples, q, expected):
    h = LatencyHistogram()
    for s in samples:
        h.add(float(s))
    got = h.percentile(q)
    if expected is None:
        assert got is None
    else:
        assert expected <= got <= expected * 1.0101  # bucket upper edge: never under-states, ≤1 % over


def test_percentiles_match_sorted_samples_on_random_data():
    rng = random.Random(7)
    samples = [rng.lognormvariate(0, 1.5) for _ in range(20000)]
    h = LatencyHistogram()
    for s in samples:
        h.add(s)
    ordered = sorted(samples)
    for q in (50, 95, 99, 99.9):
        exact = ordered[max(1, -(-int(q * len(samples)) // 100)) - 1]
        assert exact <= h.percentile(q) <= exact * 1.0101
    assert h.max_ms == max(samples)


@pytest.mark.parametrize(
    "t, window",
    [(5.0, "baseline"), (10.0, "baseline"), (19.999, "baseline"), (20.0, "during"), (29.0, "during"), (30.0, "after"), (99.0, "after")],
)
def test_window_at(t, window):
    assert window_at(t, MARKS) == window


@pytest.mark.parametrize(
    "start, end, windows",
    [
        (11.0, 12.0, ["baseline"]),
        (19.9, 20.1, ["baseline", "during"]),
        (21.0, 22.0, ["during"]),
        (19.0, 31.0, ["baseline", "during", "after"]),
        (29.5, 40.0, ["during", "after"]),
        (5.0, 6.0, ["baseline"]),
    ],
)
def test_windows_overlapping(start, end, windows):
    assert windows_overlapping(start, end, MARKS) == windows


def test_windows_before_migration_only_baseline():
    assert windows_overlapping(1.0, 100.0, [(0.0, "baseline")]) == ["baseline"]


@pytest.mark.parametrize(
    "rate, threshold",
    [(1000, 10.0), (100, 50.0), (10, 500.0), (2000, 10.0)],
)
def test_default_gap_threshold(rate, threshold):
    assert default_gap_threshold_ms(rate) == threshold


def test_substitute_and_json_mismatch():
    template = {"id": "{txid}", "memo": ["a-{txid}"], "amount": 5}
    assert substitute(template, "T1") == {"id": "T1", "memo": ["a-T1"], "amount": 5}
    assert json_mismatch({"id": "T1", "x": 1}, {"id": "T1"}) is None
    assert "missing" in json_mismatch({}, {"id": "T1"})
    assert "expected 'T1'" in json_mismatch({"id": "T2"}, {"id": "T1"})
    assert "JSON object" in json_mismatch(None, {"id": "T1"})
    assert json_mismatch(None, {}) is None


LEDGER = dict(ok_status=[200], not_found_status=[404], count_field="postings")


@pytest.mark.parametrize(
    "status, body, kwargs, verdict",
    [
        (200, {"id": "T", "postings": 1}, LEDGER | {"expected": {"id": "T", "postings": 1}}, VERIFIED),
        (200, {"id": "T", "postings": 2}, LEDGER | {"expected": {"id": "T", "postings": 1}}, DUPLICATED),
        (200, {"id": "T", "postings": 0}, LEDGER | {"expected": {"id": "T"}}, LOST),
        (404, {"error": "not found"}, LEDGER | {"expected": {"id": "T"}}, LOST),
        (500, None, LEDGER | {"expected": {}}, UNVERIFIABLE),
        (None, None, LEDGER | {"expected": {}}, UNVERIFIABLE),
        (200, {"id": "OTHER", "postings": 1}, LEDGER | {"expected": {"id": "T"}}, UNVERIFIABLE),
        (200, {"id": "T"}, LEDGER | {"expected": {"id": "T"}}, UNVERIFIABLE),  # count field missing
        # a gateway without a count field: found and matching is verified, duplicates are invisible
        (200, {"txn": "T"}, dict(ok_status=[200], not_found_status=[404, 410], count_field=None, expected={"txn": "T"}), VERIFIED),
        (410, None, dict(ok_status=[200], not_found_status=[404, 410], count_field=None, expected={}), LOST),
    ],
)
def test_classify_readback(status, body, kwargs, verdict):
    assert classify_readback(status, body, **kwargs) == verdict


LIMITS = StopLimits(max_gap_ms=100.0, max_failed=2, max_failure_streak=3)


@pytest.mark.parametrize(
    "window, now, last_ok, failed, streak, limits, fragment",
    [
        ("baseline", 10.0, 0.0, 99, 99, LIMITS, None),  # never aborts outside the migration
        ("after", 10.0, 0.0, 99, 99, LIMITS, None),
        ("during", 1.050, 1.0, 0, 0, LIMITS, None),
        ("during", 1.101, 1.0, 0, 0, LIMITS, "101.0 ms"),
        ("during", 1.0, 1.0, 3, 1, LIMITS, "error budget"),
        ("during", 1.0, 1.0, 2, 2, LIMITS, None),
        ("during", 1.0, 1.0, 2, 3, StopLimits(100.0, 5, 3), "3 consecutive"),
        ("during", 1.0, 1.0, 2, 30, StopLimits(100.0, 5, None), None),
    ],
)
def test_breach_reason(window, now, last_ok, failed, streak, limits, fragment):
    reason = breach_reason(window=window, now=now, last_ok=last_ok, failed_total=failed, failure_streak=streak, limits=limits)
    if fragment is None:
        assert reason is None
    else:
        assert fragment in reason
