"""The KubeVirt evidence queries (pure): which series are asked for, and at what resolution."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import socket

import pytest

from livedrill.metrics.config import PrometheusQuery
from livedrill.spec import VMRef
from livedrill.metrics.kubevirt import collect_kubevirt_evidence, kubevirt_queries
from livedrill.metrics.promql import quote_label_value, range_step_s, selector

T0 = datetime(2026, 11, 3, 10, tzinfo=timezone.utc)


@pytest.mark.parametrize("window_s, preferred, max_points, expected", [
    (600, 5.0, 10_000, 5.0),  # a normal drill: the preferred resolution
    (0, 5.0, 10_000, 5.0),
    (86_400, 5.0, 10_000, 9.0),  # a day at 5 s would be 17280 points: coarsened to stay under the limit
    (86_400 * 30, 15.0, 11_000, 236.0),
])
def test_range_step(window_s, preferred, max_points, expected):
    step = range_step_s(T0, T0 + timedelta(seconds=window_s), preferred, max_points)
    assert step == expected
    assert window_s / step <= max_points


@pytest.mark.parametrize("value, quoted", [
    ("banking", '"banking"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'), ("a\nb", '"a\\nb"'),
])
def test_label_values_are_quoted(value, quoted):
    assert quote_label_value(value) == quoted


def test_queries_per_vm_and_cluster_wide():
    queries = dict(kubevirt_queries([VMRef.parse("banking/banking-core-vm"), VMRef.parse("ops/ledger")], {"cluster": "prod-a"}))
    assert queries == {
        "banking/banking-core-vm by name":
            '{__name__=~"kubevirt_vmi_migration_.+",cluster="prod-a",name="banking-core-vm",namespace="banking"}',
        "banking/banking-core-vm by vmi":
            '{__name__=~"kubevirt_vmi_migration_.+",cluster="prod-a",namespace="banking",vmi="banking-core-vm"}',
        "ops/ledger by name": '{__name__=~"kubevirt_vmi_migration_.+",cluster="prod-a",name="ledger",namespace="ops"}',
        "ops/ledger by vmi": '{__name__=~"kubevirt_vmi_migration_.+",cluster="prod-a",namespace="ops",vmi="ledger"}',
        "migrations in flight": '{__name__=~"kubevirt_vmi_migrations_in_.+_phase",cluster="prod-a"}',
    }
    assert dict(kubevirt_queries([], {}))["migrations in flight"] == '{__name__=~"kubevirt_vmi_migrations_in_.+_phase"}'
    assert selector({}) == ""


def test_an_unreachable_store_is_tried_once_and_the_rest_skipped():
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        evidence = collect_kubevirt_evidence(PrometheusQuery(url=url, retry_deadline_s=0.5, connect_timeout_s=0.5),
                                             [VMRef.parse("banking/banking-core-vm")], T0, T0 + timedelta(minutes=2))
    assert evidence.results == []
    assert len(evidence.errors) == 3
    assert "ConnectError" in evidence.errors[0]
    assert evidence.errors[1:] == [f"banking/banking-core-vm by vmi: skipped, {url} unreachable",
                                   f"migrations in flight: skipped, {url} unreachable"]
