"""Pre-flight task: the gate that must pass before anything moves."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from livedrill.outcomes import PreflightResult
from livedrill.stages.preflight import run_preflight
from livedrill.stages.session import DrillSession
from tasks.terminal import announce


@task(name="preflight", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def preflight(run_dir: str) -> PreflightResult:
    # Read-only and idempotent; platform faults are already retried per call inside the adapter.
    announce("preflight")
    return run_preflight(DrillSession.reopen(run_dir))
