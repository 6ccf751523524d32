"""A new platform is one package plus its registration: a platform defined in this file drives a targeted
drill through the real Prefect flow, with nothing in livedrill naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from flows.drill import drill
from livedrill.evidence.verify import verify_run
from livedrill.outcomes import CheckResult, CheckStatus, CompensationState, DrillOutcome
from livedrill.platforms import registry
from livedrill.platforms.base import (AdapterContext, Capabilities, MigrationHandle, MigrationObservation, MigrationPhase,
                                      RegisterCompensation, VMPreflight, VMState)
from livedrill.spec import DrillSpec, PlatformConfig, SpecError, VMRef, parse_spec

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


class PretendPlatform(PlatformConfig):
    kind: Literal["pretend"]
    nodes: list[str]


class PretendAdapter:
    """Hosts in a dict: a migration lands on its target after two observations."""

    where: dict[str, str] = {}  # vm -> node, shared by every adapter the drill's tasks open
    observed: dict[str, int] = {}
    poll_interval_s = 0.01

    def __init__(self, config: PretendPlatform, context: AdapterContext):
        self.config = config

    def capabilities(self) -> Capabilities:
        return Capabilities(kind="pretend")

    def versions(self) -> dict[str, str]:
        return {"pretend": "1"}

    def describe_vm(self, vm: VMRef) -> VMState:
        return VMState(ref=vm, node=self.where.get(str(vm)), running=str(vm) in self.where, memory_gib=1.0)

    def preflight(self, spec: DrillSpec, vm: VMRef) -> VMPreflight:
        running = str(vm) in self.where
        check = CheckResult(name="pretend-vm-running", status=CheckStatus.PASS if running else CheckStatus.FAIL,
                            subject=f"vm {vm}", message="running" if running else "not running")
        return VMPreflight(checks=[check], before=self.describe_vm(vm) if running else None)

    def start_migration(self, vm: VMRef, target: str | None, register: RegisterCompensation) -> MigrationHandle:
        source = self.where[str(vm)]
        target = target or next(n for n in self.config.nodes if n != source)
        register("cancel-migration", {"vm": str(vm), "source": source})
        self.observed[str(vm)] = 0
        return MigrationHandle(vm=vm, platform_id=f"{vm.name}:{source}->{target}", source=source, target=target)

    def observe_migration(self, handle: MigrationHandle) -> MigrationObservation:
        self.observed[str(handle.vm)] += 1
        if self.observed[str(handle.vm)] < 3:
            return MigrationObservation(phase="Running", terminal=False, succeeded=False, source=handle.source,
                                        target=handle.target)
        self.where[str(handle.vm)] = handle.target or ""
        return MigrationObservation(phase=MigrationPhase.SUCCEEDED, terminal=True, succeeded=True,
                                    source=handle.source, target=handle.target)

    def cancel_migration(self, handle: MigrationHandle, timeout_s: float) -> str:
        return self.cancel({"vm": str(handle.vm), "source": handle.source})

    def cancel(self, params: dict[str, Any]) -> str:
        self.where[params["vm"]] = params["source"]
        return f"back on {params['source']}"

    def postcheck(self, handle: MigrationHandle, before: VMState) -> list[CheckResult]:
        now = self.where.get(str(handle.vm))
        ok = now == handle.target and now != before.node
        return [CheckResult(name="pretend-vm-on-target", status=CheckStatus.PASS if ok else CheckStatus.FAIL,
                            subject=f"vm {handle.vm}", message=f"on {now}, was on {before.node}")]

    def undo_actions(self, abort_timeout_s):
        return {"cancel-migration": self.cancel}

    def close(self) -> None:
        pass


SPEC = """
name: pretend-drill
cluster: pretend-1
platform: {kind: pretend, nodes: [n1, n2]}
vms: [{namespace: apps, name: core}]
mode: {kind: targeted, target_node: n2}
slo: {max_downtime_ms: 500, p99_latency_ms: 250}
budgets: {warmup_s: 0, cooldown_s: 0}
"""


@pytest.fixture
def pretend(tmp_path):
    registry.register(registry.PlatformKind(kind="pretend", config=PretendPlatform, open=PretendAdapter))
    PretendAdapter.where.clear()
    PretendAdapter.where["apps/core"] = "n1"
    try:
        yield tmp_path
    finally:
        registry.unregister("pretend")


def _spec(tmp_path: Path) -> tuple[DrillSpec, str]:
    data = yaml.safe_load(SPEC)
    data["evidence"] = {"dir": str(tmp_path / "evidence"), "signing_key": str(tmp_path / "keys" / "signing.pem"),
                        "generate_lab_key": True}
    text = yaml.safe_dump(data, sort_keys=False)
    return parse_spec(text), text


def test_a_platform_registered_by_a_test_drives_a_targeted_drill_through_the_flow(pretend):
    spec, text = _spec(pretend)
    verdict = drill(spec, text)

    assert verdict.outcome is DrillOutcome.PASSED, verdict.reasons
    assert PretendAdapter.where["apps/core"] == "n2"
    run_dir = Path(verdict.evidence_dir)
    assert verify_run(run_dir) == []
    post = {c["name"]: c["status"] for c in json.loads((run_dir / "postcheck.json").read_text())}
    assert post == {"pretend-vm-on-target": "pass"}
    pre = {c["name"] for c in json.loads((run_dir / "preflight.json").read_text())["checks"]}
    assert "pretend-vm-running" in pre
    comps = json.loads((run_dir / "compensations.json").read_text())
    assert [c["state"] for c in comps] == [CompensationState.NOT_NEEDED.value]


def test_the_new_platforms_spec_section_is_validated_with_line_numbers(pretend):
    with pytest.raises(SpecError) as caught:
        parse_spec(SPEC.replace("nodes: [n1, n2]", "nodez: [n1, n2]"))
    problems = {(p.path, p.line) for p in caught.value.problems}
    assert ("platform.nodez", 4) in problems and ("platform.nodes", 4) in problems


def test_a_drain_on_a_platform_without_one_is_refused_before_anything_changes(pretend):
    spec, text = _spec(pretend)
    spec = spec.model_copy(update={"mode": parse_spec(SPEC.replace("mode: {kind: targeted, target_node: n2}",
                                                                   "mode: {kind: drain, node: n1}")).mode})
    verdict = drill(spec, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))

    assert verdict.outcome is DrillOutcome.FAILED
    assert any("platform pretend cannot drain a node" in r for r in verdict.reasons), verdict.reasons
    assert PretendAdapter.where["apps/core"] == "n1"
