"""Programme specs: the shipped one validates; every kind of mistake is named by field path and line."""

from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.outcomes import ExitCode
from livedrill.programme.spec import load_programme, quarter_bounds

DRILLS = Path(__file__).resolve().parents[2] / "drills"
SHIPPED = DRILLS / "programmes" / "core-tier.yaml"

GOOD = """\
kind: programme
name: t
quarter: 2027Q1
clusters:
  - {name: a, platform: {kind: kubevirt}}
windows:
  timezone: Asia/Shanghai
  slots:
    - {start: "2027-01-02T01:00", end: "2027-01-02T05:00"}
drill: {spec: drill.yaml}
sign_off: {roles: [change-manager]}
"""


@pytest.fixture
def write(tmp_path):
    (tmp_path / "drill.yaml").write_text((DRILLS / "lab-targeted.yaml").read_text())

    def _write(text: str) -> Path:
        path = tmp_path / "programme.yaml"
        path.write_text(text)
        return path
    return _write


def test_shipped_programme_validates():
    programme = load_programme(SHIPPED)
    assert programme.spec.kind == "programme" and programme.template.name == "banking-core-quarterly"
    assert len(programme.spec.windows.slots) == 13


def test_good_programme_validates(write):
    assert load_programme(write(GOOD)).spec.clusters[0].selector == {"tier": "core"}


@pytest.mark.parametrize("mutation, path, line, words", [
    (("name: t", "name: T_x"), "name", 2, "pattern"),
    (("quarter: 2027Q1", "quarter: 2027Q5"), "quarter", 3, "not a quarter"),
    (("platform: {kind: kubevirt}}", "platform: {kind: vmware}}"), "clusters[0].platform", 5, "tag 'vmware'"),
    (("platform: {kind: kubevirt}}", "platform: {kind: libvirt, hosts: []}}"), "clusters[0].platform.hosts", 5,
     "at least 2 items"),
    (("platform: {kind: kubevirt}}", "platform: {kind: kubevirt}, selecter: {tier: core}}"), "clusters[0].selecter", 5, "unknown field"),
    (("platform: {kind: kubevirt}}", "platform: {kind: kubevirt}, selector: {}}"), "clusters[0].selector", 5, "every VM"),
    (("platform: {kind: kubevirt}}", "platform: {kind: kubevirt}, limits: {vms_per_drill: 6}}"),
     "clusters[0].limits.vms_per_drill", 5, "less than or equal to 5"),
    (("platform: {kind: kubevirt}}", "platform: {kind: kubevirt}, exclusions: [{vm: banking/x, reason: r}]}"),
     "clusters[0].exclusions[0].approved_by", 5, "required"),
    (("timezone: Asia/Shanghai", "timezone: Mars/Olympus"), "windows.timezone", 7, "IANA"),
    (('end: "2027-01-02T05:00"', 'end: "2027-01-02T00:30"'), "windows.slots[0]", 9, "not after start"),
    (('start: "2027-01-02T01:00"', 'start: "2027-01-02T01:00+08:00"'), "windows.slots[0]", 9, "without an offset"),
    (('- {start: "2027-01-02T01:00", end: "2027-01-02T05:00"}',
      '- {start: "2027-04-03T01:00", end: "2027-04-03T05:00"}'), "<root>", 1, "not inside 2027Q1"),
    (('- {start: "2027-01-02T01:00", end: "2027-01-02T05:00"}',
      '- {start: "2027-01-02T01:00", end: "2027-01-02T05:00"}\n    - {start: "2027-01-02T04:00", end: "2027-01-02T06:00"}'),
     "windows", 6, "overlap"),
    (("drill: {spec: drill.yaml}", "drill: {spec: drill.yaml, setup_s: -1}"), "drill.setup_s", 10, "greater than or equal to 0"),
    (("drill: {spec: drill.yaml}", "drill: {spec: missing.yaml}"), "drill.spec", 10, "cannot read"),
    (("drill: {spec: drill.yaml}\n", "drill: {spec: drill.yaml}\nretest: {max_attempts: 0}\n"),
     "retest.max_attempts", 11, "greater than or equal to 1"),
    (("roles: [change-manager]", "roles: [cio, cio]"), "sign_off.roles", 11, "unique"),
    (("sign_off: {roles: [change-manager]}\n", ""), "sign_off", 1, "required"),
])
def test_each_problem_names_field_and_line(write, capsys, mutation, path, line, words):
    old, new = mutation
    assert old in GOOD
    file = write(GOOD.replace(old, new))
    assert main(["validate", str(file)]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "invalid drill programme" in err
    assert f"line {line}: {path}: " in err and words in err, err


def test_a_drain_template_is_refused_at_drill_spec(write, capsys):
    file = write(GOOD.replace("drill.yaml", "drain.yaml"))
    (file.parent / "drain.yaml").write_text((DRILLS / "lab-drain.yaml").read_text())
    assert main(["validate", str(file)]) == ExitCode.BAD_INPUT
    assert "line 10: drill.spec: " in capsys.readouterr().err


def test_validate_tells_programmes_from_drill_specs(capsys):
    assert main(["validate", str(SHIPPED), str(DRILLS / "lab-targeted.yaml")]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "OK (programme core-tier: 2027Q1, 3 cluster(s), 13 window(s)" in out and "OK (lab-targeted:" in out


@pytest.mark.parametrize("quarter, first, after", [
    ("2027Q1", "2027-01-01", "2027-04-01"),
    ("2027Q2", "2027-04-01", "2027-07-01"),
    ("2026Q4", "2026-10-01", "2027-01-01"),
])
def test_quarter_bounds(quarter, first, after):
    assert tuple(d.isoformat() for d in quarter_bounds(quarter)) == (first, after)
