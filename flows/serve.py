"""`livedrill serve`: the deployments, their schedules and the per-cluster concurrency limits, served in-process.

Deployments (flow `livedrill`):
- `on-demand`: the Run form is generated from `DrillRequest` (spec, mode, target node, dry run, approval).
- `quarterly-drill-<spec name>`, one per served spec: the spec's cron in its timezone, change-freeze days removed.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_client, serve
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.schedules import RRule

from flows.request import drill_request
from livedrill.deploy.limits import cluster_limit_name
from livedrill.deploy.request import DrillRequest
from livedrill.deploy.schedule import kept_starts, rdate_rruleset
from livedrill.spec import DrillSpec
from tasks.request import SERVED_SPECS_ENV

ON_DEMAND = "on-demand"
QUARTERLY_PREFIX = "quarterly-drill-"


def quarterly_deployment(path: Path, spec: DrillSpec, now: datetime) -> RunnerDeployment:
    sched = spec.schedule
    starts = kept_starts(sched, now)
    request = DrillRequest(spec=str(path), approval_required=spec.approval.required)
    # Every start frozen within the horizon: the deployment stays, runnable by hand, with no schedule to fire.
    next_start = starts[0].isoformat() if starts else f"none within {sched.horizon_days} days"
    return drill_request.to_deployment(
        name=QUARTERLY_PREFIX + spec.name,
        schedules=[RRule(rdate_rruleset(starts), timezone=sched.timezone)] if starts else [],
        parameters={"request": request.model_dump(mode="json")},
        description=f"{spec.description}\n\nCron `{sched.cron}` ({sched.timezone}), "
                    f"{len(sched.change_freeze)} change freeze(s) skipped; next start {next_start}.",
        tags=["livedrill", f"cluster:{spec.cluster}", "quarterly"],
    )


def on_demand_deployment() -> RunnerDeployment:
    return drill_request.to_deployment(
        name=ON_DEMAND, tags=["livedrill", "on-demand"],
        description="Start a drill now: pick a served spec; dry run previews the plan and changes nothing.")


def ensure_cluster_limits(clusters: set[str]) -> None:
    """One slot per cluster; created here because a strict limit that does not exist refuses every drill."""
    with get_client(sync_client=True) as client:
        for cluster in sorted(clusters):
            name = cluster_limit_name(cluster)
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                continue
            if limit.limit != 1 or not limit.active:
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))


def serve_drills(specs: list[tuple[Path, DrillSpec]], now: datetime | None = None) -> None:
    """Blocks, running scheduled and on-demand drills in subprocesses until SIGTERM/SIGINT."""
    now = now or datetime.now(timezone.utc)
    paths = [path.resolve() for path, _ in specs]
    os.environ[SERVED_SPECS_ENV] = os.pathsep.join(str(p) for p in paths)
    ensure_cluster_limits({spec.cluster for _, spec in specs})
    deployments = [on_demand_deployment()] + [quarterly_deployment(p, s, now) for p, (_, s) in zip(paths, specs)]
    serve(*deployments)
