"""`livedrill preflight FILE` on the lab: the whole gate, its exit code, and every check recorded in the evidence."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.preflight.conftest import run_cli, spec_data, today_in, write_spec

pytestmark = pytest.mark.e2e

KUBEVIRT_CHECKS = {"vmi-running", "live-migratable", "eviction-strategy", "no-migration-in-flight", "cluster-migrations",
                   "target-node", "target-capacity", "cpu-compatibility", "migration-budget", "cpu-pinning",
                   "guest-agent", "core-tier-isolation"}
GATES = {"drill-window", "change-freeze", "no-drill-in-progress", "evidence-archive"}


def _probe(lab) -> list[dict]:
    ledger = lab.ledger_urls["banking/banking-core-vm"]
    return [{"name": "ledger", "vm": "banking/banking-core-vm", "kind": "transaction", "rate_per_s": 50,
             "write": {"method": "POST", "url": f"{ledger}/transfers", "expect_status": [201],
                       "json": {"id": "{txid}", "from": "a", "to": "b", "amount": 1}},
             "read": {"url": f"{ledger}/transfers/{{txid}}", "expect_json": {"id": "{txid}"}}}]


def _recorded_checks(tmp_path: Path) -> dict[str, dict]:
    [run] = [p for p in (tmp_path / "evidence").iterdir() if (p / "preflight.json").exists()]
    return {c["name"]: c for c in json.loads((run / "preflight.json").read_text())["checks"]}


def _window_excluding_now(zone: str) -> dict:
    """A one-hour window that starts two hours from now (local), so now is outside it."""
    start = datetime.now(ZoneInfo(zone)) + timedelta(hours=2)
    end = start + timedelta(hours=1)
    return {"allowed_hours": f"{start:%H}:00-{end:%H}:00" if end.hour else f"{start:%H}:00-24:00"}


def test_the_gate_passes_on_the_healthy_lab_and_records_every_check(lab, tmp_path):
    data = spec_data(lab, tmp_path, probes=_probe(lab))
    done = run_cli("preflight", str(write_spec(tmp_path, data)))
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = _recorded_checks(tmp_path)
    assert KUBEVIRT_CHECKS | GATES <= set(recorded)
    assert not [n for n, c in recorded.items() if c["status"] == "fail"]
    assert recorded["drill-window"]["status"] == "not_applicable"


@pytest.mark.parametrize("overrides, check, words", [
    (lambda: {"schedule": {"timezone": "Asia/Shanghai", "change_freeze": [
        {"start": today_in("Asia/Shanghai"), "reason": "quarter-end close"}]}},
     "change-freeze", ["inside the change freeze", "quarter-end close"]),
    (lambda: {"schedule": {"timezone": "Europe/London"}, "window": _window_excluding_now("Europe/London")},
     "drill-window", ["outside the drill window", "Europe/London"]),
])
def test_the_gate_refuses_outside_the_window_or_in_a_freeze(lab, tmp_path, overrides, check, words):
    data = spec_data(lab, tmp_path, probes=_probe(lab), **overrides())
    done = run_cli("preflight", str(write_spec(tmp_path, data)))
    assert done.returncode == 1, done.stdout + done.stderr
    assert check in done.stdout and "remedy:" in done.stdout
    recorded = _recorded_checks(tmp_path)[check]
    assert recorded["status"] == "fail" and recorded["remedy"]
    for word in words:
        assert word in recorded["message"]
    assert recorded["evidence"]["now"]  # the instant it judged, with the calendar it judged against
