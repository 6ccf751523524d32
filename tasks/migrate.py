"""Migration task: one VM migrated with its probes running; the terminal shows phase and live probe figures."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from livedrill.platforms.base import VMState
from livedrill.stages.migrate import MigrationResult, run_migration
from livedrill.stages.postcheck import run_postcheck
from livedrill.outcomes import CheckResult
from livedrill.progress import ProgressEvent
from livedrill.stages.session import DrillSession
from tasks.report import ProgressArtifact
from tasks.terminal import TerminalStatus, announce


# Not retried by Prefect: creating a migration is not idempotent. Single API calls retry inside the adapter.
@task(name="migrate", cache_policy=NO_CACHE)
def migrate(run_dir: str, before: VMState, return_to: str | None = None) -> MigrationResult:
    """Migrate the VM (as it was `before`); with `return_to`, back to that node: the return leg of migrate_back."""
    session = DrillSession.reopen(run_dir)
    vm = before.ref
    announce("migrate" if return_to is None else "migrate back", str(vm) if return_to is None else f"{vm} -> {return_to}")
    adapter = session.adapter()
    status = TerminalStatus()
    bar = ProgressArtifact(str(vm), session.spec.budgets.warmup_s, session.spec.budgets.cooldown_s)

    def progress(event: ProgressEvent) -> None:
        status(event)
        bar(event)

    try:
        return run_migration(session, adapter, vm, before, progress=progress, return_to=return_to)
    finally:
        status.done()
        bar.done()
        adapter.close()


@task(name="postcheck", cache_policy=NO_CACHE)
def postcheck(run_dir: str, result: MigrationResult, before: VMState) -> list[CheckResult]:
    return run_postcheck(DrillSession.reopen(run_dir), result, before)
