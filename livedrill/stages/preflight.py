"""The pre-flight gate: every check named, judged from observed objects, recorded before anything moves."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from livedrill.errors import InputError, PlatformError
from livedrill.outcomes import CheckResult, CheckStatus
from livedrill.stages.session import DrillSession

PREFLIGHT_FILE = "preflight.json"


class PreflightResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checks: list[CheckResult] = Field(default_factory=list)
    error: str | None = None  # the platform could not be asked at all
    before: dict[str, dict] = Field(default_factory=dict)  # vm -> {"node", "memory_gib", "running"}

    @property
    def passed(self) -> bool:
        return self.error is None and not any(c.status is CheckStatus.FAIL for c in self.checks)


def run_preflight(session: DrillSession) -> PreflightResult:
    result = PreflightResult()
    session.event("livedrill", "stage", stage="preflight")
    try:
        adapter = session.adapter()
    except (InputError, PlatformError, ImportError) as exc:
        result.error = f"cannot reach the platform: {exc}"
        session.run.write_json(PREFLIGHT_FILE, result)
        return result
    try:
        session.run.write_json("objects/versions.json", adapter.versions())
        for vm in session.spec.vms:
            checks = adapter.preflight(session.spec, vm)
            result.checks.extend(checks)
            if not any(c.name == "vmi-running" and c.status is CheckStatus.FAIL for c in checks):
                state = adapter.describe_vm(vm)
                result.before[str(vm)] = {"node": state.node, "memory_gib": state.memory_gib, "running": state.running}
                session.run.write_json(f"objects/{vm.namespace}-{vm.name}-before.json", state.raw)
    except (InputError, PlatformError) as exc:
        result.error = f"pre-flight could not complete: {exc}"
    finally:
        adapter.close()
    session.run.write_json(PREFLIGHT_FILE, result.checks)
    for check in result.checks:
        session.event("preflight", "check", name=check.name, status=check.status.value, message=check.message)
    return result
