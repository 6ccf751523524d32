"""The drill flow: sequencing only. Every stage is a task; rollback and sealing always happen."""

from __future__ import annotations

from prefect import flow

from livedrill.decisions import DrillFacts
from livedrill.outcomes import CheckStatus, Verdict
from livedrill.spec import DrillSpec
from tasks.drain import drain
from tasks.evidence import open_evidence, seal_evidence
from tasks.migrate import migrate, postcheck
from tasks.preflight import preflight
from tasks.probe import probe_smoke
from tasks.rollback import retire, rollback


@flow(name="livedrill-drill")
def drill(spec: DrillSpec, spec_text: str | None = None) -> Verdict:
    run_dir, started_at = open_evidence(spec, spec_text)
    pre_checks, migration_checks, probe_checks = [], [], []
    started, downtime, error = False, None, None
    try:
        gate = preflight(run_dir)
        pre_checks = list(gate.checks)
        error = gate.error
        if gate.passed:
            pre_checks += probe_smoke(run_dir)
        if error is None and not any(c.status is CheckStatus.FAIL for c in pre_checks) and spec.mode.kind == "drain":
            drained = drain(run_dir)  # every VM on the node at once, each with its verdict
            started, downtime = drained.started, drained.observed_downtime_ms
            migration_checks += drained.checks
            probe_checks += drained.probe_checks
        elif error is None and not any(c.status is CheckStatus.FAIL for c in pre_checks):
            for vm in spec.vms:
                result = migrate(run_dir, str(vm), gate.before[str(vm)])
                started = started or result.started
                probe_checks += [c for c in result.checks if c.name != "migration"]
                migration_checks += [c for c in result.checks if c.name == "migration"]
                if result.observed_downtime_ms is not None:
                    downtime = max(downtime or 0.0, result.observed_downtime_ms)
                if result.succeeded:
                    migration_checks += postcheck(run_dir, result, gate.before[str(vm)])
        failed = any(c.status is CheckStatus.FAIL for c in pre_checks + migration_checks + probe_checks)
        compensations = rollback(run_dir) if failed else retire(run_dir, "drill completed: nothing to undo")
    except BaseException:
        # Interrupted or crashed: undo what was done, seal what was seen, then let the interruption through.
        compensations = rollback(run_dir)
        seal_evidence(run_dir, DrillFacts(pre_checks, migration_checks, probe_checks, compensations, started,
                                          downtime, error="the drill was interrupted"), started_at)
        raise
    return seal_evidence(run_dir, DrillFacts(pre_checks, migration_checks, probe_checks, compensations, started,
                                             downtime, error), started_at)
