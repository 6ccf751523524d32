"""The deployed entry flow: an on-demand form or a schedule names a served spec; the drill runs it."""

from __future__ import annotations

from prefect import flow

from flows.drill import run_drill
from livedrill.deploy.request import DrillRequest
from livedrill.outcomes import Verdict
from tasks.request import load_request


@flow(name="livedrill")
def drill_request(request: DrillRequest) -> Verdict:
    """Deployed drills always hold their cluster's slot: one drill per cluster at a time."""
    spec, text = load_request(request)
    return run_drill(spec, text, dry_run=request.dry_run, cluster_lock=True)
