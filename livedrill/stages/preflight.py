"""The pre-flight gate: every check named, judged from observed objects, recorded before anything moves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from livedrill.errors import InputError, PlatformError
from livedrill.evidence.worm import StoreReadiness, store_readiness
from livedrill.forecast import GIB, MEASURE, DirtyRateReading, convergence_check
from livedrill.gates import operational_gates
from livedrill.outcomes import CheckResult, CheckStatus, PreflightResult, utcnow
from livedrill.platforms.base import PlatformAdapter, VMPreflight
from livedrill.spec import migration_deadline_s
from livedrill.stages.drain import drain_preflight
from livedrill.stages.session import DrillSession

PREFLIGHT_FILE = "preflight.json"


# Bytes one probe request takes in the series, with margin (the probe engine's record is smaller).
SERIES_BYTES_PER_REQUEST = 64


def evidence_check(signer_error: str | None, free_bytes: int, needed_bytes: int, archive: str,
                   store: StoreReadiness | None = None) -> CheckResult:
    """Pure: can this drill's evidence be written and sealed? A drill whose proof cannot be sealed proves nothing.

    A WORM store that refuses (no Object Lock, no access) fails the check; one that does not answer only warns: the
    drill's seal then waits in the staging folder until the store is back, which costs no evidence.
    """
    problems = []
    if signer_error:
        problems.append(f"the signing key cannot be loaded: {signer_error}")
    if free_bytes < needed_bytes:
        problems.append(f"{free_bytes / 2**20:.0f} MiB free, the probe series needs up to {needed_bytes / 2**20:.0f} MiB")
    if store is not None and store.problem and not store.transient:
        problems.append(f"the WORM store refuses: {store.problem}")
    unreachable = store is not None and store.problem is not None and store.transient
    status = CheckStatus.FAIL if problems else CheckStatus.WARN if unreachable else CheckStatus.PASS
    sealed_where = f"; sealing into {store.url}" if store is not None and not store.problem else ""
    message = "; ".join(problems) if problems else (
        f"writable, signing key loaded, {free_bytes / 2**30:.1f} GiB free" + sealed_where
        + (f"; the WORM store does not answer ({store.problem}): the seal will wait in the staging folder" if unreachable else ""))
    remedy = None
    if problems:
        remedy = ("provision the Ed25519 key (evidence.signing_key or $LIVEDRILL_SIGNING_KEY), free space, and a bucket with "
                  "Object Lock the drill's credentials can write (evidence.store)")
    return CheckResult(
        name="evidence-archive", status=status, subject=f"archive {archive}", message=message, remedy=remedy,
        evidence={"free_bytes": free_bytes, "needed_bytes": needed_bytes,
                  **({"store": store.url, "store_problem": store.problem} if store is not None else {})})


def _evidence_check(session: DrillSession, longest_migration_s: float) -> CheckResult:
    spec = session.spec
    try:
        session.signer()
        signer_error = None
    except Exception as exc:  # noqa: BLE001 - any key problem is this check's failure
        signer_error = str(exc)
    seconds = spec.budgets.warmup_s + longest_migration_s + spec.budgets.cooldown_s
    needed = int(sum(p.rate_per_s for p in spec.probes) * seconds * SERIES_BYTES_PER_REQUEST)
    free = shutil.disk_usage(session.run.path).free
    store = store_readiness(spec.evidence.store) if spec.evidence.store is not None else None
    return evidence_check(signer_error, free, needed, str(spec.evidence.dir), store)


def _forecast_check(session: DrillSession, adapter: PlatformAdapter, reading: VMPreflight) -> CheckResult:
    """The convergence forecast of one VM that runs, against the deadline the migration stage will enforce."""
    spec, state = session.spec, reading.before
    assert state is not None
    measured = touched = None
    capabilities = adapter.capabilities()
    if spec.forecast is not None and spec.forecast.dirty_rate_bytes_per_s == MEASURE:
        meter = capabilities.dirty_rate_meter
        measured = meter.measure_dirty_rate(state.ref, spec.forecast.measure_window_s,
                                            spec.forecast.measure_windows) if meter else DirtyRateReading(
            source=f"platform {capabilities.kind}", unknown=f"platform {capabilities.kind} has no dirty-rate meter")
    if spec.forecast is not None and spec.forecast.touched_memory_bytes == MEASURE:
        sampler = capabilities.touched_memory_meter
        touched = sampler.measure_touched_memory(state.ref, spec.forecast.touched_sample_pages) if sampler else None
    disk_bytes = reading.limits.disk_bytes if reading.limits else 0
    budget_s = migration_deadline_s(spec.budgets, state.memory_gib + disk_bytes / GIB)
    return convergence_check(spec.forecast, reading.limits, state.memory_gib * GIB, budget_s, measured,
                             spec.slo.max_downtime_ms, f"vm {state.ref}", measured_touched_bytes=touched)


def _recover_crashed(session: DrillSession) -> CheckResult:
    """Finish any crashed drill of this cluster first; refuse if another drill on it is alive."""
    from livedrill.stages.recovery import crashed_runs, recover_run

    dead, live = crashed_runs(session.spec.evidence.dir, session.spec.cluster, exclude=session.run_id)
    if live:
        return CheckResult(name="no-drill-in-progress", status=CheckStatus.FAIL, subject=f"cluster {session.spec.cluster}",
                           message=f"another drill is in progress on this cluster: {[r.run_id for r in live]}",
                           remedy="wait for it to finish; one drill per cluster at a time")
    recovered = []
    for run in dead:
        try:
            verdict = recover_run(run)
        except Exception as exc:  # noqa: BLE001 - the gate reports it; the crashed run stays for `livedrill recover`
            return CheckResult(name="no-drill-in-progress", status=CheckStatus.FAIL, subject=f"run {run.run_id}",
                               message=f"a crashed drill of this cluster could not be recovered: {exc}",
                               remedy=f"run `livedrill recover {run.run_id}` and follow what it says")
        recovered.append({"run_id": run.run_id, "outcome": verdict.outcome.value if verdict else "already sealed"})
        session.event("livedrill", "recovered-crashed-run", run_id=run.run_id)
    failed = [r for r in recovered if r["outcome"] == "FAILED" and _rollback_failed(session, r["run_id"])]
    return CheckResult(
        name="no-drill-in-progress", status=CheckStatus.FAIL if failed else CheckStatus.PASS,
        subject=f"cluster {session.spec.cluster}",
        message=(f"recovered crashed drill(s) first: {recovered}" if recovered else "no other drill on this cluster")
        + (f"; rollback of {failed} needs a human (see its verdict)" if failed else ""),
        evidence={"recovered": recovered})


def _rollback_failed(session: DrillSession, run_id: str) -> bool:
    path = session.spec.evidence.dir / run_id / "compensations.json"
    try:
        return any(c.get("state") == "failed" for c in json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def run_preflight(session: DrillSession) -> PreflightResult:
    result = PreflightResult()
    session.event("livedrill", "stage", stage="preflight")
    result.checks.extend(operational_gates(session.spec, utcnow()))
    result.checks.append(_recover_crashed(session))
    try:
        adapter = session.adapter()
    except (InputError, PlatformError, ImportError) as exc:
        result.error = f"cannot reach the platform: {exc}"
        return _record(session, result)
    try:
        session.run.write_json("objects/versions.json", adapter.versions())
        for vm in session.spec.vms:
            reading = adapter.preflight(session.spec, vm)
            result.checks.extend(reading.checks)
            state = reading.before
            if state is not None:
                result.before.append(state)
                session.run.write_json(f"objects/{vm.namespace}-{vm.name}-before.json", state.raw)
                result.checks.append(_forecast_check(session, adapter, reading))
        if session.spec.mode.kind == "drain":
            result.checks.extend(drain_preflight(session, adapter))
    except (InputError, PlatformError) as exc:
        result.error = f"pre-flight could not complete: {exc}"
    finally:
        adapter.close()
    longest = max((migration_deadline_s(session.spec.budgets, s.memory_gib) for s in result.before), default=0.0)
    result.checks.append(_evidence_check(session, longest))
    return _record(session, result)


def _record(session: DrillSession, result: PreflightResult) -> PreflightResult:
    """The one writer of preflight.json."""
    session.run.write_json(PREFLIGHT_FILE, result)
    for check in result.checks:
        session.event("preflight", "check", name=check.name, status=check.status.value, message=check.message)
    return result


def read_preflight(run_dir: Path) -> PreflightResult | None:
    """The run's recorded pre-flight; None if the drill died before writing it (or it is unreadable)."""
    try:
        return PreflightResult.model_validate_json((run_dir / PREFLIGHT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
