"""What an auditor reads about one sealed drill, gathered from its run directory.

The run directory is the only input: nothing is taken from a live platform or from Prefect, so an
export made years later says the same. Files a run lacks (a drill refused at pre-flight has no
probe report) are reported as not recorded, never invented.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from livedrill.evidence.manifest import MANIFEST_NAME, TIMESTAMP_NAME, Manifest, sha256_bytes
from livedrill.outcomes import Compensation, Record, TimelineEvent


class CheckRow(Record):
    name: str
    status: str
    message: str
    subject: str | None = None


class LatencyWindow(Record):
    window: str
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class ProbeSummary(Record):
    name: str
    kind: str
    target: str
    sent: int
    ok: int
    failed: int
    windows: list[LatencyWindow]
    longest_gap_ms: float | None  # the outage
    longest_stall_ms: float | None  # the longest wait of a request in flight
    lost: int | None
    duplicated: int | None
    series_file: str | None  # relative to the run directory


class CompensationRow(Record):
    action: str
    state: str
    outcome: str | None
    manual_action: str | None


class DrillSummary(Record):
    run_id: str
    drill: str
    cluster: str | None
    platform: str | None
    mode: str | None
    vms: list[str]
    started_at: datetime | None
    ended_at: datetime | None
    operator: str | None
    approved_by: str | None
    change_ticket: str | None
    outcome: str
    reasons: list[str]
    observed_downtime_ms: float | None
    slo: dict[str, Any]
    preflight: list[CheckRow]
    postcheck: list[CheckRow]
    verdict_checks: list[CheckRow]
    probes: list[ProbeSummary]
    compensations: list[CompensationRow]
    timeline: list[TimelineEvent]
    versions: dict[str, Any]
    manifest_sha256: str
    key_id: str
    sequence: int
    sealed_at: datetime
    timestamped_at: datetime | None  # the TSA's time in MANIFEST.tsr, if the run has one
    files: int
    missing: list[str]  # expected evidence files this run does not have


def _load_json(run_dir: Path, rel: str, missing: list[str]) -> Any:
    try:
        return json.loads((run_dir / rel).read_text(encoding="utf-8"))
    except FileNotFoundError:
        missing.append(rel)
        return None


def _checks(raw: Any) -> list[CheckRow]:
    # preflight.json is a PreflightResult ({"checks": [...], "error", "before"}); runs sealed before it had one
    # shape hold the bare list of checks, and a sealed run is never rewritten.
    items = raw.get("checks", []) if isinstance(raw, dict) else raw or []
    return [
        CheckRow(name=str(c.get("name")), status=str(c.get("status")), message=str(c.get("message", "")), subject=c.get("subject"))
        for c in items
        if isinstance(c, dict)
    ]


def _probes(raw: Any, run_dir: Path) -> list[ProbeSummary]:
    items = raw.get("probes", []) if isinstance(raw, dict) else []
    out = []
    for p in items:
        windows = [
            LatencyWindow(window=name, count=w.get("count", 0), p50_ms=w.get("p50_ms"), p95_ms=w.get("p95_ms"), p99_ms=w.get("p99_ms"), max_ms=w.get("max_ms"))
            for name, w in (p.get("windows") or {}).items()
        ]
        rec = p.get("reconciliation") or {}
        # The report names the series file; only its name is kept, the file must be inside this run.
        series_name = Path(p.get("series_file") or f"{p.get('name', '?')}.series").name
        series_rel = f"probe/{series_name}" if (run_dir / "probe" / series_name).is_file() else None
        out.append(
            ProbeSummary(
                name=p.get("name", "?"),
                kind=p.get("kind", "?"),
                target=p.get("target", "?"),
                sent=p.get("sent", 0),
                ok=p.get("ok", 0),
                failed=p.get("failed", 0),
                windows=windows,
                longest_gap_ms=(p.get("longest_gap") or {}).get("duration_ms"),
                longest_stall_ms=(p.get("longest_stall") or {}).get("duration_ms"),
                lost=rec.get("lost"),
                duplicated=rec.get("duplicated"),
                series_file=series_rel,
            )
        )
    return out


def _timeline(run_dir: Path, missing: list[str]) -> list[TimelineEvent]:
    try:
        lines = (run_dir / "timeline.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        missing.append("timeline.jsonl")
        return []
    events = []
    for line in lines:
        try:
            events.append(TimelineEvent.model_validate_json(line))
        except ValidationError:
            continue  # a torn last line from a crash; the sealed bytes still hold it
    return events


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _tsa_time(run_dir: Path) -> datetime | None:
    try:
        token = (run_dir / TIMESTAMP_NAME).read_bytes()
    except FileNotFoundError:
        return None
    from rfc3161_client import decode_timestamp_response  # optional dependency: only runs with a timestamp need it

    try:
        return decode_timestamp_response(token).tst_info.gen_time
    except ValueError:
        return None  # verification (run before any export) names the broken token


def summarize_run(run_dir: Path) -> DrillSummary:
    """Read one sealed run directory into the auditor's summary."""
    missing: list[str] = []
    manifest_bytes = (run_dir / MANIFEST_NAME).read_bytes()
    manifest = Manifest.from_bytes(manifest_bytes)
    run = _load_json(run_dir, "run.json", missing) or {}
    verdict = _load_json(run_dir, "verdict.json", missing) or {}
    preflight = _load_json(run_dir, "preflight.json", missing)
    postcheck = _load_json(run_dir, "postcheck.json", missing)
    compensations_raw = _load_json(run_dir, "compensations.json", missing) or []
    probe_report = _load_json(run_dir, "probe/report.json", [])
    versions = _load_json(run_dir, "objects/versions.json", []) or run.get("versions") or {}
    try:
        spec = yaml.safe_load((run_dir / "spec.yaml").read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        missing.append("spec.yaml")
        spec = {}
    approval = run.get("approval") or {}
    compensations = []
    for c in compensations_raw:
        try:
            comp = Compensation.model_validate(c)
        except ValidationError:
            continue
        compensations.append(CompensationRow(action=comp.action, state=comp.state.value, outcome=comp.outcome, manual_action=comp.manual_action))
    mode = run.get("mode") or (spec.get("mode") or {}).get("kind")
    return DrillSummary(
        run_id=manifest.run_id,
        drill=run.get("drill") or spec.get("name") or manifest.run_id,
        cluster=run.get("cluster") or spec.get("cluster"),
        platform=run.get("platform") or (spec.get("platform") or {}).get("kind"),
        mode=mode,
        vms=run.get("vms") or [f"{v.get('namespace', 'default')}/{v.get('name')}" for v in spec.get("vms") or [] if isinstance(v, dict)],
        started_at=_time(run.get("started_at")),
        ended_at=_time(run.get("ended_at")),
        operator=run.get("operator"),
        approved_by=approval.get("approved_by"),
        change_ticket=approval.get("change_ticket"),
        outcome=str(verdict.get("outcome") or run.get("outcome") or "UNKNOWN"),
        reasons=[str(r) for r in verdict.get("reasons") or []],
        observed_downtime_ms=verdict.get("observed_downtime_ms"),
        slo=spec.get("slo") or {},
        preflight=_checks(preflight),
        postcheck=_checks(postcheck),
        verdict_checks=_checks(verdict.get("checks")),
        probes=_probes(probe_report, run_dir),
        compensations=compensations,
        timeline=_timeline(run_dir, missing),
        versions=versions if isinstance(versions, dict) else {"versions": versions},
        manifest_sha256=sha256_bytes(manifest_bytes),
        key_id=manifest.key_id,
        sequence=manifest.sequence,
        sealed_at=manifest.sealed_at,
        timestamped_at=_tsa_time(run_dir),
        files=len(manifest.files),
        missing=sorted(set(missing)),
    )


def checks_by_status(summary: DrillSummary) -> tuple[list[str], list[str], list[str]]:
    """(passed, warned, failed) check names over pre-flight, post-checks and the verdict's checks."""
    passed: list[str] = []
    warned: list[str] = []
    failed: list[str] = []
    seen: set[tuple[str, str, str | None]] = set()
    for stage, rows in (("preflight", summary.preflight), ("postcheck", summary.postcheck), ("verdict", summary.verdict_checks)):
        for row in rows:
            key = (stage, row.name, row.subject)
            if key in seen:
                continue
            seen.add(key)
            name = f"{stage}/{row.name}" + (f" [{row.subject}]" if row.subject else "")
            {"pass": passed, "warn": warned, "fail": failed}.get(row.status, []).append(name)
    return passed, warned, failed


def intoto_result(outcome: str, warned: list[str]) -> str:
    """The in-toto test-result verdict: PASSED, WARNED (passed with warnings) or FAILED (failed or errored)."""
    if outcome != "PASSED":
        return "FAILED"
    return "WARNED" if warned else "PASSED"
