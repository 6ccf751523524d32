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
