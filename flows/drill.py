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
from livedrill.stages.plan import DrillPlan, DrillTally, Leg, plan_drill, return_legs
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
                                       lease_duration=spec.concurrency.lease_s, raise_on_lease_renewal_failure=False))
    except TimeoutError:
        raise ClusterBusy(f"cluster {spec.cluster} is busy: another drill holds {name} "
                          f"(waited {timeout:g} s, on_busy={spec.concurrency.on_busy})") from None


def _drill(spec: DrillSpec, spec_text: str | None) -> Verdict:
    run_dir, started_at = open_evidence(spec, spec_text)
    tally, error = DrillTally(), None
    try:
        gate = preflight(run_dir)
        tally.pre_checks = list(gate.checks)
        error = gate.error
        if gate.passed:
            tally.pre_checks += probe_smoke(run_dir)
        plan = plan_drill(spec, tally.pre_checks, error, gate.before)
        markdown = publish_plan(spec, tally.pre_checks, gate.before, dry_run=False)
        if plan.approval:
            tally.pre_checks.append(approval_gate(spec, run_dir, markdown))
        if plan.moves(tally.pre_checks):
            _move(run_dir, plan, tally)
        compensations = rollback(run_dir) if tally.failed else retire(run_dir, "drill completed: nothing to undo")
    except BaseException:
        # Interrupted (a cancel from the UI arrives as Prefect's TerminationSignal) or crashed: undo what was
        # done, seal what was seen, then let the interruption through.
        compensations = rollback(run_dir)
        _seal(spec, run_dir, tally.facts(compensations, error, interrupted=True), started_at)
        raise
    return _seal(spec, run_dir, tally.facts(compensations, error), started_at)


def _move(run_dir: str, plan: DrillPlan, tally: DrillTally) -> None:
    if plan.move == "drain":
        tally.take_drain(drain(run_dir))  # every VM on the node at once, each with its verdict
        return
    landed = [(leg, _migrate(run_dir, leg, tally)) for leg in plan.outbound]
    for leg in return_legs(plan, landed, tally.checks):
        _migrate(run_dir, leg, tally)


def _migrate(run_dir: str, leg: Leg, tally: DrillTally) -> MigrationResult:
    result = migrate(run_dir, leg.before, return_to=leg.return_to)
    tally.take(result)
    if result.succeeded:
        tally.migration_checks += postcheck(run_dir, result, leg.before)
    return result


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
