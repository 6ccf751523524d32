"""Tamper corpus: every way of changing a sealed archive is detected, with the run, the file and what changed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.evidence.manifest import Manifest, sha256_bytes, sha256_file
from livedrill.evidence.verify import Problem, chain_head, format_problems, verify_archive, verify_run

from .conftest import sealed_archive, write_drill_evidence


@dataclass
class Sealed:
    root: Path
    ids: list[str]
    signer: Signer

    def run(self, i: int) -> Path:
        return self.root / self.ids[i]


@pytest.fixture
def sealed(tmp_path: Path, signer: Signer) -> Sealed:
    root = tmp_path / "archive"
    ids = sealed_archive(root, signer, runs=4)
    assert verify_archive(root) == [], "the untouched archive must verify clean, or the corpus proves nothing"
    return Sealed(root, ids, signer)


def _rewrite_chain(root: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path = root / "chain.jsonl"
    path.write_text("".join(line + "\n" for line in edit(path.read_text().splitlines())))


def _resign(run_dir: Path, signer: Signer, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((run_dir / "MANIFEST.json").read_bytes())
    edit(manifest)
    data = Manifest.model_validate(manifest).to_bytes()
    (run_dir / "MANIFEST.json").write_bytes(data)
    (run_dir / "MANIFEST.sig").write_bytes(signer.sign(data))


def byte_flip(s: Sealed) -> None:
    path = s.run(1) / "objects/vmi-before.json"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))


def truncation(s: Sealed) -> None:
    path = s.run(1) / "probe/ledger.series"
    path.write_bytes(path.read_bytes()[:1000])


def removed_file(s: Sealed) -> None:
    (s.run(1) / "verdict.json").unlink()


def added_file(s: Sealed) -> None:
    (s.run(1) / "objects/forged-approval.json").write_text('{"approved_by": "nobody"}')


def replaced_by_symlink(s: Sealed) -> None:
    target = s.run(1) / "verdict.json"
    target.unlink()
    target.symlink_to(s.run(0) / "verdict.json")


def removed_run(s: Sealed) -> None:
    shutil.rmtree(s.run(1))


def removed_run_and_its_chain_entry(s: Sealed) -> None:
    shutil.rmtree(s.run(1))
    _rewrite_chain(s.root, lambda lines: [line for line in lines if s.ids[1] not in line])


def reordered_chain(s: Sealed) -> None:
    _rewrite_chain(s.root, lambda lines: [lines[0], lines[2], lines[1], lines[3]])


def swapped_run_directories(s: Sealed) -> None:
    tmp = s.root / "swap"
    s.run(1).rename(tmp)
    s.run(2).rename(s.run(1))
    tmp.rename(s.run(2))


def resigned_with_another_key(s: Sealed) -> None:
    """Edit a verdict, fix its hash in the manifest and sign with a key of one's own (same key id claimed)."""
    verdict = s.run(1) / "verdict.json"
    verdict.write_text(verdict.read_text().replace("PASSED", "FAILED"))
    mallory = Signer.generate()
    _resign(s.run(1), mallory, lambda m: [f.update(sha256=sha256_file(verdict), size=verdict.stat().st_size) for f in m["files"] if f["path"] == "verdict.json"])


def resigned_and_key_published(s: Sealed) -> None:
    """As above, but the manifest names the new key and its public key is added to keys/."""
    verdict = s.run(1) / "verdict.json"
    verdict.write_text(verdict.read_text().replace("PASSED", "FAILED"))
    mallory = Signer.generate()
    (s.root / "keys" / f"{mallory.key_id}.pub").write_bytes(mallory.public_key_pem())

    def edit(m: dict) -> None:
        m["key_id"] = mallory.key_id
        for f in m["files"]:
            if f["path"] == "verdict.json":
                f.update(sha256=sha256_file(verdict), size=verdict.stat().st_size)

    _resign(s.run(1), mallory, edit)


def resigned_and_chain_index_updated(s: Sealed) -> None:
    """As above, and the chain index entry updated to the new manifest hash: the next run's signed link breaks."""
    resigned_and_key_published(s)
    new_hash = sha256_file(s.run(1) / "MANIFEST.json")

    def edit(lines: list[str]) -> list[str]:
        entry = json.loads(lines[1])
        entry["manifest_sha256"] = new_hash
        return [lines[0], json.dumps(entry, sort_keys=True, separators=(",", ":")), *lines[2:]]

    _rewrite_chain(s.root, edit)


