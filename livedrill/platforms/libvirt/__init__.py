"""libvirt/KVM platform: the only package that imports `libvirt` (import-linter contract in pyproject.toml).

A package rather than one module so each part stays small: config.py (the spec section), connection.py
(bounded calls, error classes), adapter.py (LibvirtAdapter: gathers facts and acts), checks.py (the pure
pre-flight judgments), compliance.py (hardware-isolation facts and judgments). Importing this package
registers the platform; `libvirt` loads with the adapter. The lab's host administration (define/start/remove
domains) lives with the lab, in livedrill_lab.libvirt.admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from livedrill.platforms.libvirt.config import LibvirtHost, LibvirtMigrationFlags, LibvirtPlatform
from livedrill.platforms.registry import PlatformKind, register

if TYPE_CHECKING:
    from livedrill.platforms.base import AdapterContext
    from livedrill.platforms.libvirt.adapter import LibvirtAdapter


def _open(config: LibvirtPlatform, context: "AdapterContext") -> "LibvirtAdapter":
    from livedrill.platforms.libvirt.adapter import LibvirtAdapter

    return LibvirtAdapter(config, budgets=context.budgets, emit=context.emit)


register(PlatformKind(kind="libvirt", config=LibvirtPlatform, open=_open))

__all__ = ["LibvirtHost", "LibvirtMigrationFlags", "LibvirtPlatform"]
