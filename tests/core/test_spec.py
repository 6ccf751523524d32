"""Drill specs: the shipped ones load, and every kind of mistake is named by field path and line."""

from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.spec import SpecError, VMRef, load_spec, migration_deadline_s, parse_spec

DRILLS = sorted(Path(__file__).resolve().parents[2].joinpath("drills").glob("*.yaml"))

GOOD = """\
name: t
cluster: lab
platform: {kind: kubevirt, kubeconfig: /tmp/k}
vms: [{namespace: banking, name: banking-core-vm}]
mode: {kind: targeted, target_node: node-2}
slo: {max_downtime_ms: 100, p99_latency_ms: 5}
"""


@pytest.mark.parametrize("path", DRILLS, ids=lambda p: p.name)
def test_shipped_drills_validate(path):
    spec = load_spec(path)
    assert spec.vms


def test_shipped_drills_include_the_two_the_foundation_promises():
    assert {"lab-targeted.yaml", "banking-core-quarterly.yaml"} <= {p.name for p in DRILLS}


@pytest.mark.parametrize("mutation, path, line, words", [
    (("name: t", "name: T_x"), "name", 1, "pattern"),
    (("kubeconfig: /tmp/k}", "kubeconfig: /tmp/k, kubecfg: x}"), "platform.kubecfg", 3, "unknown field"),
    (("kind: targeted, target_node: node-2", "kind: sideways"), "mode", 5, "tag"),
    (("p99_latency_ms: 5", "p99_latency_ms: -5"), "slo.p99_latency_ms", 6, "greater than 0"),
    (("name: banking-core-vm", "name: Banking_VM"), "vms[0].name", 4, "DNS-1123"),
    (("slo: {max_downtime_ms: 100, p99_latency_ms: 5}", "slo: {max_downtime_ms: 100}"), "slo.p99_latency_ms", 6, "required"),
])
def test_each_problem_names_field_and_line(mutation, path, line, words):
    text = GOOD.replace(*mutation)
    assert text != GOOD
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    problems = {p.path: p for p in err.value.problems}
    assert path in problems, problems
    assert problems[path].line == line
    assert words.lower() in problems[path].message.lower()


def test_probe_for_a_vm_outside_the_drill_is_refused():
    text = GOOD + """probes:
  - {name: p, vm: banking/other, kind: http, request: {url: "http://127.0.0.1:1/"}}
"""
    with pytest.raises(SpecError, match="banking/other"):
        parse_spec(text)


def test_a_probe_names_its_vm_as_text_parsed_once_into_the_drill_s_vmref():
    spec = parse_spec(GOOD + """probes:
  - {name: p, vm: banking/banking-core-vm, kind: http, request: {url: "http://127.0.0.1:1/"}}
""")
    assert spec.probes[0].vm == spec.vms[0] == VMRef(namespace="banking", name="banking-core-vm")
    assert {spec.vms[0]: "keys a dict"}[spec.probes[0].vm]
    assert spec.model_dump(mode="json")["probes"][0]["vm"] == "banking/banking-core-vm"  # written as it was read


def test_a_malformed_probe_vm_is_named_by_field_and_line():
    text = GOOD + """probes:
  - {name: p, vm: banking/Core_VM, kind: http, request: {url: "http://127.0.0.1:1/"}}
"""
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    [problem] = [p for p in err.value.problems if p.path == "probes[0].vm"]
    assert problem.line == 8 and "Core_VM" in problem.message and "DNS-1123" in problem.message


@pytest.mark.parametrize("text, expected", [
    ("banking/core", VMRef(namespace="banking", name="core")),
    ("core", VMRef(namespace="default", name="core")),
])
def test_vmref_parse(text, expected):
    assert VMRef.parse(text) == expected
    assert str(VMRef.parse(text)) == f"{expected.namespace}/{expected.name}"


@pytest.mark.parametrize("text, words", [
    ("a/b/c", "more than one '/'"),
    ("banking/", "DNS-1123"),
    ("Banking/core", "DNS-1123"),
])
def test_vmref_parse_names_the_field_it_read(text, words):
    with pytest.raises(ValueError) as err:
        VMRef.parse(text, field="probes[0].vm")
    assert str(err.value).startswith(f"probes[0].vm: {text!r}") and words in str(err.value)


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec("name: [unclosed")
    with pytest.raises(SpecError, match="mapping"):
        parse_spec("- a list")


def test_validate_cli_reports_every_problem_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("name: t", "name: T_x").replace("p99_latency_ms: 5", "p99_latency_ms: 0"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 1: name:" in err and "line 6: slo.p99_latency_ms:" in err


def test_validate_cli_accepts_good_spec(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["validate", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("per_gib, floor, gib, expected", [
    (150, 30, 0.25, 300),   # KubeVirt counts at least 2 GiB
    (150, 30, 8, 1200),
    (800, 30, 16, 12800),
    (1, 60, 4, 60),          # the floor wins for a tiny budget
    (100, 0.5, 3.5, 350),    # fractional GiB scale linearly above 2 (libvirt counts copied disks too)
])
def test_migration_deadline_scales_with_memory(per_gib, floor, gib, expected):
    spec = parse_spec(GOOD + f"budgets: {{migration_timeout_per_gib_s: {per_gib}, min_migration_timeout_s: {floor}}}\n")
    assert migration_deadline_s(spec.budgets, gib) == expected
