"""Latency histograms: bucket counting (pure) and streaming a real series file written by the probe's writer."""

from __future__ import annotations

import pytest

from livedrill.metrics.histogram import histogram_of, series_histograms
from livedrill.probe.series import Outcome, SeriesWriter, Step

BOUNDS = (0.001, 0.005, 0.05)


@pytest.mark.parametrize("latencies, cumulative, count", [
    ([], [0, 0, 0], 0),
    ([0.0009, 0.001], [2, 2, 2], 2),  # a value on a bound is inside it (le: less or equal)
    ([0.0011, 0.004, 0.049, 0.06, 3.0], [0, 2, 3], 5),  # above the last bound only in +Inf (= count)
])
def test_histogram_of(latencies, cumulative, count):
    h = histogram_of(latencies, BOUNDS)
    assert (h.bounds_s, h.cumulative, h.count) == (list(BOUNDS), cumulative, count)
    assert h.sum_s == pytest.approx(sum(latencies))


def test_series_histograms_follow_the_window_a_probe_was_scheduled_in(tmp_path):
    path = tmp_path / "p.series"
    writer = SeriesWriter(path, {"probe": "p"}, (1_790_000_000.0, 100.0))
    writer.mark("baseline", 100.0)
    writer.append(0, 100.1, 100.1, None, 100.1005, Outcome.OK, Step.WRITE, 200)  # 0.5 ms, baseline
    writer.append(1, 100.9, 100.9, None, 101.2, Outcome.OK, Step.WRITE, 200)  # 300 ms, scheduled in baseline
    writer.mark("during", 101.0)
    writer.append(2, 101.1, 101.1, None, 101.103, Outcome.OK, Step.WRITE, 200)  # 3 ms, during
    writer.append(3, 101.2, 101.2, None, 103.2, Outcome.TIMEOUT, Step.WRITE, 0)  # failed: no latency
    writer.close()
    got = series_histograms(path, BOUNDS)
    assert set(got) == {"baseline", "during"}
    assert (got["baseline"].cumulative, got["baseline"].count) == ([1, 1, 1], 2)
    assert (got["during"].cumulative, got["during"].count) == ([0, 1, 1], 1)
    assert got["baseline"].sum_s == pytest.approx(0.3005, abs=1e-5)
