"""Wire formats: snappy block format, the remote-write protobuf, and the text exposition format."""

from __future__ import annotations

import os
import random
import struct

import pytest
from prometheus_client.parser import text_string_to_metric_families

from livedrill.metrics.encode import encode_write_request, render_text, snappy_compress, snappy_decompress
from livedrill.metrics.samples import Sample

rng = random.Random(7)
SNAPPY_CASES = {
    "empty": b"",
    "one byte": b"a",
    "60-byte literal (1-byte tag)": os.urandom(60),
    "61-byte literal (length byte)": os.urandom(61),
    "300-byte literal (2 length bytes)": os.urandom(300),
    "70000-byte literal (3 length bytes)": os.urandom(70000),
    "short repeats, near": b"abcdefgh" * 50,
    "65 equal bytes": b"q" * 65,
    "68 equal bytes": b"r" * 68,
    "69 equal bytes": b"s" * 69,
    "repeat 3000 bytes back": os.urandom(3000) + b"0123456789abcdef" + os.urandom(3000) + b"0123456789abcdef",
    "beyond the 64 KiB window": (chunk := os.urandom(1000)) + os.urandom(70000) + chunk,
    "two-letter noise": bytes(rng.choice(b"ab") for _ in range(20000)),
}


@pytest.mark.parametrize("data", SNAPPY_CASES.values(), ids=SNAPPY_CASES.keys())
def test_snappy_round_trip(data):
    packed = snappy_compress(data)
    assert snappy_decompress(packed) == data


def test_snappy_compresses_repetitive_payloads():
    labels = b'cluster="prod-core-a",drill="banking-core-quarterly",run_id="20261103T100000Z-x"' * 200
    assert len(snappy_compress(labels)) < len(labels) / 10


def test_snappy_reference_encoding():
    # The block format's own example: a varint length (here 0x0b) then one literal of 11 bytes.
    assert snappy_compress(b"hello world") == b"\x0b\x28hello world"


def _fields(buf: bytes):
    """A minimal protobuf reader for the test: yields (field number, wire type, value)."""
    pos = 0

    def varint():
        nonlocal pos
        shift = result = 0
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while pos < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 1:
            yield number, wire, struct.unpack("<d", buf[pos:pos + 8])[0]
            pos += 8
        elif wire == 2:
            n = varint()
            yield number, wire, buf[pos:pos + n]
            pos += n
        else:
            raise AssertionError(f"unexpected wire type {wire}")


def test_write_request_layout():
    samples = [
        Sample(name="livedrill_probe_gap_seconds", labels={"run_id": "r1", "probe": "p"}, value=0.35, timestamp_ms=2000),
        Sample(name="livedrill_probe_gap_seconds", labels={"run_id": "r1", "probe": "p"}, value=0.04, timestamp_ms=1000),
        Sample(name="livedrill_drill_result", labels={"cluster": "a"}, value=1.0, timestamp_ms=1_790_000_000_123),
    ]
    series = []
    for number, _wire, ts_bytes in _fields(encode_write_request(samples)):
        assert number == 1  # WriteRequest.timeseries
        labels, points = [], []
        for n, _w, value in _fields(ts_bytes):
            if n == 1:
                pair = {k: v.decode() for k, _w2, v in _fields(value)}
                labels.append((pair[1], pair[2]))
            else:
                fields = {k: v for k, _w2, v in _fields(value)}
                points.append((fields[2], fields[1]))
        series.append((labels, points))
    assert series == [
        ([("__name__", "livedrill_drill_result"), ("cluster", "a")], [(1_790_000_000_123, 1.0)]),
        ([("__name__", "livedrill_probe_gap_seconds"), ("probe", "p"), ("run_id", "r1")], [(1000, 0.04), (2000, 0.35)]),
    ]


def test_text_exposition_parses_back():
    awkward = 'a "quoted" value\\ with\nnewline'
    samples = [
        Sample(name="livedrill_drill_result", labels={"drill": awkward, "outcome": "PASSED"}, value=1.0, timestamp_ms=1_790_000_000_500),
        Sample(name="livedrill_probe_latency_seconds", labels={"quantile": "0.99"}, value=0.0046, timestamp_ms=1_790_000_001_000),
        Sample(name="livedrill_drill_end_time_seconds", labels={}, value=1790000000.5, timestamp_ms=1_790_000_000_500),
    ]
    text = render_text(samples)
    parsed = {(s.name, tuple(sorted(s.labels.items()))): (s.value, s.timestamp)
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert parsed == {
        ("livedrill_drill_result", (("drill", awkward), ("outcome", "PASSED"))): (1.0, 1_790_000_000.5),
        ("livedrill_probe_latency_seconds", (("quantile", "0.99"),)): (0.0046, 1_790_000_001.0),
        ("livedrill_drill_end_time_seconds", ()): (1790000000.5, 1_790_000_000.5),
    }
    assert "# TYPE livedrill_drill_result gauge" in text
    untimed = render_text(samples, with_timestamps=False)
    assert [s.timestamp for family in text_string_to_metric_families(untimed) for s in family.samples] == [None] * 3


@pytest.mark.parametrize("name, labels", [
    ("1bad", {}), ("livedrill-x", {}), ("ok", {"__name__": "x"}), ("ok", {"bad-label": "x"}),
])
def test_sample_names_are_checked(name, labels):
    with pytest.raises(ValueError):
        Sample(name=name, labels=labels, value=1.0, timestamp_ms=0)
