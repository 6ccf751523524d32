"""The on-demand form model, the approval record, the report renderers and the progress throttle (pure)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from livedrill.deploy.approval import ApprovalDecision, ApprovalRecord, approval_check
from livedrill.deploy.limits import acquire_timeout_s, cluster_limit_name
from livedrill.deploy.report import (drill_report_markdown, latency_p99, plan_markdown, probe_window_rows,
                                     progress_percent, should_publish)
from livedrill.deploy.request import DrillRequest, RequestError, apply_request, find_served_spec, resolve_request
from livedrill.outcomes import CheckResult, CheckStatus, DrillOutcome, Verdict
from livedrill.platforms.base import VMState
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


@pytest.mark.parametrize("line, percent", [
    ("warm-up    2.0s left | ledger 200/s ok=0", 0.0),
    ("warm-up    1.0s left | ledger 200/s ok=200", 5.0),
    ("migrate  phase=Pending         node-1 -> node-2 | ledger", 10.0),
    ("migrate  phase=Running         node-1 -> node-2", 10.0 + 80 * 5 / 9),
    ("migrate  phase=Succeeded       node-1 -> node-2", 90.0),
    ("migrate  phase=Failed          node-1 -> ?", 90.0),
    ("cool-down  0.0s left | ledger", 100.0),
    ("migrate  phase=SomethingNew    node-1 -> node-2", None),
    ("anything else", None),
])
def test_progress_percent_from_the_migrate_stage_status_line(line, percent):
    got = progress_percent(line, warmup_s=2.0, cooldown_s=2.0)
    assert got == (None if percent is None else round(percent, 1))


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
