"""Where a drill's metrics go and where KubeVirt's metrics are read from (the spec's `metrics:` section).

    metrics:
      push:
        - kind: victoriametrics_import
          url: http://vminsert.monitoring:8480/insert/42/prometheus/api/v1/import/prometheus
          extra_labels: {env: prod}
        - kind: remote_write
          url: http://prometheus.monitoring:9090/api/v1/write
          bearer_token_file: /etc/livedrill/prometheus-token
      kubevirt:
        url: http://vmselect.monitoring:8481/select/42/prometheus
        selector: {cluster: prod-core-a}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class MetricsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{v!r} must start with http:// or https://")
    return v.rstrip("/")


class HttpEndpoint(MetricsModel):
    url: str
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers, e.g. a tenant header (no secrets: use bearer_token_file)")
    bearer_token_file: Path | None = Field(None, description="File holding a bearer token, read at each call")
    tls_ca_bundle: Path | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    retry_deadline_s: float = Field(60.0, gt=0, description="Transient failures are retried until this deadline")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _http_url(v)


class PushSink(HttpEndpoint):
    """One push target.

    url, by kind:
      remote_write           the full remote-write endpoint: Prometheus `http://prom:9090/api/v1/write`
                             (started with --web.enable-remote-write-receiver), VictoriaMetrics
                             `http://vm:8428/api/v1/write` or `http://vminsert:8480/insert/<tenant>/prometheus/api/v1/write`
      victoriametrics_import the import endpoint: `http://vm:8428/api/v1/import/prometheus`, multi-tenant
                             `http://vminsert:8480/insert/<tenant>/prometheus/api/v1/import/prometheus`
      pushgateway            the Pushgateway base `http://pushgateway:9091`; `/metrics/job/<job>/...` is appended.
                             The Pushgateway refuses timestamps: samples get the scrape time, and only the
                             newest value of each series is pushed.
    """

    kind: Literal["remote_write", "victoriametrics_import", "pushgateway"]
    job: str = Field("livedrill", description="Pushgateway job name (the grouping key adds cluster and drill)")
    extra_labels: dict[str, str] = Field(default_factory=dict, description="Added to every sample, e.g. env: prod")
    timeout_s: float = Field(10.0, gt=0, description="Per-request timeout for a small payload")
    timeout_per_mib_s: float = Field(5.0, ge=0, description="Added per MiB of request body")


class PrometheusQuery(HttpEndpoint):
    """A Prometheus HTTP API to read KubeVirt's metrics from.

    url: the API base without `/api/v1`: `http://prom:9090`, VictoriaMetrics `http://vm:8428`,
    multi-tenant `http://vmselect:8481/select/<tenant>/prometheus`.
    """

    retry_deadline_s: float = Field(20.0, gt=0, description="Per query; the evidence is read before sealing, so keep it short")
    step_s: float = Field(5.0, gt=0, description="Resolution of the drill-window query; raised for long windows")
    max_points_per_series: int = Field(10_000, gt=0, le=11_000, description="Prometheus refuses more than 11000")
    timeout_s: float = Field(15.0, gt=0, description="Per-query timeout")
    margin_s: float = Field(300.0, ge=0, description="Queried before the drill's start and after its end")
    dirty_rate_lookback_s: float = Field(
        300.0, gt=0, description='With forecast "measure": the highest kubevirt_vmi_dirty_rate_bytes_per_second '
                                 "over this long is the VM's dirty rate (Prometheus' default lookback is 5 m)")
    selector: dict[str, str] = Field(
        default_factory=dict, description="Label matchers added to every query, e.g. cluster: prod-a in a shared VictoriaMetrics")


class MetricsConfig(MetricsModel):
    """The spec's `metrics:` section. Both parts are optional: a drill runs without them."""

    push: list[PushSink] = Field(default_factory=list)
    kubevirt: PrometheusQuery | None = None
