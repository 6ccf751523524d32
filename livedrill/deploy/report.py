"""What a run shows its operators: the plan awaiting approval, the drill report, the probe windows, progress.

Pure renderers over the run's records (verdict, pre-flight checks, probe/report.json as loaded JSON), so the
Prefect layer only publishes them as artifacts.
"""

from __future__ import annotations

from typing import Any

from livedrill.outcomes import CheckResult, CheckStatus, Verdict
from livedrill.platforms.base import MigrationPhase, VMState
from livedrill.progress import Countdown, MigrationPhaseSeen, ProgressEvent
from livedrill.spec import DrainMode, DrillSpec

# Share of the progress bar each part of one VM's migration takes: warm-up, the phases, cool-down.
WARMUP_SHARE, COOLDOWN_SHARE = 10.0, 10.0
_STATUS = {CheckStatus.PASS: "pass", CheckStatus.WARN: "WARN", CheckStatus.FAIL: "**FAIL**",
           CheckStatus.NOT_APPLICABLE: "n/a"}


def _cell(text: Any) -> str:
    """Markdown table cell: pipes and newlines would break the table."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def checks_table(checks: list[CheckResult]) -> str:
    lines = ["| check | status | subject | finding |", "|---|---|---|---|"]
    lines += [f"| {_cell(c.name)} | {_STATUS[c.status]} | {_cell(c.subject)} | {_cell(c.message)} |" for c in checks]
    return "\n".join(lines)


def plan_markdown(spec: DrillSpec, checks: list[CheckResult], before: list[VMState], *, dry_run: bool) -> str:
    """What the approver approves: which VMs move where, with which probes and SLO, and what pre-flight saw."""
    if isinstance(spec.mode, DrainMode):
        action = f"drain node **{spec.mode.node}** (every migratable VM on it live-migrates away)"
    else:
        action = f"live-migrate to **{spec.mode.target_node or 'a node the scheduler picks'}**"
        if spec.mode.migrate_back:
            action += ", then back to where it runs now (probed too)"
    seen = {state.ref: state for state in before}
    vms = "\n".join(f"- `{vm}` on node `{(seen[vm].node if vm in seen else None) or '?'}` "
                    f"({seen[vm].memory_gib if vm in seen else '?'} GiB)" for vm in spec.vms)
    probes = "\n".join(f"- {p.name}: {p.kind} at {p.rate_per_s:g}/s against `{p.vm}`" for p in spec.probes) or "- none"
    failed = [c for c in checks if c.status is CheckStatus.FAIL]
    gate = f"**{len(failed)} pre-flight check(s) FAILED**: the drill will not start." if failed \
        else f"All {len(checks)} pre-flight checks passed."
    title = "Dry run: the plan (nothing will be changed)" if dry_run else "The drill plan"
    approval = (f"A change manager approves on this run's Resume page (name and change ticket) within "
                f"{spec.approval.timeout_s} s; a rejection or no answer ends the drill with nothing changed."
                if spec.approval.required else "No approval is required for this run.")
    return "\n".join([
        f"# {title}", "",
        f"Drill **{spec.name}** on cluster **{spec.cluster}** ({spec.platform.kind}, mode {spec.mode.kind}): {action}.", "",
        "## VMs", vms, "", "## Probes", probes, "",
        f"## SLO\nmax downtime {spec.slo.max_downtime_ms:g} ms, p99 latency {spec.slo.p99_latency_ms:g} ms, "
        f"lost transactions <= {spec.slo.max_lost_transactions}, duplicates <= {spec.slo.max_duplicated_transactions}", "",
        "## Pre-flight", gate, "", checks_table(checks), "", "## Approval", approval, "",
        "Rollback: a cancel or a failed check cancels the migration through the compensation record; "
        "the evidence is sealed either way.",
    ])


def latency_p99(probe_report: dict | None) -> dict[str, float]:
    """p99 per window over every probe (the worst probe), as the SLO judges it: 'during' outside gaps."""
    worst: dict[str, float] = {}
    for probe in (probe_report or {}).get("probes", []):
        for name, w in probe.get("windows", {}).items():
            value = w.get("p99_outside_gaps_ms") if name == "during" else w.get("p99_ms")
            if value is not None:
                worst[name] = max(worst.get(name, 0.0), value)
    return worst


def drill_report_markdown(verdict: Verdict, probe_report: dict | None, approval: dict | None) -> str:
    downtime = "not measured" if verdict.observed_downtime_ms is None else f"{verdict.observed_downtime_ms:.1f} ms"
    p99 = latency_p99(probe_report)
    latency = ", ".join(f"{k} {v:.2f} ms" for k, v in p99.items()) or "not measured"
    lines = [f"# Drill verdict: {verdict.outcome.value}", "",
             f"- observed downtime (longest gap between successful probes): **{downtime}**",
             f"- p99 latency per window: {latency}"]
    if approval:
        lines.append(f"- approval: {approval.get('decision')} by {approval.get('approver') or '-'} "
                     f"(change ticket {approval.get('change_ticket') or '-'})")
    if verdict.evidence_dir:
        lines.append(f"- sealed evidence: `{verdict.evidence_dir}`")
    if verdict.reasons:
        lines += ["", "## Why it did not pass"] + [f"- {_cell(r)}" for r in verdict.reasons]
    lines += ["", "## Checks", checks_table(verdict.checks)]
    return "\n".join(lines)


def probe_window_rows(probe_report: dict | None) -> list[dict[str, Any]]:
    """One row per probe and window (baseline, during, after), in that order."""
    order = {"baseline": 0, "during": 1, "after": 2}
    rows = []
    for probe in (probe_report or {}).get("probes", []):
        windows = sorted(probe.get("windows", {}).items(), key=lambda kv: order.get(kv[0], 9))
        for name, w in windows:
            rows.append({"probe": probe.get("name"), "window": name, "requests": w.get("count"), "ok": w.get("ok"),
                         "failed": w.get("failed"), "p50_ms": _round(w.get("p50_ms")), "p99_ms": _round(w.get("p99_ms")),
                         "p99_outside_gaps_ms": _round(w.get("p99_outside_gaps_ms")), "max_ms": _round(w.get("max_ms"))})
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def progress_percent(event: ProgressEvent, warmup_s: float, cooldown_s: float) -> float | None:
    """Where one VM's migration is, from the migrate stage's progress event; None for one it cannot place."""
    if isinstance(event, Countdown):
        warmup = event.stage == "warm-up"
        total = warmup_s if warmup else cooldown_s
        done = 1.0 if total <= 0 else max(0.0, min(1.0, 1 - event.seconds_left / total))
        base = 0.0 if warmup else 100.0 - COOLDOWN_SHARE
        return round(base + done * (WARMUP_SHARE if warmup else COOLDOWN_SHARE), 1)
    if isinstance(event, MigrationPhaseSeen):
        phase = event.phase
        if phase in MigrationPhase.TERMINAL:
            return 100.0 - COOLDOWN_SHARE
        if phase not in MigrationPhase.ORDER:
            return None
        span = 100.0 - WARMUP_SHARE - COOLDOWN_SHARE
        return round(WARMUP_SHARE + span * MigrationPhase.ORDER.index(phase) / len(MigrationPhase.ORDER), 1)
    return None


def should_publish(last_percent: float | None, last_at: float | None, percent: float, now: float,
                   min_interval_s: float) -> bool:
    """Throttle progress updates to the API: the first, the last, and otherwise a change after the interval."""
    if last_percent is None or last_at is None or percent >= 100.0:
        return last_percent != percent
    return percent != last_percent and now - last_at >= min_interval_s
