"""Each VM's drill made from the programme's template: probes rendered for the VM, per-VM overrides, and a VM
that cannot be probed named as an error (by the spec model, and by `livedrill programme plan`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from livedrill.cli import main
from livedrill.outcomes import ExitCode
from livedrill.programme.drills import DrillTemplateError, drill_spec_for, undrillable
from livedrill.programme.inventory import Target
from livedrill.programme.spec import SpecError, load_programme

DRILLS = Path(__file__).resolve().parents[2] / "drills"

PROGRAMME = """\
kind: programme
name: core-tier
quarter: 2027Q1
clusters:
  - name: prod-a
    platform: {kind: kubevirt, kubeconfig: /etc/livedrill/kubeconfig, context: prod-a}
windows:
  timezone: Asia/Shanghai
  slots:
    - {start: "2027-01-02T01:00", end: "2027-01-02T05:00"}
drill: {spec: drill.yaml}
sign_off: {roles: [change-manager]}
"""


def _template() -> dict:
    """The lab's drill, its probe aimed at whichever VM the programme drills through placeholders."""
    data = yaml.safe_load((DRILLS / "lab-targeted.yaml").read_text())
    probe = data["probes"][0]
    probe["write"]["url"] = "http://gw-{vm.labels[zone]}.bank.internal/api/{vm.namespace}/{vm.name}/transfer/{txid}"
    probe["write"]["headers"] = {"X-Test-Account": "{vm.annotations[livedrill.bank/test-account]}"}
    probe["read"]["url"] = "http://gw-{vm.labels[zone]}.bank.internal/api/{vm.namespace}/{vm.name}/transfer/{txid}"
    return data


@pytest.fixture
def write(tmp_path):
    def _write(programme_extra: str = "", template: dict | None = None) -> Path:
        (tmp_path / "drill.yaml").write_text(yaml.safe_dump(template or _template(), sort_keys=False))
        path = tmp_path / "programme.yaml"
        path.write_text(PROGRAMME + programme_extra)
        return path
    return _write


def vm(name: str, **extra) -> Target:
    return Target(cluster="prod-a", vm=f"banking/{name}", node="n1", gib=4, **extra)


CORE_7 = vm("core-7", labels={"tier": "core", "zone": "sh1"}, annotations={"livedrill.bank/test-account": "acct-7"})


def test_a_template_probe_is_rendered_for_each_vm(write):
    programme = load_programme(write())
    spec = drill_spec_for(programme, programme.spec.clusters[0], CORE_7)

    assert [str(v) for v in spec.vms] == ["banking/core-7"] and spec.cluster == "prod-a"
    assert spec.platform.context == "prod-a"
    probe = spec.probes[0]
    assert str(probe.vm) == "banking/core-7"
    assert probe.write.url == "http://gw-sh1.bank.internal/api/banking/core-7/transfer/{txid}"  # {txid} stays the probe's
    assert probe.write.headers["X-Test-Account"] == "acct-7"
    assert spec.slo == programme.template.slo and spec.budgets == programme.template.budgets


@pytest.mark.parametrize("target, says", [
    (vm("core-8", labels={"zone": "sh1"}), "banking/core-8: drill template probes[0].write.headers.X-Test-Account: "
                                           "the VM has no annotation 'livedrill.bank/test-account'"),
    (vm("core-9", annotations={"livedrill.bank/test-account": "a"}), "banking/core-9: drill template probes[0].write.url: "
                                                                     "the VM has no label 'zone'"),
])
def test_a_vm_lacking_what_its_probe_asks_for_is_named(write, target, says):
    programme = load_programme(write())
    with pytest.raises(DrillTemplateError) as refused:
        drill_spec_for(programme, programme.spec.clusters[0], target)
    assert says in str(refused.value)


def test_one_vm_gets_its_own_probe_slo_and_budgets(write):
    extra = """\
vms:
  banking/core-legacy:
    probes:
      - {name: legacy-tcp, kind: tcp, host: "{vm.name}.banking.svc", port: 7000, rate_per_s: 50}
    slo: {max_downtime_ms: 900}
    budgets: {warmup_s: 30}
"""
    programme = load_programme(write(extra))
    legacy = drill_spec_for(programme, programme.spec.clusters[0], vm("core-legacy"))  # no labels: the template is not used
    assert [(p.kind, p.host, str(p.vm)) for p in legacy.probes] == [("tcp", "core-legacy.banking.svc", "banking/core-legacy")]
    assert legacy.slo.max_downtime_ms == 900 and legacy.slo.p99_latency_ms == programme.template.slo.p99_latency_ms
    assert legacy.budgets.warmup_s == 30
    other = drill_spec_for(programme, programme.spec.clusters[0], CORE_7)
    assert other.slo.max_downtime_ms == programme.template.slo.max_downtime_ms


def test_a_template_without_probes_makes_every_vm_an_error(write):
    template = _template()
    template["probes"] = []
    programme = load_programme(write(template=template))
    assert undrillable(programme, [CORE_7, vm("core-8", migratable=False, why_not="SR-IOV")]) == [
        f"banking/core-7: no probe to measure it with: the drill template {programme.template.name} has none and the "
        "programme's vms.banking/core-7.probes gives none"]  # the non-migratable VM is an exception, not a drill


def test_an_override_that_breaks_the_spec_is_named_by_vm_and_field(write):
    programme = load_programme(write("vms:\n  banking/core-7:\n    slo: {max_downtime_ms: -5}\n"))
    with pytest.raises(DrillTemplateError, match=r"banking/core-7: its drill spec is invalid at slo.max_downtime_ms"):
        drill_spec_for(programme, programme.spec.clusters[0], CORE_7)


def test_a_bad_vm_key_or_probe_is_refused_with_its_line(write):
    with pytest.raises(SpecError) as refused:
        load_programme(write("vms:\n  banking/core/7:\n    slo: {max_downtime_ms: 900}\n"))
    assert "vms.banking/core/7" in str(refused.value) and "not namespace/name" in str(refused.value)
    with pytest.raises(SpecError) as refused:
        load_programme(write("vms:\n  banking/core-7:\n    probes:\n      - {name: x, kind: tcp, port: 7000}\n"))
    assert "line 16: vms.banking/core-7.probes[0].host: Field required" in str(refused.value)


def test_programme_plan_refuses_vms_it_cannot_probe_naming_each(write, tmp_path, capsys):
    path = write()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(json.dumps({"targets": [
        {"cluster": "prod-a", "vm": "banking/core-7", "node": "n1", "gib": 4, "labels": {"tier": "core", "zone": "sh1"},
         "annotations": {"livedrill.bank/test-account": "acct-7"}},
        {"cluster": "prod-a", "vm": "banking/core-8", "node": "n1", "gib": 4, "labels": {"tier": "core"}},
    ]}))
    assert main(["programme", "plan", str(path), "--inventory", str(inventory)]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "1 VM(s) cannot be drilled" in err and "banking/core-8" in err and "banking/core-7" not in err
