"""The summary of one probe, computed by streaming its series file (two passes, constant memory).

Pass 1 finds the gaps between successes (a transaction counts from its write's acknowledgement, see
measure.success_time; the file is in completion order, so pass 1 puts them back in time order): the longest
is the outage. Pass 2 builds per-window latency distributions, including the p99 of the probes that did not
overlap a listed gap (latency "outside stop-and-copy"), and the longest stall: the longest any probe that
was sent waited for its answer or its failure, TCP's retransmissions included. Hunters given up during an
outage (ABANDONED) were never delivered: they are counted apart, neither failures nor stalls.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from livedrill.probe.measure import GapSpan, LatencyHistogram, find_gaps, success_time, windows_overlapping
from livedrill.probe.report import GapRecord, StallRecord, WindowStats
from livedrill.probe.series import MARK_OUTCOME, NO_ACK, WINDOWS, Outcome, iter_raw, read_header


@dataclass
class SeriesSummary:
    header: dict
    origin: float
    marks: list[tuple[float, str]]
    windows: dict[str, WindowStats]
    longest_gap: GapRecord | None
    gaps_above: list[GapRecord]
    gaps_above_total: int
    sent: int = 0
    ok: int = 0
    failed: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    unresolved_at_stop: int = 0
    max_send_lag_ms: float = 0.0
    acknowledged: int = 0
    abandoned: int = 0
    longest_stall: StallRecord | None = None


def wall_clock(header: dict, t: float) -> datetime:
    clock = header["clock"]
    return datetime.fromtimestamp(clock["wall_epoch_s"], timezone.utc) + timedelta(seconds=t - clock["monotonic_s"])


def summarise_series(path: Path, gap_threshold_ms: float, stopped_monotonic: float, reorder_slack_s: float) -> SeriesSummary:
    """`reorder_slack_s`: how much later than its timeout a probe may still be recorded (loop stalls)."""
    header = read_header(path)
    origin = header["first_send_monotonic"]

    # pass 1: marks and gaps (raw tuples: an hour at 1 kHz is 3.6 M records)
    marks: list[tuple[float, str]] = []

    def successes():
        for _, t_sched, _, d_ack, d_end, outcome, step, _ in iter_raw(path):
            if outcome == MARK_OUTCOME:
                marks.append((t_sched, WINDOWS[step]))
            elif outcome == Outcome.OK:
                t_end = t_sched + d_end / 1e6
                yield success_time(None if d_ack == NO_ACK else t_sched + d_ack / 1e6, t_end), t_end

    tracker = find_gaps(origin, successes(), stopped_monotonic, gap_threshold_ms,
                        reorder_lag_s=header["timeout_ms"] / 1000.0 + reorder_slack_s)
    if not marks:
        marks = [(origin, WINDOWS[0])]
    marks.sort()

    # pass 2: windows, failures, lag; "outside gaps" excludes probes overlapping a listed gap
    gap_starts = [g.start for g in tracker.above]
    gap_ends = [g.end for g in tracker.above]
    window_starts = [t for t, _ in marks]
    window_names = [name for _, name in marks]

    hist = {name: LatencyHistogram() for name in WINDOWS}
    hist_outside = {name: LatencyHistogram() for name in WINDOWS}
    counts = {name: [0, 0] for name in WINDOWS}  # ok, failed
    summary = SeriesSummary(header=header, origin=origin, marks=marks, windows={}, longest_gap=None,
                            gaps_above=[], gaps_above_total=tracker.above_total)
    failures: dict[int, int] = {}
    max_lag_us = 0
    stall: tuple[int, int, float, int, int] | None = None  # (waited µs, seq, t_sched, d_start, outcome)
    for seq, t_sched, d_start, d_ack, d_end, outcome, _, _ in iter_raw(path):
        if outcome == MARK_OUTCOME:
            continue
        i = bisect.bisect_right(window_starts, t_sched) - 1
        window = window_names[i if i >= 0 else 0]
        summary.sent += 1
        if d_ack != NO_ACK:
            summary.acknowledged += 1
        if outcome != Outcome.IN_FLIGHT_LIMIT and d_start > max_lag_us:
            max_lag_us = d_start
        if outcome == Outcome.ABANDONED:
            summary.abandoned += 1
            continue
        if outcome != Outcome.IN_FLIGHT_LIMIT and (stall is None or d_end - d_start > stall[0]):
            stall = (d_end - d_start, seq, t_sched, d_start, outcome)
        if outcome == Outcome.OK:
            summary.ok += 1
            counts[window][0] += 1
            latency_ms = (d_end - d_start) / 1000.0
            hist[window].add(latency_ms)
            t_start, t_end = t_sched + d_start / 1e6, t_sched + d_end / 1e6
            g = bisect.bisect_right(gap_starts, t_end) - 1
            if g < 0 or gap_ends[g] < t_start:
                hist_outside[window].add(latency_ms)
        else:
            counts[window][1] += 1
            failures[outcome] = failures.get(outcome, 0) + 1
    summary.failed = sum(failures.values())
    summary.failures_by_kind = {Outcome(code).kind: n for code, n in sorted(failures.items())}
    summary.unresolved_at_stop = failures.get(Outcome.UNRESOLVED_AT_STOP, 0)
    summary.max_send_lag_ms = max_lag_us / 1000.0

    mark_time = {name: t for t, name in marks}
    for name in WINDOWS:
        h = hist[name]
        summary.windows[name] = WindowStats(
            window=name, start_monotonic=mark_time.get(name), count=sum(counts[name]), ok=counts[name][0],
            failed=counts[name][1], p50_ms=h.percentile(50), p95_ms=h.percentile(95), p99_ms=h.percentile(99),
            max_ms=h.max_ms if h.count else None, p99_outside_gaps_ms=hist_outside[name].percentile(99),
        )

    def as_record(gap: GapSpan) -> GapRecord:
        return GapRecord(duration_ms=round(gap.ms, 3), start_monotonic=gap.start, end_monotonic=gap.end,
                         start_at=wall_clock(header, gap.start), end_at=wall_clock(header, gap.end),
                         windows=windows_overlapping(gap.start, gap.end, marks), open=gap.open)

    summary.longest_gap = as_record(tracker.longest) if tracker.longest is not None else None
    if stall is not None:
        waited_us, seq, t_sched, d_start, outcome = stall
        start, end = t_sched + d_start / 1e6, t_sched + (d_start + waited_us) / 1e6
        summary.longest_stall = StallRecord(duration_ms=round(waited_us / 1000.0, 3), seq=seq, outcome=Outcome(outcome).kind,
                                            start_monotonic=start, end_monotonic=end, start_at=wall_clock(header, start),
                                            windows=windows_overlapping(start, end, marks))
    summary.gaps_above = [as_record(g) for g in tracker.above]
    return summary
