"""The drill flow: sequencing only. Every stage is a task; rollback and sealing always happen."""

from __future__ import annotations

from contextlib import ExitStack

from prefect import flow
from prefect.concurrency.sync import concurrency

from flows.approval import approval_gate
from livedrill.decisions import DrillFacts, judge
from livedrill.deploy.limits import ClusterBusy, acquire_timeout_s, cluster_limit_name
from livedrill.outcomes import CheckResult, CheckStatus, Verdict
from livedrill.spec import DrillSpec
from livedrill.stages.migrate import MigrationResult
from tasks.dryrun import discard_dry_run, open_dry_run
from tasks.drain import drain
from tasks.evidence import open_evidence, seal_evidence
from tasks.metrics import export_metrics, kubevirt_metrics_evidence
from tasks.migrate import migrate, postcheck
from tasks.preflight import preflight
from tasks.probe import probe_smoke
from tasks.report import publish_plan, publish_report
from tasks.rollback import retire, rollback

DRY_RUN_NOTE = CheckResult(name="dry-run", status=CheckStatus.NOT_APPLICABLE, subject="drill",
                           message="dry run: pre-flight and plan only; no probe traffic, nothing changed, "
                                   "no evidence archived")


@flow(name="livedrill-drill")
def drill(spec: DrillSpec, spec_text: str | None = None, dry_run: bool = False, cluster_lock: bool = False) -> Verdict:
    """One drill. `cluster_lock` takes the cluster's strict global concurrency slot (deployed runs always do)."""
    return run_drill(spec, spec_text, dry_run=dry_run, cluster_lock=cluster_lock)


def run_drill(spec: DrillSpec, spec_text: str | None, *, dry_run: bool, cluster_lock: bool) -> Verdict:
    if dry_run:
        return _dry_run(spec)
    with ExitStack() as held:
        if cluster_lock:
            _take_cluster_slot(held, spec)
        return _drill(spec, spec_text)


def _take_cluster_slot(held: ExitStack, spec: DrillSpec) -> None:
    name = cluster_limit_name(spec.cluster)
    timeout = acquire_timeout_s(spec.concurrency)
    try:
        # A lease renewal hiccup must not kill a drill mid-migration: it would skip the rollback.
        held.enter_context(concurrency(name, occupy=1, strict=True, timeout_seconds=timeout,
                                       raise_on_lease_renewal_failure=False))
    except TimeoutError:
        raise ClusterBusy(f"cluster {spec.cluster} is busy: another drill holds {name} "
                          f"(waited {timeout:g} s, on_busy={spec.concurrency.on_busy})") from None


def _failed(checks: list[CheckResult]) -> bool:
    return any(c.status is CheckStatus.FAIL for c in checks)


def _take(result: MigrationResult, migration_checks: list, probe_checks: list, downtime: float | None) -> float | None:
    """File one migration's checks; return the drill's observed downtime so far (the longest of any leg)."""
    probe_checks += [c for c in result.checks if c.name != "migration"]
    migration_checks += [c for c in result.checks if c.name == "migration"]
    if result.observed_downtime_ms is None:
        return downtime
    return max(downtime or 0.0, result.observed_downtime_ms)


def _drill(spec: DrillSpec, spec_text: str | None) -> Verdict:
    run_dir, started_at = open_evidence(spec, spec_text)
    pre_checks, migration_checks, probe_checks = [], [], []
    started, downtime, error = False, None, None
    try:
        gate = preflight(run_dir)
        pre_checks = list(gate.checks)
        error = gate.error
        if gate.passed:
            pre_checks += probe_smoke(run_dir)
        plan = publish_plan(spec, pre_checks, gate.before, dry_run=False)
        if error is None and not _failed(pre_checks) and spec.approval.required:
            pre_checks.append(approval_gate(spec, run_dir, plan))
        if error is None and not _failed(pre_checks) and spec.mode.kind == "drain":
            drained = drain(run_dir)  # every VM on the node at once, each with its verdict
            started, downtime = drained.started, drained.observed_downtime_ms
            migration_checks += drained.checks
            probe_checks += drained.probe_checks
        elif error is None and not _failed(pre_checks):
            landed = []  # (the VM as it was, the outbound result), for the return leg
            for vm in spec.vms:
                before = gate.state_of(vm)
                result = migrate(run_dir, before)
                started = started or result.started
                downtime = _take(result, migration_checks, probe_checks, downtime)
                if result.succeeded:
                    migration_checks += postcheck(run_dir, result, before)
                    landed.append((before, result))
            if spec.mode.migrate_back and not _failed(pre_checks + migration_checks + probe_checks):
                for before, outbound in landed:
                    there = before.moved_to(outbound.target)
                    result = migrate(run_dir, there, return_to=outbound.source)
                    downtime = _take(result, migration_checks, probe_checks, downtime)
                    if result.succeeded:
                        migration_checks += postcheck(run_dir, result, there)
        failed = _failed(pre_checks + migration_checks + probe_checks)
        compensations = rollback(run_dir) if failed else retire(run_dir, "drill completed: nothing to undo")
    except BaseException:
        # Interrupted (a cancel from the UI arrives as Prefect's TerminationSignal) or crashed: undo what was
        # done, seal what was seen, then let the interruption through.
        compensations = rollback(run_dir)
        # A task interrupted mid-way returns nothing; a registered compensation still proves it changed something.
        mutated = started or bool(compensations)
        _seal(spec, run_dir, DrillFacts(pre_checks, migration_checks, probe_checks, compensations, mutated,
                                        downtime, error="the drill was interrupted"), started_at)
        raise
    return _seal(spec, run_dir, DrillFacts(pre_checks, migration_checks, probe_checks, compensations, started,
                                           downtime, error), started_at)


def _seal(spec: DrillSpec, run_dir: str, facts: DrillFacts, started_at: str) -> Verdict:
    """KubeVirt's own migration metrics into the evidence, seal, report, then push the drill's metrics."""
    if spec.metrics.kubevirt is not None:
        kubevirt_metrics_evidence(run_dir, spec.metrics, spec.vms)
    verdict = seal_evidence(run_dir, facts, started_at)
    publish_report(spec.name, verdict)
    if spec.metrics.push:
        export_metrics(run_dir, spec.metrics)
    return verdict


def _dry_run(spec: DrillSpec) -> Verdict:
    run_dir = open_dry_run(spec)
    try:
        gate = preflight(run_dir)
        publish_plan(spec, gate.checks, gate.before, dry_run=True)
    finally:
        discard_dry_run(run_dir)
    verdict = judge(DrillFacts(gate.checks + [DRY_RUN_NOTE], [], [], [], False, None, gate.error))
    publish_report(spec.name, verdict)
    return verdict
