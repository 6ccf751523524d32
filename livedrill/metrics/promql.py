"""Reading from a Prometheus-compatible HTTP API (Prometheus, VictoriaMetrics): range queries for the evidence,
instant queries for the pre-flight's dirty rate."""

from __future__ import annotations

import math
from datetime import datetime

import httpx
from pydantic import BaseModel, ConfigDict

from livedrill.metrics.config import PrometheusQuery
from livedrill.metrics.http import MetricsEndpointError, make_client, request_headers, send_with_retry


class PromSeries(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: dict[str, str]
    values: list[tuple[float, str]]  # (unix seconds, value as the API sent it)


class PromSample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: dict[str, str]
    value: tuple[float, str]  # (unix seconds of the evaluation, value as the API sent it)


class RangeResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    query: str
    series: list[PromSeries]


def range_step_s(start: datetime, end: datetime, preferred_step_s: float, max_points: int) -> float:
    """Pure: the preferred step, coarsened so no series exceeds `max_points` points (Prometheus refuses > 11000)."""
    window = max(0.0, (end - start).total_seconds())
    return max(preferred_step_s, math.ceil(window / max_points) if window else preferred_step_s)


def quote_label_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(matchers: dict[str, str]) -> str:
    """Pure: `{a="x",b="y"}` body (without braces) from exact-match label matchers, in a stable order."""
    return ",".join(f"{k}={quote_label_value(v)}" for k, v in sorted(matchers.items()))


def _query(endpoint: PrometheusQuery, api: str, params: dict[str, str], result_type: str,
           client: httpx.Client | None) -> list[dict]:
    """POST one query to `/api/v1/<api>` with the endpoint's timeouts and retries; the `data.result` items."""
    own_client = client is None
    client = client or make_client(endpoint)
    params = {**params, "timeout": f"{endpoint.timeout_s:g}s"}
    timeout = httpx.Timeout(endpoint.timeout_s + endpoint.connect_timeout_s, connect=endpoint.connect_timeout_s)
    try:
        response = send_with_retry(endpoint, lambda: client.post(
            f"{endpoint.url}/api/v1/{api}", data=params, headers=request_headers(endpoint), timeout=timeout), api)
    finally:
        if own_client:
            client.close()
    payload = response.json()
    if payload.get("status") != "success" or payload.get("data", {}).get("resultType") != result_type:
        raise MetricsEndpointError(f"{api} {params['query']!r}: unexpected answer {str(payload)[:300]}", transient=False)
    return payload["data"]["result"]


def query_range(endpoint: PrometheusQuery, query: str, start: datetime, end: datetime, step_s: float,
                *, client: httpx.Client | None = None) -> list[PromSeries]:
    params = {"query": query, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}", "step": f"{step_s:g}"}
    return [PromSeries(metric=item["metric"], values=[(float(t), str(v)) for t, v in item["values"]])
            for item in _query(endpoint, "query_range", params, "matrix", client)]


def query_instant(endpoint: PrometheusQuery, query: str) -> list[PromSample]:
    """An instant query evaluated now (one call: its own client): one sample per series of the answer vector."""
    return [PromSample(metric=item["metric"], value=(float(item["value"][0]), str(item["value"][1])))
            for item in _query(endpoint, "query", {"query": query}, "vector", None)]
