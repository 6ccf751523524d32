"""The export's pure pieces, table-driven: test-result mapping, check grouping, series buckets, charts, DSSE PAE."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from livedrill.evidence.export_charts import bucket_series, latency_svg, series_span, timeline_svg
from livedrill.evidence.export_formats import pae
from livedrill.evidence.export_summary import CheckRow, DrillSummary, checks_by_status, intoto_result
from livedrill.outcomes import TimelineEvent
from livedrill.probe.series import Outcome, ProbeRecord, WindowMark


@pytest.mark.parametrize(
    "outcome,warned,expected",
    [("PASSED", [], "PASSED"), ("PASSED", ["preflight/x"], "WARNED"), ("FAILED", [], "FAILED"), ("ERROR", [], "FAILED"), ("UNKNOWN", [], "FAILED")],
)
def test_intoto_result(outcome: str, warned: list[str], expected: str) -> None:
    assert intoto_result(outcome, warned) == expected


def _summary(**checks: list[CheckRow]) -> DrillSummary:
    t = datetime(2026, 11, 26, tzinfo=timezone.utc)
    return DrillSummary(
        run_id="r", drill="d", cluster=None, platform=None, mode=None, vms=[], started_at=None, ended_at=None, operator=None,
        approved_by=None, change_ticket=None, outcome="PASSED", reasons=[], observed_downtime_ms=None, slo={},
        preflight=checks.get("preflight", []), postcheck=checks.get("postcheck", []), verdict_checks=checks.get("verdict", []),
        probes=[], compensations=[], timeline=[], versions={}, manifest_sha256="0" * 64, key_id="k", sequence=1, sealed_at=t,
        timestamped_at=None, files=0, missing=[],
    )


def test_checks_are_grouped_by_status_with_stage_and_subject_and_not_repeated() -> None:
    row = CheckRow(name="live-migratable", status="pass", message="", subject="vmi a/b")
    summary = _summary(
        preflight=[row, row, CheckRow(name="capacity", status="warn", message="")],
        postcheck=[CheckRow(name="vm-running", status="fail", message="")],
        verdict=[CheckRow(name="probe.downtime", status="not_applicable", message="")],
    )
    assert checks_by_status(summary) == (["preflight/live-migratable [vmi a/b]"], ["preflight/capacity"], ["postcheck/vm-running"])


def _probe(seq: int, t: float, latency_s: float, ok: bool = True) -> ProbeRecord:
    return ProbeRecord(seq=seq, t_sched=t, t_start=t, t_ack=None, t_end=t + latency_s, outcome=Outcome.OK if ok else Outcome.TIMEOUT, step=1, status=0)


def test_bucket_series_keeps_worst_latency_failures_and_marks() -> None:
    items = [WindowMark("baseline", 100.0), _probe(0, 100.0, 0.002), _probe(1, 101.0, 0.050), WindowMark("during", 104.0),
             _probe(2, 105.0, 0.003, ok=False), _probe(3, 110.0, 0.001)]
    assert series_span(items) == (100.0, 110.0)
    series = bucket_series(items, 100.0, 110.0, buckets=10)
    assert series.records == 4 and series.duration_s == 10.0
    assert series.marks == [("baseline", 0.0), ("during", 4.0)]
    assert [b.count for b in series.buckets] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert series.buckets[1].max_ms == pytest.approx(50.0)
    assert series.buckets[5].failed == 1 and series.buckets[5].max_ms is None
    assert series.buckets[9].max_ms == pytest.approx(1.0)  # the last probe lands in the last bucket


def test_series_without_probes_has_no_span() -> None:
    assert series_span([WindowMark("baseline", 1.0)]) is None


def test_latency_chart_draws_lines_failures_windows_and_slo() -> None:
    items = [WindowMark("during", 100.5), *(_probe(i, 100.0 + i / 10, 0.002 + (0.05 if i == 5 else 0)) for i in range(10)), _probe(10, 101.0, 0.1, ok=False)]
    svg = latency_svg(bucket_series(items, 100.0, 101.0, buckets=20), title="Probe <ledger>", slo_p99_ms=50, gap_ms=48.0)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2  # worst and mean
    assert "1 failed" in svg and "during" in svg and "SLO p99 50 ms" in svg and "48.0 ms" in svg
    assert "Probe &lt;ledger&gt;" in svg  # titles are escaped
    assert "no probe samples" in latency_svg(bucket_series([], 0.0, 1.0, buckets=0), title="t")


def test_timeline_chart_has_a_lane_per_source_and_labels_phases() -> None:
    t = datetime(2026, 11, 26, 15, 30, tzinfo=timezone.utc)
    events = [
        TimelineEvent(at=t, monotonic=0, source="livedrill", kind="stage", detail={"stage": "preflight"}),
        TimelineEvent(at=t.replace(second=10), monotonic=10, source="platform", kind="phase", detail={"phase": "Running"}),
        TimelineEvent(at=t.replace(second=20), monotonic=20, source="platform", kind="phase", detail={"phase": "Succeeded"}),
    ]
    svg = timeline_svg(events, title="timeline")
    assert svg.count("<circle") == 3
    for text in (">livedrill<", ">platform<", ">preflight<", ">Running<", ">Succeeded<", ">20 s<"):
        assert text in svg
    assert "no timeline" in timeline_svg([], title="t")


def test_dsse_pae_matches_the_specification_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
