"""`livedrill serve`: the deployments, their schedules and the per-cluster concurrency limits, served in-process.

Deployments (flow `livedrill`):
- `on-demand`: the Run form is generated from `DrillRequest` (spec, mode, target node, dry run, approval).
- `quarterly-drill-<spec name>`, one per served spec: the spec's cron in its timezone, change-freeze days removed.

`livedrill programme deploy|run` registers a programme's deployments on a work pool instead, for `prefect worker`
processes on any host to run: `livedrill-drill/programme-drill` (one VM's drill, its spec as the parameter) and
`livedrill-programme-window/<programme>`, scheduled at each window's start (change freezes removed).
"""

from __future__ import annotations

import contextlib
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import get_client, serve
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate, WorkPoolCreate
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.schedules import RRule

from flows.drill import drill
from flows.programme import programme_window
from flows.request import drill_request
from livedrill.deploy.limits import cluster_limit_name
from livedrill.deploy.request import DrillRequest
from livedrill.deploy.schedule import kept_starts, rdate_rruleset
from livedrill.programme.plan import open_windows
from livedrill.programme.spec import Programme
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


PROGRAMME_DRILL = "programme-drill"


def ensure_process_pool(pool: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def deploy_programme(path: Path, programme: Programme, pool: str, source: Path, now: datetime | None = None) -> list[str]:
    """The drill and window deployments of `programme` on the process work pool `pool` (created if missing),
    their code taken from `source` (this checkout, on every worker's host); the cluster slots created. Again
    after a change of the programme: the window schedule is replaced. Returns the deployments' names."""
    now = now or datetime.now(timezone.utc)
    ensure_process_pool(pool)
    ensure_cluster_limits({scope.name for scope in programme.spec.clusters})
    # Prefect's deploy prints a table of its own to stdout; the command says what it deployed.
    with contextlib.redirect_stdout(io.StringIO()):
        drill.from_source(source=str(source), entrypoint="flows/drill.py:drill").deploy(
            name=PROGRAMME_DRILL, work_pool_name=pool, tags=["livedrill", "programme"], print_next_steps=False,
            ignore_warnings=True,
            description="One VM's drill of a programme window (the window's parent flow starts it with the VM's spec)")
    starts, _ = open_windows(programme.spec.windows, now)
    zone = programme.spec.windows.timezone
    local = [w.start.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for w in starts]
    with contextlib.redirect_stdout(io.StringIO()):
        programme_window.from_source(source=str(source), entrypoint="flows/programme.py:programme_window").deploy(
            name=programme.spec.name, work_pool_name=pool, parameters={"programme": str(path.resolve())},
            schedules=[RRule(rdate_rruleset(local), timezone=zone)] if local else [],
            tags=["livedrill", "programme", f"programme:{programme.spec.name}"], print_next_steps=False,
            ignore_warnings=True,
            description=f"{programme.spec.description}\n\nEach window of {programme.spec.quarter} ({zone}): "
                        f"{len(local)} left to run, change freezes skipped.")
    return [f"livedrill-drill/{PROGRAMME_DRILL}", f"livedrill-programme-window/{programme.spec.name}"]
