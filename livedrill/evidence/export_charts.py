"""Inline SVG charts for the auditor report: a drill timeline and a probe-latency chart.

Plain SVG strings (no JavaScript, no external fonts or files) so the report prints to PDF and
renders the same offline in any browser. Series files are streamed into a fixed number of time
buckets, so an hour at 1 kHz draws as fast as a minute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from livedrill.outcomes import TimelineEvent
from livedrill.probe.series import ProbeRecord, WindowMark, iter_series

WIDTH = 900
MARGIN_LEFT = 110
MARGIN_RIGHT = 20
PLOT_WIDTH = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
LATENCY_BUCKETS = 450  # two pixels per bucket at WIDTH
WINDOW_COLOURS = {"baseline": "#2b8a3e", "during": "#c92a2a", "after": "#1864ab"}


@dataclass
class LatencyBucket:
    count: int = 0
    failed: int = 0
    max_ms: float | None = None
    sum_ms: float = 0.0

    @property
    def mean_ms(self) -> float | None:
        ok = self.count - self.failed
        return self.sum_ms / ok if ok else None


@dataclass
class LatencySeries:
    """A probe series reduced to time buckets, with the window marks, times relative to the first send."""

    duration_s: float
    buckets: list[LatencyBucket]
    marks: list[tuple[str, float]] = field(default_factory=list)
    records: int = 0


def series_span(items: Iterable[ProbeRecord | WindowMark]) -> tuple[float, float] | None:
    """First and last send time of the probes (window marks ignored); None without probes."""
    t0 = t1 = None
    for item in items:
        if isinstance(item, ProbeRecord):
            t0 = item.t_sched if t0 is None else min(t0, item.t_sched)
            t1 = item.t_sched if t1 is None else max(t1, item.t_sched)
    return None if t0 is None or t1 is None else (t0, t1)


def bucket_series(items: Iterable[ProbeRecord | WindowMark], t0: float, t1: float, buckets: int = LATENCY_BUCKETS) -> LatencySeries:
    """Reduce probes sent between t0 and t1 to `buckets` equal time slices by send time, in one pass."""
    span = max(t1 - t0, 1e-6)
    out = [LatencyBucket() for _ in range(buckets)]
    marks: list[tuple[str, float]] = []
    records = 0
    for item in items:
        if isinstance(item, WindowMark):
            marks.append((item.window, item.t - t0))
            continue
        records += 1
        b = out[min(buckets - 1, max(0, int((item.t_sched - t0) / span * buckets)))]
        b.count += 1
        if item.ok:
            b.sum_ms += item.latency_ms
            b.max_ms = item.latency_ms if b.max_ms is None else max(b.max_ms, item.latency_ms)
        else:
            b.failed += 1
    return LatencySeries(span, out, marks, records)


def read_latency_series(path: Path, buckets: int = LATENCY_BUCKETS) -> LatencySeries:
    """Two streaming passes over a series file (span, then buckets): memory stays constant with its length."""
    span = series_span(iter_series(path))
    if span is None:
        return LatencySeries(0.0, [], [], 0)
    return bucket_series(iter_series(path), *span, buckets=buckets)


def _log_y(value_ms: float, lo: float, hi: float, top: float, height: float) -> float:
    v = min(max(value_ms, lo), hi)
    return top + height - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * height


def latency_svg(series: LatencySeries, *, title: str, slo_p99_ms: float | None = None, gap_ms: float | None = None) -> str:
    """Per-bucket worst and mean latency on a log scale; failed probes as red ticks; window starts as lines."""
    height, top, plot_h = 300, 30, 220
    if not series.buckets:
        return _empty_svg(title, "no probe samples recorded / 无探测数据")
    worst = [b.max_ms for b in series.buckets if b.max_ms is not None]
    lo = 0.1
    hi = 10 ** math.ceil(math.log10(max(worst + [slo_p99_ms or 1.0, 1.0]) * 1.05))
    step = PLOT_WIDTH / len(series.buckets)
    parts = [_svg_open(height, title)]
    decade = lo
    while decade <= hi:
        y = _log_y(decade, lo, hi, top, plot_h)
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dee2e6"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{decade:g} ms</text>')
        decade *= 10
    if slo_p99_ms:
        y = _log_y(slo_p99_ms, lo, hi, top, plot_h)
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e67700" stroke-dasharray="6 3"/>')
        parts.append(f'<text x="{WIDTH - MARGIN_RIGHT}" y="{y - 4:.1f}" text-anchor="end" font-size="11" fill="#e67700">SLO p99 {slo_p99_ms:g} ms</text>')
    for name, t in series.marks:
        x = MARGIN_LEFT + t / series.duration_s * PLOT_WIDTH if series.duration_s else MARGIN_LEFT
        colour = WINDOW_COLOURS.get(name, "#495057")
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{colour}" stroke-width="1.5"/>')
        parts.append(f'<text x="{x + 3:.1f}" y="{top + 12}" font-size="11" fill="{colour}">{escape(name)}</text>')
    for key, colour, width in (("max", "#343a40", 1.2), ("mean", "#74c0fc", 1.0)):
        points = []
        for i, b in enumerate(series.buckets):
            value = b.max_ms if key == "max" else b.mean_ms
            if value is not None:
                points.append(f"{MARGIN_LEFT + (i + 0.5) * step:.1f},{_log_y(value, lo, hi, top, plot_h):.1f}")
        if points:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{" ".join(points)}"/>')
    for i, b in enumerate(series.buckets):
        if b.failed:
            x = MARGIN_LEFT + (i + 0.5) * step
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h - 10}" stroke="#e03131" stroke-width="2"><title>{b.failed} failed</title></line>')
    parts.append(_x_axis(series.duration_s, top + plot_h))
    legend = f"worst / 最大 (black), mean / 平均 (blue), failed / 失败 (red); {series.records} probes"
    if gap_ms is not None:
        legend += f"; longest gap / 最长中断 {gap_ms:.1f} ms"
    parts.append(f'<text x="{MARGIN_LEFT}" y="{height - 8}" font-size="11">{escape(legend)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(events: list[TimelineEvent], *, title: str) -> str:
    """One lane per event source; every event a dot (hover: details); stage and phase changes labelled."""
    if not events:
        return _empty_svg(title, "no timeline recorded / 无时间线")
    sources = list(dict.fromkeys(e.source for e in events))
    lane_h, top = 34, 30
    height = top + lane_h * len(sources) + 40
    t0 = min(e.at for e in events)
    span = max((max(e.at for e in events) - t0).total_seconds(), 1e-3)
    parts = [_svg_open(height, title)]
    for lane, source in enumerate(sources):
        y = top + lane * lane_h + lane_h / 2
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y}" y2="{y}" stroke="#e9ecef"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4}" text-anchor="end" font-size="11">{escape(source)}</text>')
    last_label_x: dict[str, float] = {}
    for e in events:
        lane = sources.index(e.source)
        y = top + lane * lane_h + lane_h / 2
        x = MARGIN_LEFT + (e.at - t0).total_seconds() / span * PLOT_WIDTH
        label = _event_label(e)
        colour = "#c92a2a" if e.kind in ("abort-signal", "refused", "rollback", "cancel") else "#1c7ed6"
        detail = ", ".join(f"{k}={v}" for k, v in e.detail.items())
        parts.append(f'<circle cx="{x:.1f}" cy="{y}" r="3.5" fill="{colour}"><title>{escape(e.at.isoformat())} {escape(e.kind)} {escape(detail)}</title></circle>')
        if label and x - last_label_x.get(e.source, -1e9) > 60:
            anchor = "end" if x > WIDTH - MARGIN_RIGHT - 50 else "start" if x < MARGIN_LEFT + 50 else "middle"
            parts.append(f'<text x="{x:.1f}" y="{y - 7}" font-size="10" text-anchor="{anchor}">{escape(label)}</text>')
            last_label_x[e.source] = x
    parts.append(_x_axis(span, top + lane_h * len(sources)))
    parts.append("</svg>")
    return "".join(parts)


def _event_label(e: TimelineEvent) -> str:
    for key in ("phase", "stage", "window", "outcome"):
        if key in e.detail:
            return str(e.detail[key])[:18]
    return ""


def _x_axis(span_s: float, y: float) -> str:
    ticks = []
    step = _nice_step(span_s / 8)
    t = 0.0
    while t <= span_s + 1e-9:
        x = MARGIN_LEFT + t / span_s * PLOT_WIDTH if span_s else MARGIN_LEFT
        ticks.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 4}" stroke="#495057"/><text x="{x:.1f}" y="{y + 16}" font-size="10" text-anchor="middle">{t:g} s</text>')
        t += step
    return f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y}" y2="{y}" stroke="#495057"/>' + "".join(ticks)


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _svg_open(height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{escape(title)}">'
        f'<text x="{MARGIN_LEFT}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>'
    )


def _empty_svg(title: str, message: str) -> str:
    return _svg_open(60, title) + f'<text x="{MARGIN_LEFT}" y="44" font-size="12" fill="#868e96">{escape(message)}</text></svg>'
