"""Verification: the pure judgements (table-driven), quarters, and checking a run with auditor tools only."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from livedrill.evidence.keys import Signer
from livedrill.evidence.manifest import ChainEntry, ChainLink, FileEntry, Manifest, in_quarter, parse_quarter
from livedrill.evidence.verify import FoundFile, Problem, format_problems, hash_problem, link_problems, listing_problems, verify_archive

from .conftest import sealed_archive

A, B = "a" * 64, "b" * 64
LISTING_CASES = [
    # (description, manifest files, found on disk, expected problem codes, paths left to hash)
    ("all present", [FileEntry(path="x", sha256=A, size=3)], {"x": FoundFile(True, 3)}, [], ["x"]),
    ("missing", [FileEntry(path="x", sha256=A, size=3)], {}, ["missing-file"], []),
    ("truncated", [FileEntry(path="x", sha256=A, size=3)], {"x": FoundFile(True, 1)}, ["size-mismatch"], []),
    ("grown", [FileEntry(path="x", sha256=A, size=3)], {"x": FoundFile(True, 9)}, ["size-mismatch"], []),
    ("symlink", [FileEntry(path="x", sha256=A, size=3)], {"x": FoundFile(False, 3)}, ["not-a-file"], []),
    ("added", [], {"y": FoundFile(True, 5)}, ["unexpected-file"], []),
    ("marker left on sealed run", [], {"UNSEALED": FoundFile(True, 10)}, ["unsealed-marker"], []),
]


@pytest.mark.parametrize("files,found,codes,to_hash", [c[1:] for c in LISTING_CASES], ids=[c[0] for c in LISTING_CASES])
def test_listing_problems(files, found, codes, to_hash) -> None:
    problems, hash_these = listing_problems("r", files, found)
    assert [p.code for p in problems] == codes
    assert [e.path for e in hash_these] == to_hash


def test_size_change_is_named_truncated_or_grown() -> None:
    entry = FileEntry(path="x", sha256=A, size=3)
    assert listing_problems("r", [entry], {"x": FoundFile(True, 1)})[0][0].message.startswith("truncated")
    assert listing_problems("r", [entry], {"x": FoundFile(True, 4)})[0][0].message.startswith("grown")


@pytest.mark.parametrize("actual,code", [(A, None), (B, "hash-mismatch")])
def test_hash_problem(actual: str, code: str | None) -> None:
    problem = hash_problem("r", FileEntry(path="x", sha256=A, size=1), actual)
    assert (problem.code if problem else None) == code
    if problem:
        assert (problem.expected, problem.actual) == (A, B)


T = datetime(2026, 11, 26, tzinfo=timezone.utc)
E1 = ChainEntry(sequence=1, run_id="r1", manifest_sha256=A, sealed_at=T)
E2 = ChainEntry(sequence=2, run_id="r2", manifest_sha256=B, sealed_at=T)


def _manifest(run_id: str, sequence: int, previous: ChainLink | None) -> Manifest:
    return Manifest(run_id=run_id, sealed_at=T, sequence=sequence, previous=previous, key_id="k", files=[])


LINK_CASES = [
    ("first run intact", 1, E1, None, _manifest("r1", 1, None), A, []),
    ("second run intact", 2, E2, E1, _manifest("r2", 2, ChainLink(run_id="r1", manifest_sha256=A)), B, []),
    ("manifest replaced", 2, E2, E1, _manifest("r2", 2, ChainLink(run_id="r1", manifest_sha256=A)), "c" * 64, ["manifest-changed"]),
    ("previous run edited", 2, E2, E1, _manifest("r2", 2, ChainLink(run_id="r1", manifest_sha256="d" * 64)), B, ["chain-break"]),
    ("previous run removed", 2, E2, E1, _manifest("r2", 2, ChainLink(run_id="r0", manifest_sha256=A)), B, ["missing-run"]),
    ("moved up in the chain", 1, E2.model_copy(update={"sequence": 1}), None, _manifest("r2", 2, ChainLink(run_id="r1", manifest_sha256=A)), B, ["chain-order", "missing-run"]),
    ("manifest of another run", 2, E2, E1, _manifest("r9", 2, ChainLink(run_id="r1", manifest_sha256=A)), B, ["run-id-mismatch"]),
    ("index sequence edited", 2, E2.model_copy(update={"sequence": 5}), E1, _manifest("r2", 2, ChainLink(run_id="r1", manifest_sha256=A)), B, ["chain-order"]),
]


@pytest.mark.parametrize("position,entry,previous,manifest,sha,codes", [c[1:] for c in LINK_CASES], ids=[c[0] for c in LINK_CASES])
def test_link_problems(position, entry, previous, manifest, sha, codes) -> None:
    chained = frozenset({"r1", "r2"} - ({"r1"} if position == 1 and entry.run_id == "r2" else set()))
    assert [p.code for p in link_problems(position, entry, previous, manifest, sha, chained)] == codes


@pytest.mark.parametrize(
    "run_id,quarter,inside",
    [
        ("20261001T000000Z-lab-abcdef", "2026Q4", True),
        ("20261231T235959Z-lab-abcdef", "2026Q4", True),
        ("20260930T235959Z-lab-abcdef", "2026Q4", False),
        ("20250115T000000Z-lab-abcdef", "2025Q1", True),
        ("not-a-run", "2026Q4", False),
    ],
)
def test_in_quarter(run_id: str, quarter: str, inside: bool) -> None:
    assert in_quarter(run_id, quarter) is inside


@pytest.mark.parametrize("bad", ["2026Q5", "26Q4", "2026-Q4", "Q4"])
def test_bad_quarter_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="quarter"):
        parse_quarter(bad)


def test_format_problems_one_line_each() -> None:
    problems = [
        Problem(code="missing-run", run_id="r1", file="chain.jsonl", message="gone", expected="directory r1/"),
        Problem(code="key-id-mismatch", file="keys/x.pub", message="replaced", expected="x", actual="y"),
    ]
    assert format_problems(problems).splitlines() == [
        "[missing-run] run r1: chain.jsonl: gone (expected directory r1/)",
        "[key-id-mismatch] keys/x.pub: replaced (expected x, actual y)",
    ]


def test_quarter_checks_contents_of_that_quarter_and_the_chain_of_all(tmp_path: Path, signer: Signer) -> None:
    root = tmp_path / "a"
    # One drill per quarter: 2026Q2, Q3, Q4.
    ids = sealed_archive(root, signer, runs=3, start=datetime(2026, 5, 1, tzinfo=timezone.utc), step=(datetime(2026, 8, 1, tzinfo=timezone.utc) - datetime(2026, 5, 1, tzinfo=timezone.utc)))
    assert [in_quarter(i, "2026Q4") for i in ids] == [False, False, True]
    assert verify_archive(root, quarter="2026Q4") == []
    (root / ids[0] / "verdict.json").write_text("{}")
    assert verify_archive(root, quarter="2026Q4") == []  # Q2 contents are not re-hashed for a Q4 audit
    assert [p.code for p in verify_archive(root, quarter="2026Q2")] == ["size-mismatch"]
    (root / ids[0] / "MANIFEST.sig").write_bytes(bytes(64))
    assert [p.code for p in verify_archive(root, quarter="2026Q4")] == ["bad-signature"]  # the chain is checked whole
    assert [p.code for p in verify_archive(root, quarter="2025Q4")][-1] == "no-runs-in-quarter"


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("sha256sum") and shutil.which("jq")), reason="needs openssl, sha256sum and jq")
def test_a_run_verifies_with_openssl_and_sha256sum_alone(tmp_path: Path, signer: Signer) -> None:
    """What an auditor without livedrill runs: the signature with openssl, the files with sha256sum."""
    root = tmp_path / "a"
    [first, second] = sealed_archive(root, signer, runs=2)
    run = root / second
    key = root / "keys" / f"{signer.key_id}.pub"
    ok = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin", "-in", str(run / "MANIFEST.json"), "-sigfile", str(run / "MANIFEST.sig")], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout
    sums = subprocess.run(["jq", "-r", '.files[] | "\\(.sha256)  \\(.path)"', str(run / "MANIFEST.json")], capture_output=True, text=True, check=True, timeout=30).stdout
    check = subprocess.run(["sha256sum", "--strict", "-c", "-"], input=sums, cwd=run, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    prev = subprocess.run(["sha256sum", str(root / first / "MANIFEST.json")], capture_output=True, text=True, check=True, timeout=30).stdout.split()[0]
    linked = subprocess.run(["jq", "-r", ".previous.manifest_sha256", str(run / "MANIFEST.json")], capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert prev == linked

    (run / "MANIFEST.json").write_bytes((run / "MANIFEST.json").read_bytes().replace(b'"sequence": 2', b'"sequence": 3'))
    bad = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin", "-in", str(run / "MANIFEST.json"), "-sigfile", str(run / "MANIFEST.sig")], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
