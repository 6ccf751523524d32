"""Pure measurement decisions of the probe engine: gaps, percentiles, windows, reconciliation, breaches.

Nothing here performs I/O or reads a clock; the engine feeds observations in and acts on the answers.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

# Latency histogram: log-spaced buckets, each 1 % wider than the previous, from 1 µs up. A reported
# percentile is the upper edge of its bucket (never under-states), capped at the exact maximum.
HIST_MIN_MS = 0.001
HIST_RATIO = 1.01
_LOG_RATIO = math.log(HIST_RATIO)


class LatencyHistogram:
    """Streaming latency distribution in constant memory (at most ~2,100 buckets up to 1,000 s)."""

    __slots__ = ("buckets", "count", "max_ms")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        idx = 0 if ms <= HIST_MIN_MS else int(math.log(ms / HIST_MIN_MS) / _LOG_RATIO) + 1
        self.buckets[idx] = self.buckets.get(idx, 0) + 1
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (q in 0..100) in ms, or None when empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for idx in sorted(self.buckets):
            seen += self.buckets[idx]
            if seen >= rank:
                upper = HIST_MIN_MS * HIST_RATIO**idx
                return min(upper, self.max_ms)
        return self.max_ms


def window_at(t: float, marks: list[tuple[float, str]]) -> str:
    """The window in force at monotonic time t; marks are (start time, name) sorted by time."""
    i = bisect.bisect_right(marks, (t, "\uffff")) - 1
    return marks[i][1] if i >= 0 else marks[0][1]


def windows_overlapping(start: float, end: float, marks: list[tuple[float, str]]) -> list[str]:
    """Names of the windows an interval [start, end] touches, in time order, without repeats."""
    names: list[str] = []
    for i, (t, name) in enumerate(marks):
        lo = -math.inf if i == 0 else t
        hi = marks[i + 1][0] if i + 1 < len(marks) else math.inf
        if start < hi and end >= lo:
            if name not in names:
                names.append(name)
    return names


@dataclass(frozen=True)
class GapSpan:
    start: float  # monotonic s: the last success before the gap (or the session's first send)
    end: float  # monotonic s: the next success (or when sending stopped, if open)
    open: bool = False  # no success closed it before sending stopped

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000.0


def success_time(t_ack: float | None, t_end: float) -> float:
    """When a successful probe counts as served: a transaction when its write was acknowledged (the ledger
    accepted it then; the read-back only proves it), any other probe when its answer arrived."""
    return t_end if t_ack is None else t_ack


@dataclass
class GapTracker:
    """Finds the longest gap and every gap above a threshold between successes.

    Feed success times in non-decreasing order (see SuccessOrder), then `finish(t_stop)`. The chain starts at
    the first scheduled send, so a target that never answers shows as one gap spanning the run.
    """

    origin: float
    threshold_ms: float
    keep_at_most: int = 1000
    last_ok: float | None = None
    last: GapSpan | None = None  # the gap closed by the latest success
    longest: GapSpan | None = None
    above: list[GapSpan] = field(default_factory=list)
    above_total: int = 0

    def ok(self, t: float) -> GapSpan | None:
        """Record a success; return the gap it closes if that gap is above the threshold."""
        start = self.origin if self.last_ok is None else self.last_ok
        if t < start:  # older than a success already counted: only a reorder lag that was too short does this
            return None
        self.last_ok = t
        self.last = GapSpan(start, t)
        return self._consider(self.last)

    def finish(self, t_stop: float) -> GapSpan | None:
        """Close the chain when sending stopped: a trailing silence is an (open) gap too."""
        start = self.origin if self.last_ok is None else self.last_ok
        if t_stop <= start:
            return None
        return self._consider(GapSpan(start, t_stop, open=True))

    def _consider(self, gap: GapSpan) -> GapSpan | None:
        if self.longest is None or gap.ms > self.longest.ms:
            self.longest = gap
        if gap.ms > self.threshold_ms:
            self.above_total += 1
            if len(self.above) < self.keep_at_most:
                self.above.append(gap)
            return gap
        return None


class SuccessOrder:
    """Puts success times back in time order before they reach a GapTracker.

    A transaction counts from its write's acknowledgement but is known only when its read-back returns, so
    successes become known out of order. The caller says up to when the record is complete (`horizon`: no
    success still unknown can be older), and the times up to it come out sorted. Memory: the successes
    between the horizon and the newest known one.
    """

    def __init__(self) -> None:
        self._heap: list[float] = []

    def add(self, t_success: float) -> None:
        heapq.heappush(self._heap, t_success)

    def release(self, horizon: float) -> list[float]:
        """Success times up to `horizon`, in order."""
        out = []
        while self._heap and self._heap[0] <= horizon:
            out.append(heapq.heappop(self._heap))
        return out

    def release_all(self) -> list[float]:
        out = sorted(self._heap)
        self._heap.clear()
        return out


def find_gaps(origin: float, successes: Iterable[tuple[float, float]], t_stop: float, threshold_ms: float,
              reorder_lag_s: float) -> GapTracker:
    """Gaps from (success time, time it became known) pairs in the order they became known; a success
    becomes known at most `reorder_lag_s` after it happened (a probe's timeout plus scheduling slack)."""
    tracker = GapTracker(origin=origin, threshold_ms=threshold_ms)
    order = SuccessOrder()
    for t_success, t_known in successes:
        order.add(t_success)
        for t in order.release(t_known - reorder_lag_s):
            tracker.ok(t)
    for t in order.release_all():
        tracker.ok(t)
    tracker.finish(t_stop)
    return tracker


def default_gap_threshold_ms(rate_per_s: float) -> float:
    """Gaps worth listing: five probe periods, and never under 10 ms (scheduler and loop jitter)."""
    return max(10.0, 5 * 1000.0 / rate_per_s)


# ---------------------------------------------------------------- JSON expectations


def substitute(template: Any, txid: str) -> Any:
    """Replace `{txid}` in every string of a JSON-like template."""
    if isinstance(template, str):
        return template.replace("{txid}", txid)
    if isinstance(template, dict):
        return {k: substitute(v, txid) for k, v in template.items()}
    if isinstance(template, list):
        return [substitute(v, txid) for v in template]
    return template


def json_mismatch(body: Any, expected: dict[str, Any]) -> str | None:
    """None when every expected top-level field equals the body's; else the first difference."""
    if not expected:
        return None
    if not isinstance(body, dict):
        return f"expected a JSON object, got {type(body).__name__}"
    for key, want in expected.items():
        if key not in body:
            return f"field {key!r} missing"
        if body[key] != want:
            return f"field {key!r} is {body[key]!r}, expected {want!r}"
    return None


# ---------------------------------------------------------------- reconciliation


VERIFIED, LOST, DUPLICATED, UNVERIFIABLE = "verified", "lost", "duplicated", "unverifiable"


def classify_readback(
    status: int | None,
    body: Any,
    *,
    ok_status: list[int],
    not_found_status: list[int],
    count_field: str | None,
    expected: dict[str, Any],
) -> str:
    """Judge one acknowledged transaction from its final read-back.

    status None means the read itself failed (timeout, connection): nothing can be concluded.
    """
    if status is None:
        return UNVERIFIABLE
    if status in not_found_status:
        return LOST
    if status not in ok_status:
        return UNVERIFIABLE
    if count_field is not None:
        count = body.get(count_field) if isinstance(body, dict) else None
        if isinstance(count, bool) or not isinstance(count, int):
            return UNVERIFIABLE
        if count == 0:
            return LOST
        if count > 1:
            return DUPLICATED
        expected = {k: v for k, v in expected.items() if k != count_field}
    return VERIFIED if json_mismatch(body, expected) is None else UNVERIFIABLE


# ---------------------------------------------------------------- stop conditions


@dataclass(frozen=True)
class StopLimits:
    max_gap_ms: float
    max_failed: int
    max_failure_streak: int | None


def breach_reason(
    *,
    window: str,
    now: float,
    last_ok: float,
    failed_total: int,
    failure_streak: int,
    limits: StopLimits,
) -> str | None:
    """Why the migration must be aborted now, or None. Only the "during" window aborts anything."""
    if window != "during":
        return None
    gap_ms = (now - last_ok) * 1000.0
    if gap_ms > limits.max_gap_ms:
        return f"no successful probe for {gap_ms:.1f} ms, beyond max_downtime_ms {limits.max_gap_ms:g}"
    if failed_total > limits.max_failed:
        return f"{failed_total} failed probes, error budget max_failed_requests {limits.max_failed} spent"
    if limits.max_failure_streak is not None and failure_streak >= limits.max_failure_streak:
        return f"{failure_streak} consecutive failed probes (max_failure_streak {limits.max_failure_streak})"
    return None
