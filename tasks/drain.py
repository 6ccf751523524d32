"""Drain task: cordon, evict, wait for every VMI to leave the node, probes of every core VM running at once."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from livedrill.stages.drain import DrainResult, run_drain
from livedrill.stages.session import DrillSession
from tasks.terminal import TerminalStatus, announce


# Not retried by Prefect: a second drain would register its compensations twice. Single API calls retry
# inside the adapter; evictions are re-sent by the drain loop itself (KubeVirt's 429 is progress).
@task(name="drain", cache_policy=NO_CACHE)
def drain(run_dir: str) -> DrainResult:
    session = DrillSession.reopen(run_dir)
    announce("drain", f"node {session.spec.mode.node}")
    adapter = session.adapter()
    status = TerminalStatus()
    try:
        return run_drain(session, adapter, progress=status)
    finally:
        status.done()
        adapter.close()
