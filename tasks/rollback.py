"""Rollback task: every pending compensation, LIFO, outcomes recorded. Safe to repeat."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from livedrill.outcomes import Compensation
from livedrill.stages.rollback import retire_compensations, run_rollback
from livedrill.stages.session import DrillSession
from tasks.terminal import announce


@task(name="rollback", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def rollback(run_dir: str) -> list[Compensation]:
    # Idempotent: each undo reconciles from observed state, so a retry only finishes what is left.
    announce("rollback")
    return run_rollback(DrillSession.reopen(run_dir))


@task(name="retire-compensations", cache_policy=NO_CACHE)
def retire(run_dir: str, reason: str) -> list[Compensation]:
    session = DrillSession.reopen(run_dir)
    retire_compensations(session, reason)
    return session.journal.entries
