"""The lab's core VM carries cloud-init `password: changeme`: after a drill is sealed, it is nowhere in the archive."""

from __future__ import annotations

import base64
from pathlib import Path

from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.evidence.verify import verify_archive

from .conftest import SEED_USER_DATA, SPEC_YAML, seed_vmi, write_drill_evidence


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_seed_cloud_init_password_appears_nowhere_in_the_sealed_archive(tmp_path: Path, signer: Signer) -> None:
    vmi = seed_vmi()
    # (The test name avoids the word itself: verdict.json records the run path, which includes it.)
    # The fixture really carries the secret in all three places, or this test would prove nothing.
    raw_fixture = repr(vmi).encode()
    assert b"changeme" in raw_fixture
    assert base64.b64encode(SEED_USER_DATA.encode()) in raw_fixture

    archive = Archive(tmp_path / "archive")
    run = archive.new_run("lab-targeted")
    write_drill_evidence(run)
    # Also as the raw libvirt domain XML and a log line, the ways the adapter may hand it over.
    run.write_json("objects/domain.json", {"xml": "<domain><metadata>userData: |\n  #cloud-config\n  password: changeme\n</metadata></domain>"})
    run.write_text("logs/adapter.log", f"fetched vmi: {vmi}\n")
    run.seal(signer)
    assert verify_archive(archive.root) == []

    everything = _all_bytes(archive.root)
    assert b"changeme" not in everything
    assert base64.b64encode(SEED_USER_DATA.encode()) not in everything
    assert b"eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9" not in everything  # the probe's bearer token in spec.yaml
    assert b"sha256~secrettoken" not in everything  # kubeconfig token
    # ... while the evidence an auditor needs is still there.
    assert b"banking-core-vm" in everything and b"LiveMigratable" in everything and b"CHG-2026-1126-07" in everything
    assert "<redacted>" in (run.path / "spec.yaml").read_text() and "kind: kubevirt" in (run.path / "spec.yaml").read_text()
    assert SPEC_YAML.count("\n") == (run.path / "spec.yaml").read_text().count("\n")
