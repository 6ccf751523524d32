"""The run directory the drill writes, sealing, the chain, keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from livedrill.evidence.archive import Archive, EvidenceError, RunSealedError
from livedrill.evidence.keys import SIGNING_KEY_ENV, Signer, SigningKeyError, ensure_lab_key, load_signer
from livedrill.evidence.manifest import RUN_ID_RE, Manifest, sha256_file
from livedrill.evidence.verify import verify_archive, verify_run
from livedrill.outcomes import TimelineEvent

from .conftest import sealed_archive, write_drill_evidence


def test_new_run_is_named_and_marked_unsealed(archive: Archive) -> None:
    run = archive.new_run("Lab Targeted!", now=datetime(2026, 11, 26, 15, 30, 0, tzinfo=timezone.utc))
    assert RUN_ID_RE.match(run.run_id)
    assert run.run_id.startswith("20261126T153000Z-lab-targeted-")
    assert run.path == archive.root / run.run_id
    assert (run.path / "UNSEALED").is_file()
    assert not run.sealed
    assert archive.unsealed_runs()[0].run_id == run.run_id
    assert archive.find(run.run_id).path == run.path


def test_writes_are_redacted_atomic_and_leave_no_temp_files(archive: Archive) -> None:
    run = archive.new_run("lab")
    run.write_json("objects/secret.json", {"kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", "data": {"pw": "Y2hhbmdlbWU="}})
    run.write_text("spec.yaml", "probe:\n  headers:\n    Authorization: Bearer abcdefghijklmnopqrstuvwxyz\n")
    run.write_bytes("probe/raw.bin", b"\x00\x01password: stays-binary")
    assert json.loads((run.path / "objects/secret.json").read_text())["data"] == {"pw": "<redacted>"}
    assert "abcdefghijklmnop" not in (run.path / "spec.yaml").read_text()
    assert (run.path / "probe/raw.bin").read_bytes() == b"\x00\x01password: stays-binary"
    leftovers = [p for p in run.path.rglob(".*")]
    assert leftovers == []


def test_timeline_lines_are_appended_one_record_each(archive: Archive) -> None:
    run = archive.new_run("lab")
    at = datetime(2026, 11, 26, tzinfo=timezone.utc)
    for phase in ("Scheduling", "Running", "Succeeded"):
        run.append_jsonl("timeline.jsonl", TimelineEvent(at=at, monotonic=1.0, source="vmim", kind="phase", detail={"phase": phase, "token": "t"}))
    lines = (run.path / "timeline.jsonl").read_text().splitlines()
    assert [TimelineEvent.model_validate_json(line).detail["phase"] for line in lines] == ["Scheduling", "Running", "Succeeded"]
    assert all(TimelineEvent.model_validate_json(line).detail["token"] == "<redacted>" for line in lines)


@pytest.mark.parametrize("relpath", ["/etc/passwd", "../escape.json", "a/../../b", "MANIFEST.json", "MANIFEST.sig", "UNSEALED", ".hidden", ""])
def test_paths_outside_the_run_or_reserved_are_refused(archive: Archive, relpath: str) -> None:
    run = archive.new_run("lab")
    with pytest.raises(EvidenceError):
        run.write_json(relpath, {})


def test_seal_writes_a_signed_manifest_of_every_file_and_removes_the_marker(archive: Archive, signer: Signer) -> None:
    run = archive.new_run("lab-targeted")
    write_drill_evidence(run)
    manifest = run.seal(signer)

    assert run.sealed and not (run.path / "UNSEALED").exists()
    on_disk = sorted(p.relative_to(run.path).as_posix() for p in run.path.rglob("*") if p.is_file() and p.name not in ("MANIFEST.json", "MANIFEST.sig"))
    assert [f.path for f in manifest.files] == on_disk
    for entry in manifest.files:
        assert entry.sha256 == sha256_file(run.path / entry.path)
        assert entry.size == (run.path / entry.path).stat().st_size
    stored = (run.path / "MANIFEST.json").read_bytes()
    assert Manifest.from_bytes(stored) == manifest
    signer.public_key.verify((run.path / "MANIFEST.sig").read_bytes(), stored)  # raises if invalid
    assert (archive.root / "keys" / f"{signer.key_id}.pub").read_bytes() == signer.public_key_pem()
    assert manifest.sequence == 1 and manifest.previous is None
    assert verify_run(run.path) == []


def test_sealed_run_refuses_writes_and_a_second_seal(archive: Archive, signer: Signer) -> None:
    run = archive.new_run("lab")
    run.write_json("run.json", {})
    run.seal(signer)
    with pytest.raises(RunSealedError):
        run.write_json("verdict.json", {})
    with pytest.raises(RunSealedError):
        run.append_jsonl("timeline.jsonl", {})
    with pytest.raises(RunSealedError):
        run.seal(signer)


def test_each_seal_links_to_the_previously_sealed_run(tmp_path: Path, signer: Signer) -> None:
    ids = sealed_archive(tmp_path / "a", signer, runs=3)
    archive = Archive(tmp_path / "a")
    chain = archive.chain()
    assert [e.run_id for e in chain] == ids
    for position, entry in enumerate(chain, start=1):
        manifest = archive.find(entry.run_id).manifest()
        assert manifest is not None and manifest.sequence == position
        assert entry.manifest_sha256 == sha256_file(archive.root / entry.run_id / "MANIFEST.json")
        if position == 1:
            assert manifest.previous is None
        else:
            assert manifest.previous is not None
            assert (manifest.previous.run_id, manifest.previous.manifest_sha256) == (chain[position - 2].run_id, chain[position - 2].manifest_sha256)
    assert verify_archive(archive.root) == []


def test_chain_follows_seal_order_not_creation_order(archive: Archive, signer: Signer) -> None:
    first = archive.new_run("lab", now=datetime(2026, 10, 1, tzinfo=timezone.utc))
    second = archive.new_run("lab", now=datetime(2026, 10, 2, tzinfo=timezone.utc))
    second.seal(signer)
    first.seal(signer)
    assert [e.run_id for e in archive.chain()] == [second.run_id, first.run_id]
    assert verify_archive(archive.root) == []


@pytest.mark.parametrize("crash_in", ["_write_chain", "_remove_marker"])
def test_seal_interrupted_part_way_can_be_finished(archive: Archive, signer: Signer, monkeypatch: pytest.MonkeyPatch, crash_in: str) -> None:
    run = archive.new_run("lab")
    write_drill_evidence(run, series_bytes=1024)
    owner = type(archive) if crash_in == "_write_chain" else type(run)
    original = getattr(owner, crash_in)

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(owner, crash_in, crash)
    with pytest.raises(OSError, match="power cut"):
        run.seal(signer)
    assert (run.path / "UNSEALED").exists()
    monkeypatch.setattr(owner, crash_in, original)

    run.seal(signer)
    assert len(archive.chain()) == 1
    assert verify_archive(archive.root) == []


def test_concurrent_seals_from_separate_processes_form_one_chain(tmp_path: Path) -> None:
    key = tmp_path / "lab.key"
    ensure_lab_key(key)
    root = tmp_path / "archive"
    script = (
        "import sys; from pathlib import Path\n"
        "from livedrill.evidence.archive import Archive\n"
        "from livedrill.evidence.keys import load_signer\n"
        "a = Archive(Path(sys.argv[1])); s = load_signer(Path(sys.argv[2]))\n"
        "for i in range(5):\n"
        "    r = a.new_run('lab'); r.write_json('run.json', {'i': i}); r.seal(s)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), str(key)]) for _ in range(3)]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0, 0]
    chain = Archive(root).chain()
    assert [e.sequence for e in chain] == list(range(1, 16))
    assert len({e.run_id for e in chain}) == 15
    assert verify_archive(root) == []


def test_lab_key_is_created_private_once_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "lab.pem"
    first = ensure_lab_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert ensure_lab_key(path).key_id == first.key_id
    assert load_signer(path).key_id == first.key_id
    assert "PRIVATE" not in repr(first)


def test_signing_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(signer.private_key_pem())
    monkeypatch.setenv(SIGNING_KEY_ENV, str(path))
    assert load_signer().key_id == signer.key_id
    monkeypatch.setenv(SIGNING_KEY_ENV, signer.private_key_pem().decode())
    assert load_signer().key_id == signer.key_id
    monkeypatch.delenv(SIGNING_KEY_ENV)
    with pytest.raises(SigningKeyError, match=SIGNING_KEY_ENV):
        load_signer()


def test_non_ed25519_or_missing_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(SigningKeyError, match="Ed25519"):
        load_signer(ec_key)
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_signer(tmp_path / "absent.pem")


def test_a_symlink_in_a_run_is_refused_at_seal(archive: Archive, signer: Signer, tmp_path: Path) -> None:
    run = archive.new_run("lab")
    outside = tmp_path / "outside.txt"
    outside.write_text("not evidence")
    (run.path / "link.txt").symlink_to(outside)
    with pytest.raises(EvidenceError, match="link.txt"):
        run.seal(signer)
    assert (run.path / "UNSEALED").exists()
