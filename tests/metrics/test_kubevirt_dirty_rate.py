"""A VM's dirty rate as KubeVirt exports it, read from the cluster's Prometheus: the query and the answer's reading
(pure), and the meter against a store that does not answer and a real Prometheus that has no such series."""

from __future__ import annotations

import socket

import pytest

from livedrill.metrics.config import PrometheusQuery
from livedrill.metrics.kubevirt import PrometheusDirtyRateMeter, dirty_rate_answer, dirty_rate_query
from livedrill.metrics.promql import PromSample
from livedrill.spec import VMRef
from tests.metrics.stores import PROMETHEUS, prometheus

MI = 1024**2
VM = VMRef.parse("banking/core-01")
PROM = PrometheusQuery(url="http://prom:9090")


@pytest.mark.parametrize("extra, lookback_s, query", [
    ({}, 300.0,
     'max(max_over_time(kubevirt_vmi_dirty_rate_bytes_per_second{name="core-01",namespace="banking"}[300s]))'),
    # The spec's selector narrows a shared store to the cluster; the VM's own labels are never overridden by it.
    ({"cluster": "prod-a", "name": "other"}, 90.0,
     'max(max_over_time(kubevirt_vmi_dirty_rate_bytes_per_second{cluster="prod-a",name="core-01",'
     'namespace="banking"}[90s]))'),
])
def test_dirty_rate_query(extra, lookback_s, query):
    assert dirty_rate_query(VM, extra, lookback_s) == query


def sample(value: str) -> PromSample:
    return PromSample(metric={}, value=(1_700_000_000.0, value))


@pytest.mark.parametrize("samples, endpoint, rate, unknown", [
    ([sample(str(6 * MI))], PROM, 6.0 * MI, None),
    ([sample("0")], PROM, 0.0, None),  # an idle guest: a figure, not unknown
    ([], PROM, None, "no kubevirt_vmi_dirty_rate_bytes_per_second series for banking/core-01 at http://prom:9090 "
                     "in the last 300 s"),
    ([], PROM.model_copy(update={"selector": {"cluster": "prod-a"}}), None,
     'for banking/core-01 with cluster="prod-a" at http://prom:9090'),
    ([sample("NaN")], PROM, None, "is [nan], not a rate"),
    ([sample("+Inf")], PROM, None, "is [inf], not a rate"),
    ([sample("-1")], PROM, None, "is [-1.0], not a rate"),
])
def test_dirty_rate_answer(samples, endpoint, rate, unknown):
    reading = dirty_rate_answer(samples, VM, endpoint, "the source")
    assert reading.bytes_per_s == rate
    assert reading.source == "the source"
    if unknown is None:
        assert reading.unknown is None
    else:
        assert unknown in reading.unknown


def test_without_metrics_kubevirt_the_reading_says_it_is_not_set():
    reading = PrometheusDirtyRateMeter(None).measure_dirty_rate(VM, 5, 3)
    assert reading.bytes_per_s is None
    assert reading.unknown.startswith("metrics.kubevirt is not set")


def test_a_store_that_does_not_answer_is_named_in_the_reading():
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        meter = PrometheusDirtyRateMeter(PrometheusQuery(url=url, retry_deadline_s=0.5, connect_timeout_s=0.5))
        reading = meter.measure_dirty_rate(VM, 5, 3)
    assert reading.bytes_per_s is None
    assert reading.unknown.startswith(f"metrics.kubevirt {url} could not be queried: ")
    assert "ConnectError" in reading.unknown


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (make sysdeps)")
def test_a_real_prometheus_without_the_series_gives_unknown_with_the_query(tmp_path):
    with prometheus(tmp_path / "prom") as store:
        reading = PrometheusDirtyRateMeter(PrometheusQuery(url=store.base_url)).measure_dirty_rate(VM, 5, 3)
    assert reading.bytes_per_s is None
    assert reading.unknown.startswith(f"no kubevirt_vmi_dirty_rate_bytes_per_second series for banking/core-01 at "
                                      f"{store.base_url} in the last 300 s")
    assert reading.source == f"{store.base_url}: {dirty_rate_query(VM, {}, 300.0)}"
