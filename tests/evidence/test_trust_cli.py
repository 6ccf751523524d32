"""`livedrill evidence verify` as an auditor runs it against an insider: an archive copied, one verdict
edited and the whole copy re-sealed oldest-first with a fresh key through livedrill's own Archive API,
and an empty folder passed by mistake. Neither may read as verified."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.evidence.manifest import CHAIN_NAME, KEYS_DIR, MANIFEST_NAME, SIGNATURE_NAME, UNSEALED_NAME
from livedrill.outcomes import ExitCode

from .conftest import sealed_archive


def _verify(*args: str) -> int:
    return main(["evidence", "verify", *args])


def insider_reseal(original: Path, copy: Path, mallory: Signer) -> None:
    """What an insider with write access does: edit a verdict, strip every seal, re-seal oldest-first."""
    shutil.copytree(original, copy)
    runs = Archive(copy).runs()
    verdict = runs[1].path / "verdict.json"
    doc = json.loads(verdict.read_text())
    doc["observed_downtime_ms"] = 12.0
    verdict.write_text(json.dumps(doc))
    for run in runs:
        (run.path / MANIFEST_NAME).unlink()
        (run.path / SIGNATURE_NAME).unlink()
        (run.path / UNSEALED_NAME).write_text("re-opened\n")
    (copy / CHAIN_NAME).unlink()
    shutil.rmtree(copy / KEYS_DIR)
    for run in Archive(copy).runs():
        run.seal(mallory)


@pytest.fixture
def archives(tmp_path: Path, signer: Signer) -> tuple[Path, Path, Signer]:
    original = tmp_path / "archive"
    sealed_archive(original, signer, runs=3)
    mallory = Signer.generate()
    insider_reseal(original, tmp_path / "copy", mallory)
    return original, tmp_path / "copy", mallory


def _pub(root: Path, signer: Signer) -> str:
    return str(root / KEYS_DIR / f"{signer.key_id}.pub")


def test_an_empty_folder_is_not_verified(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "wrong-folder"
    empty.mkdir()
    assert _verify("--archive", str(empty)) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "NOT VERIFIED" in err and str(empty) in err and "no sealed run" in err


def test_insider_reseal_without_trust_is_integrity_only(archives, capsys) -> None:
    _, copy, _ = archives
    assert _verify("--archive", str(copy)) == ExitCode.INTEGRITY_ONLY
    out = capsys.readouterr().out
    assert "origin not established" in out and "verified (hashes" not in out


def test_insider_reseal_with_the_pinned_key_is_not_verified(archives, signer: Signer, capsys) -> None:
    original, copy, mallory = archives
    assert _verify("--archive", str(copy), "--trusted-key", _pub(original, signer)) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "NOT VERIFIED" in err and "untrusted-key" in err
    assert mallory.key_id in err and signer.key_id in err


def test_the_original_with_its_pinned_key_is_fully_verified(archives, signer: Signer, capsys) -> None:
    original, _, _ = archives
    assert _verify("--archive", str(original), "--trusted-key", _pub(original, signer)) == ExitCode.OK
    out = capsys.readouterr().out
    assert "verified" in out and signer.key_id in out and "not established" not in out


def test_a_quarters_answer_lists_each_run_with_its_place_signer_and_result(tmp_path: Path, signer: Signer, capsys) -> None:
    from datetime import datetime, timedelta, timezone

    root = tmp_path / "archive"
    # Two runs at the end of 2026Q3 and three in 2026Q4; the second Q4 run's verdict edited after sealing.
    ids = sealed_archive(root, signer, runs=5, start=datetime(2026, 9, 30, 20, tzinfo=timezone.utc), step=timedelta(hours=2))
    (root / ids[3] / "verdict.json").write_text('{"outcome": "passed"}\n')
    stray = Archive(root).new_run("lab-targeted", now=datetime(2026, 11, 1, tzinfo=timezone.utc))

    assert _verify("--archive", str(root), "--quarter", "2026Q4", "--trusted-key", _pub(root, signer), "--json") == ExitCode.FAILED
    report = json.loads(capsys.readouterr().out)
    runs = {r["run_id"]: r for r in report["runs"]}
    assert [(runs[i]["sequence"], runs[i]["files_checked"], runs[i]["result"]) for i in ids] == [
        (1, False, "verified"), (2, False, "verified"), (3, True, "verified"), (4, True, "failed"), (5, True, "verified")]
    assert all(runs[i]["key_id"] == signer.key_id for i in ids)
    assert (runs[stray.run_id]["sequence"], runs[stray.run_id]["result"]) == (None, "failed")  # unsealed: listed, not dropped

    _verify("--archive", str(root), "--quarter", "2026Q4", "--trusted-key", _pub(root, signer))
    lines = capsys.readouterr().out.splitlines()
    assert any(ids[3] in line and "FAILED" in line for line in lines)
    assert any(ids[2] in line and line.strip().startswith("#3") and "verified" in line for line in lines)
    assert not any(ids[0] in line for line in lines)  # outside the quarter and intact: counted, not listed
