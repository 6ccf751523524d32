"""`livedrill preflight`: the gate alone, recorded and sealed like any run, with nothing changed."""

from __future__ import annotations

from livedrill.decisions import DrillFacts
from livedrill.outcomes import CheckStatus, Verdict, utcnow
from livedrill.spec import DrillSpec
from livedrill.stages.finish import finish
from livedrill.stages.preflight import run_preflight
from livedrill.stages.probecheck import smoke_probes
from livedrill.stages.session import DrillSession


def run_gate(spec: DrillSpec, spec_text: str | None = None) -> Verdict:
    started_at = utcnow().isoformat()
    session = DrillSession.create(spec, spec_text)
    gate = run_preflight(session)
    checks = list(gate.checks)
    if gate.passed:
        checks += smoke_probes(session)
    if not any(c.status is CheckStatus.FAIL for c in checks) and gate.error is None:
        session.event("livedrill", "gate-passed", note="pre-flight only: no migration was started")
    return finish(session, DrillFacts(checks, [], [], [], started_mutating=False, error=gate.error), started_at)
