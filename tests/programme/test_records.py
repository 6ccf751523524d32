"""Deficiency records and the quarter's sign-off: sealed into the archive beside the drills, read back by
`programme status`, verified with the archive and carried into the auditor bundle."""

from __future__ import annotations

import json
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from livedrill.cli import main
from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.outcomes import ExitCode
from tests.evidence.conftest import write_drill_evidence
from tests.programme.test_programme_cli import SHIPPED

VM = "banking/banking-core-vm"  # write_drill_evidence's VM, on cluster "lab", started 2026-11-26 15:30 UTC
AS_OF = "2026-12-20T00:00+08:00"


@pytest.fixture
def setup(tmp_path):
    """A 2026Q4 programme whose cluster `lab` holds the VM, its inventory, an archive with its failed drill, a key."""
    data = yaml.safe_load(Path(SHIPPED).read_text())
    data["quarter"] = "2026Q4"
    data["clusters"] = [dict(data["clusters"][0], name="lab")]
    data["windows"].update(change_freeze=[], slots=[{"start": "2026-11-28T01:00", "end": "2026-11-28T05:00"}])
    data["drill"]["spec"] = str(Path(SHIPPED).parent.parent / "banking-core-quarterly.yaml")
    (tmp_path / "programme.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "inventory.yaml").write_text(
        f"targets:\n  - {{cluster: lab, vm: {VM}, node: node-1, gib: 2, labels: {{tier: core}}}}\n")
    signer = Signer.generate()
    (tmp_path / "key.pem").write_bytes(signer.private_key_pem())
    archive = Archive(tmp_path / "archive")
    failed = _drill(archive, signer, passed=False, after_s=0)
    return tmp_path, archive, signer, failed


def _drill(archive: Archive, signer: Signer, passed: bool, after_s: float) -> str:
    run = archive.new_run("lab-targeted")
    write_drill_evidence(run, series_bytes=64, passed=passed)
    facts = json.loads((run.path / "run.json").read_text())
    started = datetime.fromisoformat(facts["started_at"]) + timedelta(seconds=after_s)
    run.write_json("run.json", dict(facts, started_at=started.isoformat()))
    run.seal(signer)
    return run.run_id


def status(tmp, *extra) -> list[str]:
    return ["programme", "status", str(tmp / "programme.yaml"), "--inventory", str(tmp / "inventory.yaml"),
            "--archive", str(tmp / "archive"), "--at", AS_OF, *extra]


def deficiency(tmp, run_id, *extra, vm=VM) -> list[str]:
    return ["programme", "deficiency", str(tmp / "programme.yaml"), "--archive", str(tmp / "archive"), "--run", run_id,
            "--vm", vm, "--root-cause", "target node's migration network MTU 1450 dropped the copy", "--owner",
            "network-team", "--due", "2026-12-05", "--recorded-by", "ops-alice", "--signing-key", str(tmp / "key.pem"),
            *extra]


