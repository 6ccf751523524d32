"""What KubeVirt will migrate a VMI with, for the convergence forecast: defaults, cluster config, the matching
MigrationPolicy; post-copy is marked fatal for core-tier VMIs (a post-copy failure fails the VMI since v1.6)."""

from __future__ import annotations

import pytest

from livedrill.platforms.kubevirt import checks as kc
from tests.preflight.test_checks_pure import policy, vmi

MI = 1024**2
CORE = {"tier": "core"}


def objects(migrations: dict | None = None, policies: list[dict] | None = None) -> kc.ClusterObjects:
    cr = {"spec": {"configuration": {"migrations": migrations or {}}}}
    return kc.ClusterObjects(kubevirt_cr=cr, nodes={}, vmims=[], policies=policies or [], namespaces={})


@pytest.mark.parametrize("migrations, policies, selector, expected", [
    # KubeVirt's defaults: bandwidthPerMigration 0 is unlimited, no downtime set, neither auto-converge nor post-copy.
    ({}, [], CORE, {"bandwidth_bytes_per_s": None, "max_downtime_ms": None, "auto_converge": False, "post_copy": False,
                    "post_copy_fails_vm": True, "source": "cluster config"}),
    ({"bandwidthPerMigration": "64Mi", "maxDowntimeMs": 50, "allowPostCopy": True}, [], CORE,
     {"bandwidth_bytes_per_s": 64 * MI, "max_downtime_ms": 50.0, "post_copy": True}),
    ({"bandwidthPerMigration": "64Mi"}, [policy("fast", CORE, bandwidthPerMigration="1Gi", allowAutoConverge=True)], CORE,
     {"bandwidth_bytes_per_s": 1024 * MI, "auto_converge": True, "source": "MigrationPolicy fast"}),
    # A VMI outside the core tier may rely on post-copy.
    ({}, [], {"tier": "batch"}, {"post_copy_fails_vm": False}),
])
def test_migration_limits(migrations, policies, selector, expected):
    limits = kc.migration_limits(vmi(), objects(migrations, policies), selector).model_dump()
    assert {k: limits[k] for k in expected} == expected
    assert limits["disk_bytes"] == 0
