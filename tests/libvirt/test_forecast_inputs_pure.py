"""The convergence forecast's libvirt inputs, judged from facts: the dirty-rate stats and the spec's flags."""

from __future__ import annotations

import pytest

from livedrill.platforms.libvirt.checks import migration_limits
from livedrill.platforms.libvirt.config import LibvirtPlatform
from livedrill.platforms.libvirt.dirtyrate import dirty_rate_reading

MI = 1024**2
MEASURED, MEASURING = 2, 1  # virDomainDirtyRateStatus


@pytest.mark.parametrize("stats, previous, expected", [
    ({"dirtyrate.calc_status": MEASURED, "dirtyrate.calc_start_time": 200, "dirtyrate.megabytes_per_second": 12},
     None, 12 * MI),
    ({"dirtyrate.calc_status": MEASURED, "dirtyrate.calc_start_time": 200, "dirtyrate.megabytes_per_second": 0},
     100, 0.0),  # a quiet guest: QEMU's whole MiB/s reads 0
    ({"dirtyrate.calc_status": MEASURING, "dirtyrate.calc_start_time": 200}, None, None),
    ({"dirtyrate.calc_status": MEASURED, "dirtyrate.calc_start_time": 100, "dirtyrate.megabytes_per_second": 40},
     100, None),  # the earlier calculation's figure, not ours
    ({}, None, None),  # never started
])
def test_dirty_rate_reading(stats, previous, expected):
    assert dirty_rate_reading(stats, previous) == expected


def platform(**changes) -> LibvirtPlatform:
    return LibvirtPlatform.model_validate({"kind": "libvirt", "hosts": [{"name": "a", "uri": "qemu:///a"},
                                                                       {"name": "b", "uri": "qemu:///b"}], **changes})


@pytest.mark.parametrize("changes, disk_bytes, expected", [
    ({}, 0, {"bandwidth_bytes_per_s": None, "max_downtime_ms": None, "auto_converge": False, "post_copy": False,
             "disk_bytes": 0}),
    ({"bandwidth_mib_s": 128, "max_downtime_ms": 100}, 0, {"bandwidth_bytes_per_s": 128 * MI, "max_downtime_ms": 100}),
    ({"flags": {"auto_converge": True, "allow_post_copy": True}}, 0, {"auto_converge": True, "post_copy": True}),
    ({}, 4 * 1024 * MI, {"disk_bytes": 0}),  # shared storage: the disks are not copied
    ({"flags": {"copy_storage_all": True}}, 4 * 1024 * MI, {"disk_bytes": 4 * 1024 * MI}),
])
def test_migration_limits(changes, disk_bytes, expected):
    limits = migration_limits(platform(**changes), disk_bytes).model_dump()
    assert {k: limits[k] for k in expected} == expected
    assert limits["post_copy_fails_vm"] is False  # libvirt can recover a failed post-copy (VIR_MIGRATE_POSTCOPY_RESUME)
