"""A programme window: sequencing only. Plan the window, one approval for it, each cluster's drills as runs of
the drill deployment on the work pool (clusters in parallel), then the coverage and the new plan."""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.approval import window_approval_gate
from livedrill.programme.window import WindowReport
from tasks.programme import (DRILL_DEPLOYMENT, children_cancelled_on_interrupt, close_window, drill_cluster,
                             plan_window, publish_window_plan)

# Clusters drilled at once by one window: each cluster's thread only starts and follows its children.
MAX_CLUSTERS_IN_PARALLEL = 32


@flow(name="livedrill-programme-window", task_runner=ThreadPoolTaskRunner(max_workers=MAX_CLUSTERS_IN_PARALLEL))
def programme_window(programme: str, window: int | None = None, drill_deployment: str = DRILL_DEPLOYMENT) -> WindowReport:
    """One window of `programme` (a programme spec file): `window` is its number in time order; default: the
    window open now (a scheduled run starts when its window opens)."""
    wp = plan_window(programme, window)
    markdown = publish_window_plan(wp)
    approval = None
    if wp.approval.required and wp.drills:
        approved, approval = window_approval_gate(wp.approval, markdown)
        if not approved:
            return close_window(programme, wp, [], approval)
    with children_cancelled_on_interrupt():
        futures = [drill_cluster.submit(wp, cluster, drill_deployment) for cluster in sorted(wp.by_cluster())]
        results = [result for future in futures for result in future.result()]
    return close_window(programme, wp, results, approval)
