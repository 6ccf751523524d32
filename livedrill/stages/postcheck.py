"""Post-checks: the platform's own criteria for a correct migration, judged from what it shows now."""

from __future__ import annotations

import json

from livedrill.outcomes import CheckResult
from livedrill.platforms.base import VMState
from livedrill.stages.migrate import MigrationResult
from livedrill.stages.session import DrillSession

POSTCHECK_FILE = "postcheck.json"


def run_postcheck(session: DrillSession, result: MigrationResult, before: VMState) -> list[CheckResult]:
    """`before`: the VM as it was before this migration (for a return leg: on the outbound target)."""
    session.event("livedrill", "stage", stage="postcheck")
    if not result.started:
        record_postchecks(session, [])
        return []
    adapter = session.adapter()
    try:
        checks = adapter.postcheck(result.handle(), before)
    finally:
        adapter.close()
    checks = result.labelled(checks)
    record_postchecks(session, checks)
    return checks


def record_postchecks(session: DrillSession, checks: list[CheckResult]) -> None:
    """Add to the run's post-checks: a drill of several VMs (or with a return leg) checks each migration."""
    path = session.run.path / POSTCHECK_FILE
    earlier = [CheckResult.model_validate(c) for c in json.loads(path.read_text())] if path.exists() else []
    session.run.write_json(POSTCHECK_FILE, earlier + checks)
