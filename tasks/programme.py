"""Programme window tasks: plan the window, run each cluster's drills as runs of the drill deployment on the
work pool's workers (one at a time per cluster), follow each to its sealed evidence, recover a drill whose
worker died, and close the window with the quarter's coverage and a new plan.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator
from uuid import UUID

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_UI_URL
from prefect.states import Cancelled, Cancelling, Crashed

from livedrill.deploy.runlink import find_run_of
from livedrill.evidence.archive import EvidenceRun
from livedrill.outcomes import DrillOutcome, Verdict, utcnow
from livedrill.programme.coverage import coverage
from livedrill.programme.discovery import live_inventory
from livedrill.programme.history import archive_history
from livedrill.programme.plan import DrillRecord, make_plan
from livedrill.programme.records import read_records
from livedrill.programme.spec import Programme, load_programme
from livedrill.programme.window import (
    ChildFate, ChildResult, EvidenceSeen, TERMINAL_STATES, WindowDrill, WindowPlan, WindowReport,
    child_deadlines, child_fate, child_outcome, coverage_rows, pick_window, results_rows, window_markdown,
    window_plan)
from livedrill.stages.finish import VERDICT_FILE
from livedrill.stages.recovery import owner_alive, read_owner, recover_run

# The drill deployment a window's children are runs of (`livedrill programme deploy` registers it).
DRILL_DEPLOYMENT = "livedrill-drill/programme-drill"
# How often the parent reads a child's state and evidence: a few API calls and a directory listing each time.
CHILD_POLL_S = 1.0
# A window cancelled waits this long for its cancelled drills' own rollback and seal before it ends.
CANCEL_GRACE_S = 300.0
WINDOW_CANCELLED = "its programme window was cancelled"

# One window runs per process (a deployed run, or `livedrill programme run`); its clusters' threads share these.
_in_flight: set[UUID] = set()  # child drills started and not yet seen to end (for cancel)
_results: list[ChildResult] = []  # the window's results so far, for the table artifact
_stopping = threading.Event()  # the window was interrupted: start no further drill
_lock = threading.Lock()


@task(name="plan-window", cache_policy=NO_CACHE)
def plan_window(programme_file: str, window: int | None) -> WindowPlan:
    """The window's drills from a live inventory and the archive's drills so far (reads only)."""
    programme = load_programme(programme_file)
    chosen = pick_window(programme.spec, utcnow(), window)
    inventory = live_inventory(programme)
    return window_plan(programme, inventory, _drills_so_far(programme), chosen)


def _drills_so_far(programme: Programme) -> list[DrillRecord]:
    """The drills the template's archive holds (none before its first drill created it)."""
    archive = Path(programme.template.evidence.dir)
    return archive_history(archive) if archive.is_dir() else []


@task(name="publish-window-plan", cache_policy=NO_CACHE)
def publish_window_plan(wp: WindowPlan) -> str:
    markdown = window_markdown(wp)
    create_markdown_artifact(markdown, key=f"programme-window-plan-{wp.programme}",
                             description=f"Window #{wp.index} of {wp.quarter}: the drills, as the approver sees them")
    return markdown


def _evidence_seen(run: EvidenceRun | None) -> EvidenceSeen:
    if run is None:
        return EvidenceSeen.NONE
    if run.sealed:
        return EvidenceSeen.SEALED
    return EvidenceSeen.LIVE if owner_alive(read_owner(run)) else EvidenceSeen.ORPHANED


def _verdict(run: EvidenceRun | None) -> DrillOutcome | None:
    if run is None or not run.sealed:
        return None
    return Verdict.model_validate_json((run.path / VERDICT_FILE).read_text(encoding="utf-8")).outcome


def _publish_results(wp: WindowPlan) -> None:
    with _lock:
        rows = results_rows(list(_results), wp.timezone, PREFECT_UI_URL.value())
    create_table_artifact(rows, key=f"programme-window-{wp.programme}",
                          description=f"Window #{wp.index}: each drill as it ended, with its evidence and its run")


