"""The guest's memory dirty rate, measured on the running domain without migrating it.

libvirt's virDomainStartDirtyRateCalc (libvirt >= 7.2; QEMU's calc-dirty-rate, page-sampling by default)
samples the guest for a window of whole seconds; the result is read from the domain's `dirtyrate.*`
stats (virConnectGetAllDomainStats with VIR_DOMAIN_STATS_DIRTYRATE). QEMU reports whole MiB per second
(`dirtyrate.megabytes_per_second` = dirtied MiB x 1000 / window ms), so a guest dirtying under 1 MiB/s reads 0.
"""

from __future__ import annotations

from typing import Any

import libvirt

from livedrill.forecast import MIB


def dirty_rate_reading(stats: dict[str, Any], previous_start: int | None) -> float | None:
    """Bytes/s from a domain's `dirtyrate.*` stats once a calculation newer than `previous_start` (the
    `dirtyrate.calc_start_time` seen before starting ours) is measured; None while it is still measuring."""
    if stats.get("dirtyrate.calc_status") != libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED:
        return None
    if previous_start is not None and stats.get("dirtyrate.calc_start_time") == previous_start:
        return None  # the figure of an earlier calculation
    if "dirtyrate.megabytes_per_second" not in stats:
        return None
    return float(stats["dirtyrate.megabytes_per_second"]) * MIB
