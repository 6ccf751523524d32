"""The KubeVirt evidence queries (pure): which series are asked for, and at what resolution."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from livedrill.metrics.kubevirt import kubevirt_queries
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
    queries = dict(kubevirt_queries(["banking/banking-core-vm", "ops/ledger"], {"cluster": "prod-a"}))
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
