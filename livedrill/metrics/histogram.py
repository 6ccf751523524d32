"""Probe latency as a Prometheus histogram per window, streamed from the probe's series file.

The report's quantiles are exact but cannot be combined across probes or drills; bucket counts can
(`histogram_quantile` over any `sum by (le)`). Only successful probes are counted: a failure has no
latency, it is counted in livedrill_probe_requests{result="failed"}.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from livedrill.probe.measure import window_at
from livedrill.probe.series import WINDOWS, Outcome, WindowMark, iter_series

# Upper bounds in seconds: fine below the 5 ms core-banking SLO, coarse up to a probe timeout.
LATENCY_BUCKETS_S: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LatencyHistogram(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bounds_s: list[float]
    cumulative: list[int]  # observations <= each bound (same length as bounds_s); +Inf is `count`
    count: int
    sum_s: float


class _Buckets:
    """Counts per bucket as observations stream in: memory is the number of buckets, not of probes."""

    def __init__(self, bounds_s: tuple[float, ...]):
        self.bounds_s = bounds_s
        self.per_bucket = [0] * (len(bounds_s) + 1)
        self.total = 0.0

    def add(self, latency_s: float) -> None:
        self.per_bucket[bisect.bisect_left(self.bounds_s, latency_s)] += 1
        self.total += latency_s

    def histogram(self) -> LatencyHistogram:
        cumulative, running = [], 0
        for n in self.per_bucket[:-1]:
            running += n
            cumulative.append(running)
        return LatencyHistogram(bounds_s=list(self.bounds_s), cumulative=cumulative, count=sum(self.per_bucket), sum_s=self.total)


def histogram_of(latencies_s: Iterable[float], bounds_s: tuple[float, ...] = LATENCY_BUCKETS_S) -> LatencyHistogram:
    """Pure: cumulative bucket counts, count and sum (Prometheus `le` semantics: a bound includes its value)."""
    buckets = _Buckets(bounds_s)
    for latency in latencies_s:
        buckets.add(latency)
    return buckets.histogram()


def series_histograms(path: Path, bounds_s: tuple[float, ...] = LATENCY_BUCKETS_S) -> dict[str, LatencyHistogram]:
    """Stream one series file twice (marks, then probes): the histogram of each window that has probes.

    A probe belongs to the window in force when it was scheduled, as in the probe report.
    """
    marks = sorted((item.t, item.window) for item in iter_series(path) if isinstance(item, WindowMark))
    if not marks:
        marks = [(float("-inf"), WINDOWS[0])]
    windows: dict[str, _Buckets] = {}
    for item in iter_series(path):
        if isinstance(item, WindowMark) or item.outcome != Outcome.OK:
            continue
        window = window_at(item.t_sched, marks)
        if window not in windows:
            windows[window] = _Buckets(bounds_s)
        windows[window].add(item.t_end - item.t_start)
    return {window: buckets.histogram() for window, buckets in windows.items()}
