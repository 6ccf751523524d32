"""Wire formats: Prometheus text exposition (VictoriaMetrics import, Pushgateway) and remote write 1.0.

Remote write is a protobuf `WriteRequest` compressed with snappy's block format. Both are small enough
to write here (five message fields; a greedy LZ77 compressor), which keeps the push free of
protobuf and snappy packages.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable

from livedrill.metrics.samples import CATALOGUE, Sample, family_of, format_value


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render_text(samples: Iterable[Sample], *, with_timestamps: bool = True) -> str:
    """The text exposition format, one family block per metric name, with HELP and TYPE lines."""
    families: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        families[family_of(s.name)].append(s)
    lines: list[str] = []
    for name in sorted(families):
        kind, help_text = CATALOGUE.get(name, ("untyped", name))
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} {kind}")
        for s in sorted(families[name], key=lambda x: (x.name, sorted(x.labels.items()), x.timestamp_ms)):
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(s.labels.items()))
            line = f"{s.name}{{{labels}}} {format_value(s.value)}" if labels else f"{s.name} {format_value(s.value)}"
            if with_timestamps:
                line += f" {s.timestamp_ms}"
            lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


# ---------------------------------------------------------------- protobuf (remote write 1.0)


def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_write_request(samples: Iterable[Sample]) -> bytes:
    """prometheus.WriteRequest{timeseries: [TimeSeries{labels (sorted, with __name__), samples (by time)}]}."""
    series: dict[tuple, list[Sample]] = defaultdict(list)
    for s in samples:
        series[s.series_key()].append(s)
    out = bytearray()
    for (name, labels), group in sorted(series.items()):
        body = bytearray()
        for key, value in sorted([("__name__", name), *labels]):
            body += _field_bytes(1, _field_bytes(1, key.encode()) + _field_bytes(2, value.encode()))
        for s in sorted(group, key=lambda x: x.timestamp_ms):
            sample = b"\x09" + struct.pack("<d", s.value) + b"\x10" + _varint(s.timestamp_ms)
            body += _field_bytes(2, sample)
        out += _field_bytes(1, bytes(body))
    return bytes(out)


# ---------------------------------------------------------------- snappy block format

_MIN_MATCH = 4
_MAX_OFFSET = 65535


def _literal(data: bytes) -> bytes:
    n = len(data) - 1
    if n < 60:
        return bytes([n << 2]) + data
    size = (n.bit_length() + 7) // 8
    return bytes([(59 + size) << 2]) + n.to_bytes(size, "little") + data


def _copy(offset: int, length: int) -> bytes:
    """Back-references of at most 64 bytes each; the split never leaves a piece shorter than 4."""
    pieces = []
    while length >= 68:
        pieces.append(64)
        length -= 64
    if length > 64:
        pieces.append(60)
        length -= 60
    pieces.append(length)
    out = bytearray()
    for piece in pieces:
        if piece <= 11 and offset < 2048:
            out += bytes([0x01 | (piece - 4) << 2 | (offset >> 8) << 5, offset & 0xFF])
        else:
            out += bytes([0x02 | (piece - 1) << 2]) + offset.to_bytes(2, "little")
    return bytes(out)


def snappy_compress(data: bytes) -> bytes:
    """Snappy block format (what remote write sends): a varint length, then literals and back-references."""
    out = bytearray(_varint(len(data)))
    table: dict[int, int] = {}
    n = len(data)
    literal_start = i = 0
    while i + _MIN_MATCH <= n:
        key = int.from_bytes(data[i:i + _MIN_MATCH], "little")
        candidate = table.get(key)
        table[key] = i
        if candidate is None or i - candidate > _MAX_OFFSET:
            i += 1
            continue
        length = _MIN_MATCH
        while i + length < n and data[candidate + length] == data[i + length]:
            length += 1
        if literal_start < i:
            out += _literal(data[literal_start:i])
        out += _copy(i - candidate, length)
        i += length
        literal_start = i
    if literal_start < n:
        out += _literal(data[literal_start:])
    return bytes(out)


def snappy_decompress(data: bytes) -> bytes:
    """The inverse, for checking what was sent (tests, and re-reading a saved payload)."""
    pos, length, shift = 0, 0, 0
    while True:
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            n = tag >> 2
            if n >= 60:
                size = n - 59
                n = int.from_bytes(data[pos:pos + size], "little")
                pos += size
            out += data[pos:pos + n + 1]
            pos += n + 1
            continue
        if kind == 1:
            count, offset = 4 + (tag >> 2 & 7), (tag >> 5) << 8 | data[pos]
            pos += 1
        elif kind == 2:
            count, offset = (tag >> 2) + 1, int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            count, offset = (tag >> 2) + 1, int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise ValueError("snappy: copy before the start of the output")
        for _ in range(count):
            out.append(out[-offset])
    if len(out) != length:
        raise ValueError(f"snappy: decoded {len(out)} bytes, header says {length}")
    return bytes(out)