def edited_manifest(s: Sealed) -> None:
    path = s.run(1) / "MANIFEST.json"
    path.write_text(path.read_text().replace('"sequence": 2', '"sequence": 7'))


def corrupted_manifest(s: Sealed) -> None:
    path = s.run(1) / "MANIFEST.json"
    path.write_bytes(path.read_bytes()[:-40])


def removed_signature(s: Sealed) -> None:
    (s.run(1) / "MANIFEST.sig").unlink()


def replaced_public_key(s: Sealed) -> None:
    (s.root / "keys" / f"{s.signer.key_id}.pub").write_bytes(Signer.generate().public_key_pem())


def unsealed_run(s: Sealed) -> None:
    run = Archive(s.root).new_run("lab-targeted")
    write_drill_evidence(run, series_bytes=100)


def unsealed_marker_removed(s: Sealed) -> None:
    run = Archive(s.root).new_run("lab-targeted")
    write_drill_evidence(run, series_bytes=100)
    (run.path / "UNSEALED").unlink()


def unsealed_marker_added_to_sealed_run(s: Sealed) -> None:
    (s.run(1) / "UNSEALED").write_text("pretend this was never sealed\n")


def sealed_run_copied_in(s: Sealed) -> None:
    other = s.root.parent / "other"
    [run_id] = sealed_archive(other, s.signer, runs=1)
    shutil.copytree(other / run_id, s.root / run_id)


def garbage_in_chain(s: Sealed) -> None:
    _rewrite_chain(s.root, lambda lines: [lines[0], "{not json", *lines[1:]])


# (tamper, expected problems as (code, run index or None, file or None)) — each must appear.
CORPUS: list[tuple[Callable[[Sealed], None], list[tuple[str, int | None, str | None]]]] = [
    (byte_flip, [("hash-mismatch", 1, "objects/vmi-before.json")]),
    (truncation, [("size-mismatch", 1, "probe/ledger.series")]),
    (removed_file, [("missing-file", 1, "verdict.json")]),
    (added_file, [("unexpected-file", 1, "objects/forged-approval.json")]),
    (replaced_by_symlink, [("not-a-file", 1, "verdict.json")]),
    (removed_run, [("missing-run", 1, "chain.jsonl")]),
    (removed_run_and_its_chain_entry, [("missing-run", 2, "MANIFEST.json"), ("chain-order", 2, "MANIFEST.json")]),
    (reordered_chain, [("chain-order", 2, "chain.jsonl"), ("chain-order", 1, "chain.jsonl"), ("chain-break", 2, "MANIFEST.json"), ("chain-break", 1, "MANIFEST.json")]),
    (swapped_run_directories, [("run-id-mismatch", 1, "MANIFEST.json"), ("run-id-mismatch", 2, "MANIFEST.json")]),
    (resigned_with_another_key, [("bad-signature", 1, "MANIFEST.sig"), ("manifest-changed", 1, "MANIFEST.json")]),
    (resigned_and_key_published, [("manifest-changed", 1, "MANIFEST.json")]),
    (resigned_and_chain_index_updated, [("chain-break", 2, "MANIFEST.json")]),
    (edited_manifest, [("bad-signature", 1, "MANIFEST.sig"), ("manifest-changed", 1, "MANIFEST.json")]),
    (corrupted_manifest, [("manifest-invalid", 1, "MANIFEST.json"), ("bad-signature", 1, "MANIFEST.sig")]),
    (removed_signature, [("missing-signature", 1, "MANIFEST.sig")]),
    (replaced_public_key, [("key-id-mismatch", None, None), ("unknown-key", 0, "MANIFEST.sig"), ("unknown-key", 3, "MANIFEST.sig")]),
    (unsealed_run, [("unsealed-run", None, "UNSEALED")]),
    (unsealed_marker_removed, [("missing-manifest", None, "MANIFEST.json")]),
    (unsealed_marker_added_to_sealed_run, [("unsealed-marker", 1, "UNSEALED")]),
    (sealed_run_copied_in, [("run-not-in-chain", None, "chain.jsonl")]),
    (garbage_in_chain, [("chain-invalid", None, "chain.jsonl:2")]),
]


def _matches(problem: Problem, code: str, run_id: str | None, file: str | None) -> bool:
    return problem.code == code and (run_id is None or problem.run_id == run_id) and (file is None or problem.file == file)


