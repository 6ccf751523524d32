"""KubeVirt's own metrics: its migration series over the drill's window, read back for the evidence, and a
VM's dirty rate for the pre-flight's convergence forecast.

virt-controller labels its migration series `namespace` + `name` (start/end time) or `namespace` +
`vmi` (succeeded/failed, phase-transition histogram); virt-handler's transfer series use `name`.
The cluster-wide `kubevirt_vmi_migrations_in_*_phase` gauges show what else was migrating.

virt-handler (KubeVirt >= v1.6: pkg/monitoring/metrics/virt-handler/domainstats/dirty_rate_metrics.go, not in
v1.5) exports `kubevirt_vmi_dirty_rate_bytes_per_second{namespace, name, node}`: libvirt's dirty-rate
calculation of each running VMI at each scrape, in whole MiB/s; it skips a VMI while it migrates (the
migration's own `kubevirt_vmi_migration_dirty_memory_rate_bytes` covers that time).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import httpx
from pydantic import BaseModel, ConfigDict, Field

from livedrill.errors import PlatformError
from livedrill.forecast import DirtyRateReading
from livedrill.metrics.config import PrometheusQuery
from livedrill.metrics.promql import PromSample, RangeResult, query_instant, query_range, range_step_s, selector
from livedrill.outcomes import utcnow
from livedrill.specbase import VMRef


class KubeVirtMetricsEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    start: datetime
    end: datetime
    step_s: float
    queried_at: datetime
    results: list[RangeResult] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)  # a query that failed is named here; the others are kept


def kubevirt_queries(vms: list[VMRef], extra: dict[str, str]) -> list[tuple[str, str]]:
    """Pure: (name, PromQL) for each VM and the cluster-wide in-flight gauges."""
    queries = []
    for vm in vms:
        for label in ("name", "vmi"):
            matchers = selector({**extra, "namespace": vm.namespace, label: vm.name})
            queries.append((f"{vm} by {label}", f'{{__name__=~"kubevirt_vmi_migration_.+",{matchers}}}'))
    cluster = selector(extra)
    queries.append(("migrations in flight", '{__name__=~"kubevirt_vmi_migrations_in_.+_phase"' + (f",{cluster}" if cluster else "") + "}"))
    return queries


def collect_kubevirt_evidence(endpoint: PrometheusQuery, vms: list[VMRef], start: datetime, end: datetime,
                              *, client: httpx.Client | None = None) -> KubeVirtMetricsEvidence:
    """Query each series over [start - margin, end + margin]. A failed query is recorded, not raised:
    a missing dashboard series must not cost the drill its evidence."""
    window_start, window_end = start - timedelta(seconds=endpoint.margin_s), end + timedelta(seconds=endpoint.margin_s)
    step = range_step_s(window_start, window_end, endpoint.step_s, endpoint.max_points_per_series)
    evidence = KubeVirtMetricsEvidence(source=endpoint.url, start=window_start, end=window_end, step_s=step, queried_at=utcnow())
    queries = kubevirt_queries(vms, endpoint.selector)
    for index, (name, query) in enumerate(queries):
        try:
            series = query_range(endpoint, query, window_start, window_end, step, client=client)
        except (PlatformError, httpx.HTTPError, ValueError) as exc:
            evidence.errors.append(f"{name}: {exc}")
            if isinstance(exc, PlatformError) and exc.status is None:
                # Unreachable after its whole retry budget: the other queries would only wait as long again.
                evidence.errors += [f"{later}: skipped, {endpoint.url} unreachable" for later, _q in queries[index + 1:]]
                break
            continue
        evidence.results.append(RangeResult(name=name, query=query, series=series))
    return evidence


# ---------------------------------------------------------------- the dirty rate, for the pre-flight

DIRTY_RATE_METRIC = "kubevirt_vmi_dirty_rate_bytes_per_second"


def dirty_rate_query(vm: VMRef, extra: dict[str, str], lookback_s: float) -> str:
    """Pure: the highest dirty rate virt-handler reported for `vm` over the lookback, as one figure.

    max_over_time rather than the newest sample: each sample is one libvirt calculation taken at a scrape, the
    guest's load swings between scrapes, and the forecast errs on the safe side (a busy minute counts). The outer
    max() folds the VMI's series into one: after a migration, the series of its previous `node` is still in range."""
    matchers = selector({**extra, "namespace": vm.namespace, "name": vm.name})
    return f"max(max_over_time({DIRTY_RATE_METRIC}{{{matchers}}}[{lookback_s:g}s]))"


def dirty_rate_answer(samples: list[PromSample], vm: VMRef, endpoint: PrometheusQuery, source: str) -> DirtyRateReading:
    """Pure: the reading from the store's answer; no series, or no finite non-negative value, is unknown with why."""
    if not samples:
        labels = f" with {selector(endpoint.selector)}" if endpoint.selector else ""
        return DirtyRateReading(source=source, unknown=(
            f"no {DIRTY_RATE_METRIC} series for {vm}{labels} at {endpoint.url} in the last {endpoint.dirty_rate_lookback_s:g} s "
            "(KubeVirt exports it since v1.6, for a running VMI that is not migrating)"))
    values = [float(s.value[1]) for s in samples]
    if not all(math.isfinite(v) and v >= 0 for v in values):
        return DirtyRateReading(source=source, unknown=f"{DIRTY_RATE_METRIC} for {vm} at {endpoint.url} is {values}, not a rate")
    return DirtyRateReading(bytes_per_s=max(values), source=source)


class PrometheusDirtyRateMeter:
    """A VM's dirty rate as KubeVirt's virt-handler exported it, read from the spec's `metrics.kubevirt` store."""

    def __init__(self, endpoint: PrometheusQuery | None):
        self.endpoint = endpoint

    def measure_dirty_rate(self, vm: VMRef, window_s: int, windows: int) -> DirtyRateReading:
        """`window_s` and `windows` are not used: virt-handler took the samples already, and the query takes the
        highest of them over the store's lookback, metrics.kubevirt.dirty_rate_lookback_s."""
        if self.endpoint is None:
            return DirtyRateReading(source="metrics.kubevirt", unknown=(
                f"metrics.kubevirt is not set: KubeVirt's {DIRTY_RATE_METRIC} is read from the cluster's Prometheus"))
        query = dirty_rate_query(vm, self.endpoint.selector, self.endpoint.dirty_rate_lookback_s)
        source = f"{self.endpoint.url}: {query}"
        try:
            samples = query_instant(self.endpoint, query)
        except (PlatformError, httpx.HTTPError, ValueError, KeyError) as exc:
            return DirtyRateReading(source=source, unknown=f"metrics.kubevirt {self.endpoint.url} could not be queried: {exc}")
        return dirty_rate_answer(samples, vm, self.endpoint, source)
