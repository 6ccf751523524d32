"""Probe tasks: a short smoke run of every probe before approval, so a dead service refuses the drill."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from livedrill.outcomes import CheckResult
from livedrill.stages.probecheck import smoke_probes
from livedrill.stages.session import DrillSession
from tasks.terminal import announce


@task(name="probe-smoke", cache_policy=NO_CACHE)
def probe_smoke(run_dir: str) -> list[CheckResult]:
    announce("probe smoke")
    return smoke_probes(DrillSession.reopen(run_dir))
