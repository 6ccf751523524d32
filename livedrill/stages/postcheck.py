"""Post-checks: the platform's own criteria for a correct migration, judged from what it shows now."""

from __future__ import annotations

from livedrill.outcomes import CheckResult
from livedrill.platforms.base import VMState
from livedrill.spec import VMRef
from livedrill.stages.migrate import MigrationResult
from livedrill.stages.session import DrillSession

POSTCHECK_FILE = "postcheck.json"


def run_postcheck(session: DrillSession, result: MigrationResult, before: dict) -> list[CheckResult]:
    session.event("livedrill", "stage", stage="postcheck")
    if not result.started:
        session.run.write_json(POSTCHECK_FILE, [])
        return []
    adapter = session.adapter()
    try:
        ns, name = result.vm.split("/", 1)
        vm = VMRef(namespace=ns, name=name)
        state = VMState(ref=vm, node=before.get("node"), running=bool(before.get("running")),
                        memory_gib=float(before.get("memory_gib", 0)))
        checks = adapter.postcheck(result.handle(), state)
    finally:
        adapter.close()
    session.run.write_json(POSTCHECK_FILE, checks)
    return checks
