"""Wire formats: Prometheus text exposition (VictoriaMetrics import, Pushgateway) and remote write 1.0.

Remote write is a protobuf `WriteRequest` compressed with snappy's block format: the messages come from
the protobuf runtime (the descriptor is built below, so there is no generated module and no protoc), the
compression from cramjam (a maintained binding of Rust's snap crate). Both replaced hand-written code
(a field-by-field protobuf writer and a greedy LZ77 snappy compressor); benchmarks/metrics_export.py,
best of 5, 2 CPUs shared with other jobs, CPython 3.11, protobuf's upb runtime:
                                    hand-written          library
    601 samples, 47 KB protobuf     4.3 ms + 5.7 ms   ->  2.4 ms + 0.02 ms
    5101 samples, 128 KB protobuf   18.4 ms + 21.3 ms ->  12.2 ms + 0.10 ms
The compressed payload is within 3 % of the hand-written one (37.8 KB against 36.8 KB at 5101 samples).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from livedrill.metrics.samples import CATALOGUE, Sample, family_of, format_value


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render_text(samples: Iterable[Sample], *, with_timestamps: bool = True,
                catalogue: Mapping[str, tuple[str, str]] = CATALOGUE) -> str:
    """The text exposition format, one family block per metric name, with HELP and TYPE lines from `catalogue`
    (name -> (type, help); livedrill's own by default)."""
    families: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        families[family_of(s.name)].append(s)
    lines: list[str] = []
    for name in sorted(families):
        kind, help_text = catalogue.get(name, ("untyped", name))
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


def _write_request_class() -> type:
    """prometheus.WriteRequest as remote write 1.0 defines it (prompb/remote.proto, types.proto): only the
    fields a sender fills (metadata is optional and not sent)."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="livedrill_remote_write.proto", package="prometheus", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, str | None]) -> None:
        msg = file.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            msg.field.add(name=field_name, number=number, type=kind, type_name=type_name,
                          label=f.LABEL_REPEATED if type_name else f.LABEL_OPTIONAL)

    message("Label", ("name", 1, f.TYPE_STRING, None), ("value", 2, f.TYPE_STRING, None))
    message("Sample", ("value", 1, f.TYPE_DOUBLE, None), ("timestamp", 2, f.TYPE_INT64, None))
    message("TimeSeries", ("labels", 1, f.TYPE_MESSAGE, ".prometheus.Label"),
            ("samples", 2, f.TYPE_MESSAGE, ".prometheus.Sample"))
    message("WriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, ".prometheus.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest = _write_request_class()


def encode_write_request(samples: Iterable[Sample]) -> bytes:
    """prometheus.WriteRequest{timeseries: [TimeSeries{labels (sorted, with __name__), samples (by time)}]}."""
    series: dict[tuple, list[Sample]] = defaultdict(list)
    for s in samples:
        series[s.series_key()].append(s)
    request = WriteRequest()
    for (name, labels), group in sorted(series.items()):
        ts = request.timeseries.add()
        for key, value in sorted([("__name__", name), *labels]):
            ts.labels.add(name=key, value=value)
        for s in sorted(group, key=lambda x: x.timestamp_ms):
            ts.samples.add(value=s.value, timestamp=s.timestamp_ms)
    return request.SerializeToString()


# ---------------------------------------------------------------- snappy block format


def snappy_compress(data: bytes) -> bytes:
    """Snappy's block format (what remote write sends; not the framed stream format)."""
    return bytes(cramjam.snappy.compress_raw(data))


def snappy_decompress(data: bytes) -> bytes:
    """The inverse, for checking what was sent (tests, and re-reading a saved payload)."""
    return bytes(cramjam.snappy.decompress_raw(data))