def _follow(client, child: FlowRun, drill: WindowDrill, archive: Path, created: datetime, start_s: float) -> ChildResult:
    """Wait for one child to end, from what Prefect and the archive show; recover it if its process died."""
    log = get_run_logger()
    deadlines, started = child_deadlines(drill, start_s), time.monotonic()
    while True:
        state = client.read_flow_run(child.id).state_type.value
        run = find_run_of(archive, str(child.id), created)
        seen = _evidence_seen(run)
        fate = child_fate(state, seen, time.monotonic() - started, deadlines)
        if fate is not ChildFate.WAIT:
            break
        time.sleep(CHILD_POLL_S)
    note = ""
    if fate is ChildFate.OVERDUE:
        late = (f"not started within {deadlines.start_s:.0f} s" if seen is EvidenceSeen.NONE
                else f"not ended within {deadlines.end_s:.0f} s")
        log.warning("drill %s of %s %s: cancelling it", child.name, drill.vm, late)
        client.set_flow_run_state(child.id, Cancelling(message=late), force=True)
        grace_end = time.monotonic() + deadlines.cancel_grace_s
        while time.monotonic() < grace_end and client.read_flow_run(child.id).state_type.value not in TERMINAL_STATES:
            time.sleep(CHILD_POLL_S)
        if client.read_flow_run(child.id).state_type.value not in TERMINAL_STATES:
            # Nothing acted on the cancel (its worker is gone): it must not start later, outside the plan.
            client.set_flow_run_state(child.id, Cancelled(message=f"{late}; no worker answered the cancel"), force=True)
        note = f"{late}: cancelled"
        run = find_run_of(archive, str(child.id), created)
    recovered, unsafe = False, False
    if run is not None and _evidence_seen(run) is EvidenceSeen.ORPHANED:
        log.warning("drill %s of %s: its process is gone with the drill unfinished; recovering run %s",
                    child.name, drill.vm, run.run_id)
        try:
            recover_run(run)  # rolls back what it left pending and seals it, before the cluster's next drill
            recovered = True
            note = (note + "; " if note else "") + "its process died mid-drill: recovered (rolled back and sealed)"
        except Exception as exc:  # noqa: BLE001 - reported; nothing more touches this cluster in the window
            unsafe = True
            note = (note + "; " if note else "") + (f"its process died mid-drill and recovery failed ({exc}): run "
                                                    f"`livedrill recover {run.run_id}`; no further drill on {drill.cluster}")
    if fate is ChildFate.LOST:
        client.set_flow_run_state(child.id, Crashed(message="its process died mid-drill; the programme window "
                                                            "recovered its drill"), force=True)
    final = client.read_flow_run(child.id).state_type.value
    return ChildResult(cluster=drill.cluster, vm=drill.vm, attempt=drill.attempt, flow_run_id=str(child.id),
                       flow_run_name=child.name, state=final, fate=fate,
                       outcome=child_outcome(fate, _verdict(run), recovered),
                       evidence_run=run.run_id if run is not None else None, started_at=created, ended_at=utcnow(),
                       note=note, cluster_unsafe=unsafe)


@task(name="drill-cluster", cache_policy=NO_CACHE)
def drill_cluster(wp: WindowPlan, cluster: str, deployment: str) -> list[ChildResult]:
    """The cluster's drills one after another, each a run of `deployment` on whichever worker takes it; one
    drill's failure does not stop the next."""
    results = []
    with get_client(sync_client=True) as client:
        for drill in wp.by_cluster()[cluster]:
            if _stopping.is_set():
                break
            created = utcnow()
            child = run_deployment(
                deployment, timeout=0, flow_run_name=f"{drill.spec.name}-w{wp.index}-a{drill.attempt}",
                parameters={"spec": drill.spec.model_dump(mode="json", by_alias=True), "cluster_lock": True},
                tags=["livedrill", f"programme:{wp.programme}", f"cluster:{cluster}", f"window:{wp.index}"])
            with _lock:
                _in_flight.add(child.id)
                stopping = _stopping.is_set()
            if stopping:  # interrupted while this one was being created: the interrupt did not see it
                client.set_flow_run_state(child.id, Cancelling(message=WINDOW_CANCELLED), force=True)
            try:
                result = _follow(client, child, drill, Path(drill.spec.evidence.dir), created, wp.start_s)
            finally:
                with _lock:
                    _in_flight.discard(child.id)
            with _lock:
                _results.append(result)
            results.append(result)
            _publish_results(wp)
            if result.cluster_unsafe:
                break
    return results


@contextmanager
def children_cancelled_on_interrupt() -> Iterator[None]:
    """A window interrupted (cancelled from the UI, SIGTERM) starts no further drill and cancels its running ones,
    each of which then rolls back and seals; then the interruption goes on."""
    _stopping.clear()
    with _lock:
        _results.clear()
    try:
        yield
    except BaseException:
        with _lock:
            _stopping.set()
            running = list(_in_flight)
        with get_client(sync_client=True) as client:
            for child_id in running:
                client.set_flow_run_state(child_id, Cancelling(message=WINDOW_CANCELLED), force=True)
            # The window ends after its drills did (rolled back, sealed), or after the grace.
            grace_end = time.monotonic() + CANCEL_GRACE_S
            while running and time.monotonic() < grace_end:
                running = [c for c in running if client.read_flow_run(c).state_type.value not in TERMINAL_STATES]
                time.sleep(CHILD_POLL_S if running else 0)
        raise


@task(name="close-window", cache_policy=NO_CACHE)
def close_window(programme_file: str, wp: WindowPlan, results: list[ChildResult], approval: str | None) -> WindowReport:
    """The quarter's coverage after the window and the plan of what is left, from the archive (not from the results)."""
    programme = load_programme(programme_file)
    archive = Path(programme.template.evidence.dir)
    history = _drills_so_far(programme)
    now = utcnow()
    records = [r for _, r in read_records(archive, programme.spec.quarter)] if archive.is_dir() else []
    cov = coverage(programme, wp.inventory, history, now, records=records)
    figures = cov.figures()
    replan = make_plan(programme, wp.inventory, history, now)
    to_drill = sum(len(d.vms) for w in replan.windows for d in w.drills) + len(replan.unplaced)
    report = WindowReport(programme=wp.programme, quarter=wp.quarter, index=wp.index, start=wp.start, end=wp.end,
                          approval=approval, results=results, coverage=figures, still_to_drill=to_drill,
                          cannot_fit=len(replan.unplaced))
    create_table_artifact(coverage_rows(cov), key=f"programme-coverage-{wp.programme}", description=(
        f"{wp.quarter} after window #{wp.index}: {figures.passed} of {figures.to_drill} core VM(s) passed, "
        f"{figures.failed} failed awaiting retest, {figures.open_deficiencies} open deficiency(ies), "
        f"{figures.not_drilled} not drilled, {figures.exceptions} exception(s); still to drill {to_drill} "
        f"({len(replan.unplaced)} fit no window left)"))
    return report

