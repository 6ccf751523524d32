"""A real drill on the lab (the drill flow, the real kubernetes client, a ledger really frozen), its
metrics exported to a real Prometheus, and the one-drill dashboard read back against the run's own
evidence (verdict, probe report, timeline, compensations read with the real models)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flows.drill import drill
from livedrill_lab.manager import running_lab
from livedrill.outcomes import Compensation, DrillOutcome, TimelineEvent
from livedrill.probe.report import SessionReport
from tests.lab_helpers import lab_spec
from tests.metrics import stores
from tests.metrics.dashboard_queries import panel_queries
from tests.metrics.test_dashboards import TimeRange, run_query

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.skipif(stores.PROMETHEUS is None, reason="needs the Debian package prometheus"),
]
VM = "banking/banking-core-vm"


def _panel(title: str, ref: str = "A"):
    return next(q for q in panel_queries() if q.dashboard == "livedrill-drill-detail" and q.panel == title and q.ref == ref)


def test_lab_drill_on_the_detail_dashboard(tmp_path):
    with stores.prometheus(tmp_path / "prom") as prom, running_lab(tmp_path) as lab:
        # The drill itself pushes its metrics after sealing, as configured in its spec.
        sink = {"kind": "remote_write", "url": prom.base_url + "/api/v1/write"}
        spec, text = lab_spec(lab, tmp_path, metrics={"push": [sink]})
        verdict = drill(spec, text)
        _check_dashboard(prom, spec, verdict)


def _check_dashboard(prom, spec, verdict):
    # The dashboard must show the run as recorded, whichever way it went (a loaded machine can stretch a gap).
    run_dir = Path(verdict.evidence_dir)
    report = SessionReport.model_validate_json((run_dir / "probe/report.json").read_bytes()).probes[0]
    timeline = [TimelineEvent.model_validate_json(line) for line in (run_dir / "timeline.jsonl").read_text().splitlines() if line]
    phases = [e for e in timeline if e.source == "platform" and e.kind == "phase"]
    compensations = [Compensation.model_validate(c) for c in json.loads((run_dir / "compensations.json").read_text())]

    now = int(time.time()) + 1
    time_range = TimeRange(now - 3600, now, 15)
    variables = {"datasource": "x", "cluster": spec.cluster, "drill": spec.name, "run_id": run_dir.name}

    def values(title: str, ref: str = "A") -> list[tuple[dict, float]]:
        return run_query(prom, _panel(title, ref), variables, time_range)["series"]

    (result_labels, result), = values("Result")
    assert (result_labels["outcome"], result) == (verdict.outcome.value, float(verdict.outcome is DrillOutcome.PASSED))
    (_, downtime), = values("Observed downtime and SLO")
    assert downtime == pytest.approx(verdict.observed_downtime_ms / 1000)
    (_, slo), = values("Observed downtime and SLO", "B")
    assert slo == spec.slo.max_downtime_ms / 1000

    (migration_labels, duration), = values("Migration")
    assert (migration_labels["vm"], migration_labels["node"], migration_labels["target_node"]) == (VM, "node-1", "node-2")
    assert duration == pytest.approx((phases[-1].at - phases[0].at).total_seconds(), abs=1e-3)
    (_, succeeded), = values("Migration", "B")
    assert succeeded == float(phases[-1].detail["phase"] == "Succeeded")

    in_phase = {labels["phase"]: v for labels, v in values("Migration phase timeline: time in each phase")}
    seen = list(dict.fromkeys(e.detail["phase"] for e in phases))
    assert list(in_phase) and set(in_phase) == set(seen[:-1]) and seen[-1] in ("Succeeded", "Failed")
    assert sum(in_phase.values()) == pytest.approx(duration, abs=1e-3)

    latency = {(labels["window"], labels["quantile"]): v for labels, v in values("Probe latency by window")}
    for window, stats in report.windows.items():
        assert latency[(window, "0.99")] == pytest.approx(stats.p99_ms / 1000)
        assert latency[(window, "1")] == pytest.approx(stats.max_ms / 1000)

    histogram = {(labels["window"], labels["le"]): v for labels, v in values("Probe latency histogram")}
    for window, stats in report.windows.items():
        assert histogram[(window, "+Inf")] == stats.ok  # every successful probe of the window, from the series file

    (_, longest), = values("Longest gap per probe")
    assert longest == pytest.approx(report.longest_gap.duration_ms / 1000)
    for ref, figure in (("A", report.failed), ("B", report.reconciliation.lost), ("C", report.reconciliation.duplicated)):
        (_, got), = values("Transactions failed / lost / duplicated", ref)
        assert got == figure
    requests = {(labels["window"], labels["result"]): v for labels, v in values("Probe requests and failures")}
    assert sum(v for (w, r), v in requests.items() if r == "ok") == report.ok
    rollbacks = {labels["state"]: v for labels, v in values("Rollback actions")}
    assert rollbacks == {state: float(sum(c.state.value == state for c in compensations))
                         for state in ("pending", "done", "not_needed", "failed")}
    assert sum(rollbacks.values()) >= 1  # the migration's cancel was registered
