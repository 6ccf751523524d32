"""KubeVirt platform: the only package that imports `kubernetes` (import-linter contract in pyproject.toml).

config.py (the spec section), adapter.py (KubeVirtAdapter: reads, migration, watch, cancel), checks.py
(the pure pre-flight checks), postchecks.py (the pure post-checks), drain.py (node drain: cordon, evict,
cancel evacuations). Importing this package registers the platform; `kubernetes` loads with the adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from livedrill.platforms.kubevirt.config import KubeVirtPlatform
from livedrill.platforms.registry import PlatformKind, register

if TYPE_CHECKING:
    from livedrill.platforms.base import AdapterContext
    from livedrill.platforms.kubevirt.adapter import KubeVirtAdapter


def _open(config: KubeVirtPlatform, context: "AdapterContext") -> "KubeVirtAdapter":
    from livedrill.platforms.kubevirt.adapter import KubeVirtAdapter

    return KubeVirtAdapter(config, run_id=context.run_id, metrics=context.metrics.kubevirt)


def _preload() -> None:
    from livedrill.platforms.kubevirt.adapter import load_client

    load_client()


register(PlatformKind(kind="kubevirt", config=KubeVirtPlatform, open=_open, preload=_preload))

__all__ = ["KubeVirtPlatform"]
