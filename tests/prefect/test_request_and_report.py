"""The on-demand form model, the approval record, the report renderers and the progress throttle (pure)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from livedrill.deploy.approval import ApprovalDecision, ApprovalRecord, approval_check
from livedrill.deploy.limits import acquire_timeout_s, cluster_limit_name
from livedrill.deploy.report import (drill_report_markdown, latency_p99, plan_markdown, probe_window_rows,
                                     progress_percent, should_publish)
from livedrill.deploy.request import DrillRequest, RequestError, apply_request, find_served_spec, resolve_request
from livedrill.outcomes import CheckResult, CheckStatus, DrillOutcome, Verdict
from livedrill.platforms.base import VMState
from livedrill.progress import Countdown, DrainProgress, MigrationPhaseSeen, ProbeFigures, ProgressEvent, status_line
from livedrill.spec import ConcurrencyPolicy, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "drills" / "lab-targeted.yaml"
SERVED = [LAB.resolve(), (REPO / "drills" / "banking-core-quarterly.yaml").resolve()]


@pytest.mark.parametrize("wanted", ["lab-targeted", "lab-targeted.yaml", str(LAB), str(LAB.resolve())])
def test_a_served_spec_is_found_by_name_or_path(wanted):
    assert find_served_spec(wanted, SERVED) == LAB.resolve()


@pytest.mark.parametrize("wanted", ["/etc/passwd", "lab", "../drills/lab-targeted.yaml.bak", ""])
def test_anything_else_is_refused_with_the_served_names(wanted):
    with pytest.raises(RequestError, match="served: banking-core-quarterly, lab-targeted"):
        find_served_spec(wanted, SERVED)


@pytest.mark.parametrize("request_fields, mode", [
    ({}, {"kind": "targeted", "target_node": "node-2", "migrate_back": False}),
    ({"target_node": "node-3"}, {"kind": "targeted", "target_node": "node-3", "migrate_back": False}),
    ({"mode": "targeted"}, {"kind": "targeted", "target_node": None, "migrate_back": False}),
    ({"mode": "drain", "target_node": "node-1"}, {"kind": "drain", "node": "node-1"}),
])
def test_the_request_overrides_mode_and_node(request_fields, mode):
    spec = apply_request(load_spec(LAB), DrillRequest(spec="lab-targeted", **request_fields))
    assert {k: v for k, v in spec.mode.model_dump().items() if k in mode} == mode
    assert spec.approval.required is True  # the form's default


def test_drain_without_a_node_and_invalid_overrides_are_refused():
    with pytest.raises(RequestError, match="needs target_node"):
        apply_request(load_spec(LAB), DrillRequest(spec="x", mode="drain"))
    libvirt = load_spec(REPO / "drills" / "lab-libvirt.yaml")
    with pytest.raises(RequestError, match="not one of platform.hosts"):
        apply_request(libvirt, DrillRequest(spec="x", target_node="no-such-host"))


def test_unchanged_request_keeps_the_files_text_and_a_changed_one_records_why():
    spec, text = resolve_request(DrillRequest(spec="lab-targeted", approval_required=False), SERVED)
    assert text == LAB.read_text()
    spec, text = resolve_request(DrillRequest(spec="lab-targeted", target_node="node-3"), SERVED)
    assert text.startswith("# lab-targeted.yaml as run by an on-demand request")
    assert parse_spec(text) == spec and spec.mode.target_node == "node-3"


def test_the_form_schema_offers_the_five_fields_and_forbids_others():
    schema = DrillRequest.model_json_schema()
    assert list(schema["properties"]) == ["spec", "mode", "target_node", "dry_run", "approval_required"]
    assert schema["required"] == ["spec"] and schema["additionalProperties"] is False
    assert schema["properties"]["mode"]["enum"] == ["as-specified", "targeted", "drain"]


NOW = datetime(2027, 1, 2, 2, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("record, status, words", [
    (ApprovalRecord(decision=ApprovalDecision.APPROVED, approver="Li Wei", change_ticket="CHG-1"), CheckStatus.PASS,
     "approved by Li Wei (change ticket CHG-1)"),
    (ApprovalRecord(decision=ApprovalDecision.REJECTED, approver="Li Wei", change_ticket="CHG-1", comment="not today"),
     CheckStatus.FAIL, "rejected by Li Wei (change ticket CHG-1): not today; nothing was changed"),
    (ApprovalRecord(decision=ApprovalDecision.TIMED_OUT, timeout_s=600), CheckStatus.FAIL,
     "no approval within 600 s; nothing was changed"),
    (ApprovalRecord(decision=ApprovalDecision.NOT_REQUIRED), CheckStatus.NOT_APPLICABLE, "no approval required"),
])
def test_approval_check(record, status, words):
    check = approval_check(record)
    assert (check.name, check.status) == ("approval", status)
    assert words in check.message


@pytest.mark.parametrize("policy, timeout", [
    (ConcurrencyPolicy(), 10.0), (ConcurrencyPolicy(on_busy="wait", wait_timeout_s=900), 900.0),
    (ConcurrencyPolicy(on_busy="fail", fail_fast_s=3), 3.0),
])
def test_cluster_slot_timeout(policy, timeout):
    assert acquire_timeout_s(policy) == timeout
    assert cluster_limit_name("prod-core-a") == "drill:prod-core-a"


PROBE_REPORT = {"probes": [
    {"name": "ledger", "windows": {
        "after": {"count": 400, "ok": 400, "failed": 0, "p50_ms": 1.0, "p99_ms": 2.5, "max_ms": 3.0},
        "baseline": {"count": 400, "ok": 400, "failed": 0, "p50_ms": 1.1, "p99_ms": 2.0, "max_ms": 2.2},
        "during": {"count": 900, "ok": 890, "failed": 10, "p50_ms": 1.3, "p99_ms": 60.0, "p99_outside_gaps_ms": 3.1234,
                   "max_ms": 61.0}}},
    {"name": "gateway", "windows": {"baseline": {"count": 10, "ok": 10, "failed": 0, "p50_ms": 4.0, "p99_ms": 9.0}}},
]}


def test_probe_windows_table_rows_in_window_order():
    rows = probe_window_rows(PROBE_REPORT)
    assert [(r["probe"], r["window"]) for r in rows] == [
        ("ledger", "baseline"), ("ledger", "during"), ("ledger", "after"), ("gateway", "baseline")]
    assert rows[1]["p99_outside_gaps_ms"] == 3.12 and rows[1]["failed"] == 10
    assert probe_window_rows(None) == []


def test_latency_is_the_worst_probe_per_window_and_during_is_judged_outside_gaps():
    assert latency_p99(PROBE_REPORT) == {"after": 2.5, "baseline": 9.0, "during": 3.1234}


def _verdict(outcome=DrillOutcome.PASSED, reasons=(), checks=()):
    return Verdict(outcome=outcome, reasons=list(reasons), checks=list(checks), observed_downtime_ms=42.04,
                   evidence_dir="/archive/lab-targeted/run-1")


def test_drill_report_shows_verdict_downtime_latency_approval_and_checks():
    checks = [CheckResult(name="vm-on-target", status=CheckStatus.PASS, message="on node-2 | was node-1"),
              CheckResult(name="slo.max-downtime", status=CheckStatus.FAIL, message="gap 600 ms")]
    text = drill_report_markdown(_verdict(DrillOutcome.FAILED, ["slo.max-downtime: gap 600 ms"], checks), PROBE_REPORT,
                                 {"decision": "approved", "approver": "Li Wei", "change_ticket": "CHG-1"})
    assert text.startswith("# Drill verdict: FAILED")
    assert "**42.0 ms**" in text and "during 3.12 ms" in text
    assert "approved by Li Wei (change ticket CHG-1)" in text
    assert "| vm-on-target | pass |  | on node-2 \\| was node-1 |" in text  # a pipe cannot break the table
    assert "| slo.max-downtime | **FAIL** |" in text and "## Why it did not pass" in text


def test_plan_names_the_move_the_preflight_and_the_approval():
    spec = apply_request(load_spec(LAB), DrillRequest(spec="lab-targeted"))
    checks = [CheckResult(name="vmi-running", status=CheckStatus.PASS, message="Running")]
    before = [VMState(ref=spec.vms[0], node="node-1", running=True, memory_gib=2.0)]
    text = plan_markdown(spec, checks, before, dry_run=False)
    assert "live-migrate to **node-2**" in text and "`banking/banking-core-vm` on node `node-1` (2.0 GiB)" in text
    assert "All 1 pre-flight checks passed." in text and "change manager approves" in text
    failing = [CheckResult(name="vmi-running", status=CheckStatus.FAIL, message="Stopped")]
    dry = plan_markdown(spec, failing, [], dry_run=True)
    assert dry.startswith("# Dry run") and "1 pre-flight check(s) FAILED" in dry
    assert "then back" not in text
    back = spec.model_copy(update={"mode": spec.mode.model_copy(update={"migrate_back": True})})
    assert "live-migrate to **node-2**, then back to where it runs now (probed too)" in plan_markdown(
        back, checks, [], dry_run=False)


TX = [ProbeFigures(name="ledger", rate_per_s=200, ok=200, failed=0, in_flight=1)]


@pytest.mark.parametrize("event, percent", [
    (Countdown(stage="warm-up", seconds_left=2.0, probes=TX), 0.0),
    (Countdown(stage="warm-up", seconds_left=1.0), 5.0),
    (Countdown(stage="warm-up", seconds_left=9.0), 0.0),  # clamped: a late start never moves the bar back
    (MigrationPhaseSeen(phase="Pending", source="node-1", target="node-2", probes=TX), 10.0),
    (MigrationPhaseSeen(phase="Running", source="node-1", target="node-2"), 10.0 + 80 * 5 / 9),
    (MigrationPhaseSeen(phase="Succeeded", source="node-1", target="node-2"), 90.0),
    (MigrationPhaseSeen(phase="Failed", source="node-1"), 90.0),
    (Countdown(stage="cool-down", seconds_left=1.0), 95.0),
    (Countdown(stage="cool-down", seconds_left=0.0, probes=TX), 100.0),
    (MigrationPhaseSeen(phase="SomethingNew", source="node-1", target="node-2"), None),
    (DrainProgress(node="node-1", vmis_off=1, vmis=2, pods_left=0, migrating=1), None),
])
def test_progress_percent_from_the_migrate_stage_event(event, percent):
    got = progress_percent(event, warmup_s=2.0, cooldown_s=2.0)
    assert got == (None if percent is None else round(percent, 1))


@pytest.mark.parametrize("event, line", [
    (Countdown(stage="warm-up", seconds_left=1.25, probes=TX),
     "warm-up    1.2s left | ledger 200/s ok=200 failed=0 in-flight=1 last-gap=0ms"),
    (Countdown(stage="cool-down", seconds_left=0.5), "cool-down  0.5s left"),
    (MigrationPhaseSeen(phase="Running", source="node-1"), "migrate  phase=Running         node-1 -> ?"),
    (DrainProgress(node="node-1", vmis_off=1, vmis=2, pods_left=3, migrating=1),
     "drain node-1: 1/2 VMIs off, 3 pod(s) left, 1 migrating"),
])
def test_the_terminal_line_renders_each_event(event, line):
    assert status_line(event) == line


def test_the_progress_bar_is_built_from_events_whatever_the_terminal_says(monkeypatch):
    """The bar reads the event, never the terminal's text: a reworded status line leaves it where it was."""
    import tasks.report
    import tasks.terminal

    published = []
    monkeypatch.setattr(tasks.report, "create_progress_artifact", lambda progress, description: "bar-id")
    monkeypatch.setattr(tasks.report, "update_progress_artifact", lambda bar_id, percent: published.append(percent))
    monkeypatch.setattr(tasks.terminal, "status_line", lambda event: "something else entirely")
    clock = iter(range(0, 100, 2))
    bar = tasks.report.ProgressArtifact("banking/banking-core-vm", 2.0, 2.0, clock=lambda: next(clock))
    shown = io.StringIO()
    terminal = tasks.terminal.TerminalStatus(shown, every=1)
    for event in (Countdown(stage="warm-up", seconds_left=1.0), MigrationPhaseSeen(phase="Running"),
                  MigrationPhaseSeen(phase="Succeeded"), Countdown(stage="cool-down", seconds_left=0.0)):
        terminal(event)
        bar(event)
    assert shown.getvalue() == "something else entirely\n" * 4
    assert published == [5.0, round(10.0 + 80 * 5 / 9, 1), 90.0, 100.0]


