"""What `livedrill serve` hands Prefect for a spec, built without a server."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import yaml

from flows.serve import QUARTERLY_PREFIX, on_demand_deployment, quarterly_deployment
from livedrill.spec import parse_spec

LAB = Path(__file__).resolve().parents[2] / "drills" / "lab-targeted.yaml"
NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def _spec(**extra):
    data = yaml.safe_load(LAB.read_text())
    data.update(extra)
    return parse_spec(yaml.safe_dump(data))


def test_quarterly_deployment_carries_the_schedule_the_spec_path_and_the_approval_choice():
    spec = _spec(approval={"required": True}, schedule={"change_freeze": [{"start": "2027-01-02"}]})
    dep = quarterly_deployment(LAB, spec, NOW)
    assert dep.name == QUARTERLY_PREFIX + "lab-targeted"
    [schedule] = dep.schedules
    assert schedule.schedule.timezone == "Asia/Shanghai"
    assert "20270102T020000" not in schedule.schedule.rrule and "RDATE:20270403T020000," in schedule.schedule.rrule
    assert dep.parameters["request"] == {"spec": str(LAB), "mode": "as-specified", "target_node": None,
                                         "dry_run": False, "approval_required": True}


def test_a_horizon_with_every_start_frozen_leaves_the_deployment_without_a_schedule():
    spec = _spec(schedule={"horizon_days": 200, "change_freeze": [{"start": "2026-11-01", "end": "2027-12-31"}]})
    dep = quarterly_deployment(LAB, spec, NOW)
    assert dep.schedules == [] and "next start none within 200 days" in dep.description


def test_on_demand_has_no_schedule_and_the_request_form():
    dep = on_demand_deployment()
    assert dep.name == "on-demand" and not dep.schedules
    assert "DrillRequest" in dep._parameter_openapi_schema.model_dump()["definitions"]