@pytest.mark.parametrize("tamper,expected", CORPUS, ids=[t.__name__ for t, _ in CORPUS])
def test_tampering_is_detected_precisely(sealed: Sealed, tamper: Callable[[Sealed], None], expected: list) -> None:
    tamper(sealed)
    problems = verify_archive(sealed.root)
    report = format_problems(problems)
    assert problems, f"{tamper.__name__} went undetected"
    for code, run_index, file in expected:
        run_id = sealed.ids[run_index] if run_index is not None else None
        assert any(_matches(p, code, run_id, file) for p in problems), f"expected [{code}] run {run_id} {file} in:\n{report}"
    # Untouched runs are not blamed for content they still hold intact.
    untouched = sealed.ids[3]
    assert not any(p.run_id == untouched and p.code in ("hash-mismatch", "size-mismatch", "missing-file") for p in problems)


def test_messages_name_the_run_the_file_and_both_hashes(sealed: Sealed) -> None:
    byte_flip(sealed)
    [problem] = verify_archive(sealed.root)
    path = sealed.run(1) / "objects/vmi-before.json"
    manifest = Manifest.from_bytes((sealed.run(1) / "MANIFEST.json").read_bytes())
    [entry] = [f for f in manifest.files if f.path == "objects/vmi-before.json"]
    assert (problem.expected, problem.actual) == (entry.sha256, sha256_file(path))
    line = format_problems([problem])
    assert line.startswith(f"[hash-mismatch] run {sealed.ids[1]}: objects/vmi-before.json: ")
    assert entry.sha256 in line and sha256_file(path) in line


def test_truncation_reports_both_sizes(sealed: Sealed) -> None:
    truncation(sealed)
    [problem] = verify_archive(sealed.root)
    assert problem.message.startswith("truncated")
    assert problem.actual == "1000 bytes" and problem.expected == f"{64 * 1024} bytes"


def test_archive_resigned_throughout_is_caught_only_by_a_pinned_key(tmp_path: Path, signer: Signer) -> None:
    mallory = Signer.generate()
    sealed_archive(tmp_path / "forged", mallory, runs=2)
    assert verify_archive(tmp_path / "forged") == []  # self-consistent: only a pinned key can tell
    problems = verify_archive(tmp_path / "forged", trusted_keys=[signer.public_key])
    assert [p.code for p in problems] == ["untrusted-key", "untrusted-key"]
    assert all(mallory.key_id in p.message for p in problems)
    assert verify_archive(tmp_path / "forged", trusted_keys=[mallory.public_key]) == []


def test_resigned_run_with_published_key_is_untrusted_under_a_pinned_key(sealed: Sealed) -> None:
    resigned_and_key_published(sealed)
    problems = verify_archive(sealed.root, trusted_keys=[sealed.signer.public_key])
    assert any(p.code == "untrusted-key" and p.run_id == sealed.ids[1] for p in problems)


def test_removing_the_latest_run_is_caught_by_an_anchor(sealed: Sealed) -> None:
    head = chain_head(sealed.root)
    assert head is not None and head.run_id == sealed.ids[3]
    shutil.rmtree(sealed.run(3))
    _rewrite_chain(sealed.root, lambda lines: lines[:-1])
    assert verify_archive(sealed.root) == []  # a rolled-back archive is self-consistent ...
    problems = verify_archive(sealed.root, anchor=head.manifest_sha256)
    assert [p.code for p in problems] == ["anchor-not-found"]  # ... but not with the head recorded earlier
    assert problems[0].expected == head.manifest_sha256


def test_verify_run_checks_a_single_directory(sealed: Sealed) -> None:
    assert verify_run(sealed.run(2)) == []
    removed_file(sealed)
    assert [(p.code, p.file) for p in verify_run(sealed.run(1))] == [("missing-file", "verdict.json")]


def test_verify_run_detects_a_manifest_moved_to_another_directory(sealed: Sealed) -> None:
    swapped_run_directories(sealed)
    assert any(p.code == "run-id-mismatch" for p in verify_run(sealed.run(1)))


def test_manifest_hash_in_chain_is_the_file_hash(sealed: Sealed) -> None:
    # What VERIFY.md tells an auditor: `sha256sum <run>/MANIFEST.json` equals the chain entry.
    for entry in Archive(sealed.root).chain():
        assert entry.manifest_sha256 == sha256_bytes((sealed.root / entry.run_id / "MANIFEST.json").read_bytes())