def test_progress_events_cross_a_process_boundary_as_json():
    adapter = TypeAdapter(ProgressEvent)
    for event in (Countdown(stage="warm-up", seconds_left=1.0, probes=TX), MigrationPhaseSeen(phase="Running"),
                  DrainProgress(node="n", vmis_off=0, vmis=1, pods_left=0, migrating=0)):
        assert adapter.validate_json(adapter.dump_json(event)) == event
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "countdown", "stage": "warm-up", "seconds_left": 1.0, "percent": 3})


@pytest.mark.parametrize("last, last_at, pct, now, publish", [
    (None, None, 0.0, 0.0, True),  # the first value
    (10.0, 0.0, 20.0, 0.5, False),  # too soon
    (10.0, 0.0, 20.0, 1.0, True),
    (20.0, 0.0, 20.0, 5.0, False),  # unchanged
    (90.0, 0.0, 100.0, 0.1, True),  # the end is never throttled
    (100.0, 0.0, 100.0, 9.0, False),
])
def test_progress_throttle(last, last_at, pct, now, publish):
    assert should_publish(last, last_at, pct, now, 1.0) is publish


def test_the_records_are_json_for_the_evidence():
    record = ApprovalRecord(decision=ApprovalDecision.APPROVED, approver="a", change_ticket="b", requested_at=NOW)
    assert json.loads(record.model_dump_json())["requested_at"] == "2027-01-02T02:00:00Z"
