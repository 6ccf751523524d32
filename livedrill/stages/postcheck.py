"""Post-checks: the platform's own criteria for a correct migration, judged from what it shows now, and the
pre-flight's convergence forecast beside what the platform measured of the migration."""

from __future__ import annotations

import json

from livedrill.forecast import CHECK as FORECAST_CHECK
from livedrill.forecast import Forecast, accuracy_check
from livedrill.outcomes import CheckResult, PreflightResult
from livedrill.platforms.base import PlatformAdapter, VMState
from livedrill.spec import VMRef
from livedrill.stages.migrate import MigrationResult
from livedrill.stages.preflight import read_preflight
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
        if result.succeeded:
            checks += _forecast_beside_outcome(adapter, result, read_preflight(session.run.path))
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


def recorded_forecast(preflight: PreflightResult | None, vm: VMRef) -> Forecast | None:
    """The forecast the pre-flight made for `vm`; None when it made none (no forecast section, unknown inputs)."""
    for check in preflight.checks if preflight else []:
        if check.name == FORECAST_CHECK and check.subject == f"vm {vm}" and "expected" in check.evidence:
            # The check's evidence is the forecast plus what it was made from (the dirty-rate reading).
            return Forecast.model_validate({k: v for k, v in check.evidence.items() if k in Forecast.model_fields})
    return None


def _forecast_beside_outcome(adapter: PlatformAdapter, result: MigrationResult,
                             preflight: PreflightResult | None) -> list[CheckResult]:
    reader = adapter.capabilities().migration_figures
    forecast = recorded_forecast(preflight, result.vm)
    if reader is None or forecast is None:
        return []
    figures = reader.migration_figures(result.handle())
    return [accuracy_check(forecast, figures, f"vm {result.vm}")] if figures is not None else []
