"""The series file: written incrementally, readable with the standard library alone, summarised by streaming."""

from __future__ import annotations

import json
import struct

import pytest

from livedrill.probe.series import RECORD, Outcome, ProbeRecord, SeriesWriter, WindowMark, iter_series, read_header
from livedrill.probe.summary import summarise_series


def _write(path, records, marks=()):
    w = SeriesWriter(path, {"probe": "p", "first_send_monotonic": 100.0, "timeout_ms": 2000.0}, (1_700_000_000.0, 100.0))
    w.mark("baseline", 100.0)
    for when, name in marks:
        w.mark(name, when)
    for r in records:
        w.append(*r)
    w.close()


def test_round_trip_and_plain_struct_reading(tmp_path):
    path = tmp_path / "p.series"
    _write(path, [(0, 100.0, 100.0001, 100.0003, 100.0005, Outcome.OK, 2, 200),
                  (1, 100.001, 100.001, None, 102.001, Outcome.TIMEOUT, 1, 0)])
    items = list(iter_series(path))
    assert items[0] == WindowMark("baseline", 100.0)
    ok, timeout = items[1], items[2]
    assert isinstance(ok, ProbeRecord) and ok.ok and ok.status == 200
    assert ok.latency_ms == pytest.approx(0.4, abs=0.001)
    assert ok.t_ack == pytest.approx(100.0003, abs=1e-6)
    assert timeout.t_ack is None and timeout.outcome == Outcome.TIMEOUT
    assert timeout.t_end == pytest.approx(102.001, abs=1e-6)
    # the docstring's recipe, standard library only
    with open(path, "rb") as f:
        header = json.loads(f.readline())
        rec = struct.Struct(header["record"]["struct"])
        rows = [rec.unpack(chunk) for chunk in iter(lambda: f.read(rec.size), b"")]
    assert header["record"]["size"] == RECORD.size == 28
    assert header["outcomes"]["1"] == "timeout" and header["clock"]["monotonic_s"] == 100.0
    assert [r[0] for r in rows] == [0xFFFFFFFF, 0, 1]
    assert read_header(path)["probe"] == "p"


def test_torn_tail_is_ignored(tmp_path):
    path = tmp_path / "p.series"
    _write(path, [(0, 100.0, 100.0, None, 100.001, Outcome.OK, 1, 200)])
    with open(path, "ab") as f:
        f.write(b"\x01\x02\x03")  # a crash mid-record
    assert len(list(iter_series(path))) == 2


def test_summary_from_series_windows_gaps_failures(tmp_path):
    path = tmp_path / "p.series"
    period = 0.01
    records = []
    for k in range(300):  # 3 s at 100/s, 1 ms latency, a 200 ms outage from 1.5 s
        t = 100.0 + k * period
        if 101.5 <= t < 101.7:
            records.append((k, t, t, None, t + 0.1, Outcome.CONNECT, 1, 0))
        else:
            records.append((k, t, t, t + 0.0005, t + 0.001, Outcome.OK, 2, 200))
    records.sort(key=lambda r: r[4])  # completion order, as the engine writes
    _write(path, records, marks=[(101.0, "during"), (102.0, "after")])
    s = summarise_series(path, gap_threshold_ms=50.0, stopped_monotonic=103.0, reorder_slack_s=1.0)
    assert s.sent == 300 and s.ok == 280 and s.failed == 20
    assert s.failures_by_kind == {"connect": 20}
    assert s.windows["baseline"].count == 100 and s.windows["during"].failed == 20
    assert s.windows["after"].ok == 100
    assert s.longest_gap.duration_ms == pytest.approx(210.0, abs=0.01)  # 101.491 -> 101.701
    assert s.longest_gap.windows == ["during"] and not s.longest_gap.open
    assert s.gaps_above_total == 1
    assert s.windows["during"].p99_ms == pytest.approx(1.0, rel=0.011)
    assert s.longest_gap.start_at.timestamp() == pytest.approx(1_700_000_001.491, abs=1e-3)
    assert s.acknowledged == 280


def test_gap_ends_at_the_first_acknowledged_write_after_an_outage_whatever_order_read_backs_finish(tmp_path):
    """After a freeze the target answers the queued writes first, then their read-backs, in any order: the
    service was back when it acknowledged the first write, so that is where the gap ends."""
    path = tmp_path / "p.series"
    records = []
    for k in range(100):  # 100/s; the target frozen from 100.3 to 100.5
        t = 100.0 + k * 0.01
        if 100.3 <= t < 100.5:  # queued: acknowledged right after the resume, read back much later, in reverse
            ack = 100.5 + (k - 30) * 0.0001
            records.append((k, t, t, ack, 100.52 - (k - 30) * 0.0005, Outcome.OK, 2, 200))
        else:
            records.append((k, t, t, t + 0.0004, t + 0.0008, Outcome.OK, 2, 200))
    records.sort(key=lambda r: r[4])
    _write(path, records)
    s = summarise_series(path, gap_threshold_ms=50.0, stopped_monotonic=101.0, reorder_slack_s=1.0)
    # last ack before the freeze 100.2904, first ack after it 100.5000
    assert s.longest_gap.duration_ms == pytest.approx(209.6, abs=0.01)
    assert s.gaps_above_total == 1
