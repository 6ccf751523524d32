"""KubeVirt's own migration metrics over the drill's window, read back for the evidence.

virt-controller labels its migration series `namespace` + `name` (start/end time) or `namespace` +
`vmi` (succeeded/failed, phase-transition histogram); virt-handler's transfer series use `name`.
The cluster-wide `kubevirt_vmi_migrations_in_*_phase` gauges show what else was migrating.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
from pydantic import BaseModel, ConfigDict, Field

from livedrill.errors import PlatformError
from livedrill.metrics.config import PrometheusQuery
from livedrill.metrics.promql import RangeResult, query_range, range_step_s, selector
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
