"""Pushing samples to one sink: Prometheus remote write, VictoriaMetrics import, or a Pushgateway."""

from __future__ import annotations

import base64
import re
from collections import defaultdict

import httpx
from pydantic import BaseModel, ConfigDict

from livedrill.metrics.config import PushSink
from livedrill.metrics.encode import encode_write_request, render_text, snappy_compress
from livedrill.metrics.http import make_client, payload_timeout, request_headers, send_with_retry
from livedrill.metrics.samples import Sample

_PLAIN_PATH_VALUE = re.compile(r"^[A-Za-z0-9_.:-]+$")


class PushRequest(BaseModel):
    """One HTTP request a push makes (pure data, built before anything is sent)."""

    model_config = ConfigDict(extra="forbid")

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    samples: int
    series: int


class PushResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    url: str
    requests: int
    samples: int
    series: int
    bytes: int


def with_extra_labels(samples: list[Sample], extra: dict[str, str]) -> list[Sample]:
    """Pure: add the sink's labels where a sample does not already carry that label."""
    if not extra:
        return samples
    return [s.model_copy(update={"labels": {**extra, **s.labels}}) for s in samples]


def newest_per_series(samples: list[Sample]) -> list[Sample]:
    """Pure: the last value of each series (what a Pushgateway, which keeps no history, can hold)."""
    newest: dict[tuple, Sample] = {}
    for s in samples:
        key = s.series_key()
        if key not in newest or s.timestamp_ms >= newest[key].timestamp_ms:
            newest[key] = s
    return list(newest.values())


def _path_label(name: str, value: str) -> str:
    if value and _PLAIN_PATH_VALUE.match(value):
        return f"/{name}/{value}"
    encoded = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=") or "="
    return f"/{name}@base64/{encoded}"


def build_requests(samples: list[Sample], sink: PushSink) -> list[PushRequest]:
    """Pure: the requests that push `samples` to `sink` (headers other than the content ones added at send time)."""
    samples = with_extra_labels(samples, sink.extra_labels)
    if not samples:
        return []
    if sink.kind == "remote_write":
        body = snappy_compress(encode_write_request(samples))
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
                   "X-Prometheus-Remote-Write-Version": "0.1.0"}
        return [PushRequest(method="POST", url=sink.url, headers=headers, body=body, samples=len(samples),
                            series=len({s.series_key() for s in samples}))]
    if sink.kind == "victoriametrics_import":
        body = render_text(samples, with_timestamps=True).encode()
        return [PushRequest(method="POST", url=sink.url, headers={"Content-Type": "text/plain; version=0.0.4"},
                            body=body, samples=len(samples), series=len({s.series_key() for s in samples}))]
    # Pushgateway: one group per cluster and drill; PUT replaces that group's previous run.
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in newest_per_series(samples):
        groups[(s.labels.get("cluster", ""), s.labels.get("drill", ""))].append(s)
    requests = []
    for (cluster, drill), group in sorted(groups.items()):
        url = f"{sink.url}/metrics{_path_label('job', sink.job)}{_path_label('cluster', cluster)}{_path_label('drill', drill)}"
        body = render_text(group, with_timestamps=False).encode()
        requests.append(PushRequest(method="PUT", url=url, headers={"Content-Type": "text/plain; version=0.0.4"},
                                    body=body, samples=len(group), series=len(group)))
    return requests


def push_samples(samples: list[Sample], sink: PushSink, *, client: httpx.Client | None = None) -> PushResult:
    """Send every request of the push; raises MetricsEndpointError when the sink refuses or stays unreachable."""
    requests = build_requests(samples, sink)
    own_client = client is None
    client = client or make_client(sink)
    try:
        for req in requests:
            headers = {**request_headers(sink), **req.headers}
            timeout = payload_timeout(sink, sink.timeout_s, sink.timeout_per_mib_s, len(req.body))
            send_with_retry(sink, lambda req=req, headers=headers, timeout=timeout: client.request(
                req.method, req.url, content=req.body, headers=headers, timeout=timeout), f"push to {sink.kind}")
    finally:
        if own_client:
            client.close()
    return PushResult(kind=sink.kind, url=sink.url, requests=len(requests), samples=sum(r.samples for r in requests),
                      series=sum(r.series for r in requests), bytes=sum(len(r.body) for r in requests))
