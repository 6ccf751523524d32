"""One drill per cluster: the global concurrency limit's name and how long a second drill tries for it."""

from __future__ import annotations

from livedrill.spec import ConcurrencyPolicy


class ClusterBusy(RuntimeError):
    """Another drill holds the cluster's slot (or the limit is missing: `livedrill serve` creates it)."""


def cluster_limit_name(cluster: str) -> str:
    return f"drill:{cluster}"


def acquire_timeout_s(policy: ConcurrencyPolicy) -> float:
    """wait: queue up to wait_timeout_s; fail: one short attempt, so an operator learns at once."""
    return policy.wait_timeout_s if policy.on_busy == "wait" else policy.fail_fast_s
