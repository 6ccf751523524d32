"""`livedrill evidence export` as an auditor's operator runs it: 0 bundle written, 1 the archive does not
verify, 2 the request is wrong (no such quarter, archive or key) and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.evidence.keys import Signer

from .conftest import sealed_archive

QUARTER = "2026Q4"  # sealed_archive's drills start on 2026-11-26


@pytest.fixture
def root(tmp_path: Path, signer: Signer) -> Path:
    root = tmp_path / "archive"
    sealed_archive(root, signer, runs=2)
    return root


def _export(root: Path, out: Path, *extra: str, quarter: str = QUARTER) -> int:
    return main(["evidence", "export", "--quarter", quarter, "--out", str(out), "--archive", str(root), *extra])


def test_a_verified_quarter_exits_0_with_its_bundle(root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bundle.tar.gz"
    assert _export(root, out) == 0
    assert out.is_file() and "2 drill(s) of 2026Q4" in capsys.readouterr().out


@pytest.mark.parametrize("case, words", [
    ("not-a-quarter", "not a quarter"),
    ("quarter-without-drills", "no sealed run started in 2025Q1"),
    ("no-such-archive", "archive directory does not exist"),
    ("no-such-key", "cannot read signing key"),
])
def test_bad_input_exits_2_and_writes_nothing(root: Path, tmp_path: Path, capsys, case: str, words: str) -> None:
    out = tmp_path / "bundle.tar.gz"
    args = {
        "not-a-quarter": dict(root=root, out=out, quarter="2026Q9"),
        "quarter-without-drills": dict(root=root, out=out, quarter="2025Q1"),
        "no-such-archive": dict(root=tmp_path / "nowhere", out=out),
        "no-such-key": dict(root=root, out=out),
    }[case]
    extra = ("--signing-key", str(tmp_path / "absent.pem")) if case == "no-such-key" else ()
    assert _export(args["root"], args["out"], *extra, quarter=args.get("quarter", QUARTER)) == 2
    assert words in capsys.readouterr().err
    assert not args["out"].exists()


def test_an_archive_that_does_not_verify_exits_1(root: Path, tmp_path: Path, capsys) -> None:
    run = next(p for p in sorted(root.iterdir()) if (p / "verdict.json").exists())
    (run / "verdict.json").write_text("{}")
    out = tmp_path / "bundle.tar.gz"
    assert _export(root, out) == 1
    assert "does not verify" in capsys.readouterr().err and not out.exists()