def test_a_failure_is_a_deficiency_whose_record_and_retest_close_it_and_the_quarter_is_signed_off(setup, capsys):
    tmp, archive, signer, failed = setup
    assert main(status(tmp)) == ExitCode.FAILED
    out = capsys.readouterr().out
    assert "NOT COVERED" in out.splitlines()[0] and f"FAILED           lab {VM}: 1 drill(s), 1 failed" in out
    assert "deficiency: no record of its root cause yet" in out and "SIGN-OFF         none recorded for 2026Q4" in out

    assert main(deficiency(tmp, failed)) == ExitCode.OK
    assert f"deficiency of lab {VM} (run {failed}) recorded and sealed as" in capsys.readouterr().out
    assert main(status(tmp)) == ExitCode.FAILED
    assert ("deficiency: target node's migration network MTU 1450 dropped the copy; owner network-team, due "
            f"2026-12-05, recorded by ops-alice (run {failed})") in capsys.readouterr().out

    retest = _drill(archive, signer, passed=True, after_s=7 * 86400)
    assert main(status(tmp)) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("programme core-tier 2026Q4") and ": COVERED: 1 core VM(s) in scope" in out.splitlines()[0]
    assert f"passed           lab {VM}: last 2026-12-03 23:30 after 1 failure(s), closed by retest {retest}" in out

    assert main(["programme", "sign-off", str(tmp / "programme.yaml"), "--inventory", str(tmp / "inventory.yaml"),
                 "--archive", str(tmp / "archive"), "--role", "cio", "--name", "Wang Li", "--decision", "approved",
                 "--statement", "Q4 core tier drilled; one deficiency closed by retest", "--signing-key",
                 str(tmp / "key.pem"), "--at", AS_OF]) == ExitCode.OK
    assert "cio Wang Li: approved 2026Q4 with 1/1 passed; sealed as" in capsys.readouterr().out
    main(status(tmp))
    assert "SIGN-OFF         cio Wang Li: approved at" in capsys.readouterr().out

    # Records are sealed in the chain like drills: the archive verifies with its key pinned.
    key = next((tmp / "archive" / "keys").glob("*.pub"))
    assert main(["evidence", "verify", "--archive", str(tmp / "archive"), "--trusted-key", str(key)]) == ExitCode.OK
    capsys.readouterr()
    out_file = tmp / "bundle.tar.gz"
    assert main(["evidence", "export", "--quarter", "2026Q4", "--out", str(out_file), "--archive",
                 str(tmp / "archive"), "--trusted-key", str(key)]) == ExitCode.OK
    with tarfile.open(out_file) as bundle:
        names = bundle.getnames()
        [records_name] = [n for n in names if n.endswith("/programme-records.json")]
        records = json.load(bundle.extractfile(records_name))
    assert [(r["kind"], r.get("failed_run"), r.get("role")) for r in records] == [
        ("deficiency", failed, None), ("sign-off", None, "cio")]
    # the drills' statements, not the records': a record is not a drill
    assert sorted(n.rsplit("/", 1)[-1] for n in names if n.endswith(".statement.json")) == sorted(
        f"{r}.statement.json" for r in (failed, retest))


@pytest.mark.parametrize("case, words", [
    ("passed", "is a passed drill of banking/banking-core-vm on cluster lab"),
    ("unknown", "--run: "),
    ("other-vm", "is no targeted drill of banking/other"),
    ("bad-due", "--due: 'next week' is not a date"),
    ("no-key", "absent.pem"),
    ("empty-cause", "root_cause"),
])
def test_a_deficiency_that_does_not_stand_for_a_failed_drill_is_refused_and_nothing_is_sealed(setup, capsys, case, words):
    tmp, archive, signer, failed = setup
    run_id = _drill(archive, signer, passed=True, after_s=60) if case == "passed" else failed
    args = {"unknown": deficiency(tmp, "20261126T000000Z-nothing-000000"),
            "other-vm": deficiency(tmp, run_id, vm="banking/other"),
            "bad-due": [a if a != "2026-12-05" else "next week" for a in deficiency(tmp, run_id)],
            "no-key": [a if a != str(tmp / "key.pem") else str(tmp / "absent.pem") for a in deficiency(tmp, run_id)],
            "empty-cause": [a if not a.startswith("target node") else "" for a in deficiency(tmp, run_id)],
            }.get(case, deficiency(tmp, run_id))
    before = sorted(p.name for p in (tmp / "archive").iterdir())
    assert main(args) == ExitCode.BAD_INPUT
    assert words in capsys.readouterr().err
    assert sorted(p.name for p in (tmp / "archive").iterdir()) == before


def test_a_sign_off_by_a_role_the_programme_does_not_name_is_refused(setup, capsys):
    tmp, *_ = setup
    assert main(["programme", "sign-off", str(tmp / "programme.yaml"), "--inventory", str(tmp / "inventory.yaml"),
                 "--archive", str(tmp / "archive"), "--role", "intern", "--name", "X", "--decision", "approved",
                 "--statement", "ok", "--signing-key", str(tmp / "key.pem")]) == ExitCode.BAD_INPUT
    assert "--role 'intern' is not one of the programme's sign_off.roles" in capsys.readouterr().err
