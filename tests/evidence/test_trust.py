"""Trust: the pure decisions (which signer each run may have, where an anchor must be), table-driven, and
key rotation and revocation on archives sealed with the real Archive API."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from livedrill.cli import main
from livedrill.evidence.archive import Archive, EvidenceError
from livedrill.evidence.keys import Signer
from livedrill.evidence.manifest import ChainEntry, KeyRotation, Manifest, sha256_bytes
from livedrill.evidence.trust import (
    Rotation,
    SignedRun,
    StampedRun,
    TrustInputError,
    anchor_problems,
    load_trusted_keys,
    parse_anchor,
    rotation_statement,
    trust_problems,
    tsa_time_problems,
    unwitnessed_problems,
)
from livedrill.evidence.verify import chain_head, verify_archive, verify_archive_report
from livedrill.outcomes import ExitCode

from .conftest import write_drill_evidence

K1, K2, K3, X = "k1" * 8, "k2" * 8, "k3" * 8, "xx" * 8


def run(seq: int, key: str, *, rotation: tuple[str, bool] | None = None, revokes: tuple[str, ...] = ()) -> SignedRun:
    return SignedRun(sequence=seq, run_id=f"r{seq}", key_id=key, rotation=Rotation(*rotation) if rotation else None, revokes=revokes)


TRUST_CASES = [
    # (description, runs in seal order, trusted key ids (None: none given), expected (code, run) per problem)
    ("pinned key signs all", [run(1, K1), run(2, K1)], {K1}, []),
    ("fresh key re-seal", [run(1, X), run(2, X)], {K1}, [("untrusted-key", "r1"), ("untrusted-key", "r2")]),
    ("no trust given: any consistent key", [run(1, X)], None, []),
    ("rotation from the pinned key", [run(1, K1), run(2, K2, rotation=(K1, True)), run(3, K2)], {K1}, []),
    ("rotation chained twice", [run(1, K1), run(2, K2, rotation=(K1, True)), run(3, K3, rotation=(K2, True))], {K1}, []),
    ("successor before its rotation record", [run(1, K1), run(2, K2), run(3, K2, rotation=(K1, True))], {K1}, [("untrusted-key", "r2")]),
    ("rotation endorsed by an untrusted key", [run(1, X), run(2, K2, rotation=(X, True))], {K1}, [("untrusted-key", "r1"), ("untrusted-key", "r2")]),
    ("forged rotation endorsement", [run(1, K1), run(2, X, rotation=(K1, False))], {K1}, [("bad-rotation", "r2")]),
    ("forged rotation, no trust given", [run(1, K1), run(2, X, rotation=(K1, False))], None, [("bad-rotation", "r2")]),
    ("revoked key refused after its revocation", [run(1, K1), run(2, K2, rotation=(K1, True), revokes=(K1,)), run(3, K1)], {K1}, [("revoked-key", "r3")]),
    ("runs before the revocation stand", [run(1, K1), run(2, K1), run(3, K2, rotation=(K1, True), revokes=(K1,))], {K1}, []),
    ("revocation holds without trust given", [run(1, K1, revokes=(K2,)), run(2, K2)], None, [("revoked-key", "r2")]),
    ("revoked key cannot admit a successor", [run(1, K1), run(2, K2, rotation=(K1, True), revokes=(K1,)), run(3, K3, rotation=(K1, True))], {K1}, [("untrusted-key", "r3")]),
    ("an untrusted run cannot revoke", [run(1, K1), run(2, X, revokes=(K1,)), run(3, K1)], {K1}, [("untrusted-key", "r2")]),
    ("a second pinned key", [run(1, K1), run(2, K3)], {K1, K3}, []),
]


@pytest.mark.parametrize("runs,trusted,expected", [c[1:] for c in TRUST_CASES], ids=[c[0] for c in TRUST_CASES])
def test_trust_problems(runs, trusted, expected) -> None:
    problems = trust_problems(runs, frozenset(trusted) if trusted is not None else None)
    assert [(p.code, p.run_id) for p in problems] == expected


def test_an_untrusted_run_names_the_key_found_and_the_keys_trusted() -> None:
    [problem] = trust_problems([run(1, X)], frozenset({K1, K3}))
    assert X in problem.message and K1 in problem.message and K3 in problem.message
    assert (problem.actual, problem.expected) == (X, f"{K1}, {K3}")


T = datetime(2026, 11, 26, tzinfo=timezone.utc)
A, B, C = "a" * 64, "b" * 64, "c" * 64
CHAIN = [ChainEntry(sequence=1, run_id="r1", manifest_sha256=A, sealed_at=T), ChainEntry(sequence=2, run_id="r2", manifest_sha256=B, sealed_at=T)]
ANCHOR_CASES = [
    ("head still there", CHAIN, [(None, B)], []),
    ("head with its place", CHAIN, [(2, B)], []),
    ("head removed", CHAIN[:1], [(None, B)], ["anchor-not-found"]),
    ("re-sealed: another hash", CHAIN, [(None, C)], ["anchor-not-found"]),
    ("recorded at another place", CHAIN, [(1, B)], ["anchor-moved"]),
    ("index line moved up", [CHAIN[1]], [(None, B)], ["anchor-moved"]),
    ("two anchors, one gone", CHAIN, [(1, A), (3, C)], ["anchor-not-found"]),
]


@pytest.mark.parametrize("entries,anchors,codes", [c[1:] for c in ANCHOR_CASES], ids=[c[0] for c in ANCHOR_CASES])
def test_anchor_problems(entries, anchors, codes) -> None:
    assert [p.code for p in anchor_problems(entries, anchors)] == codes


@pytest.mark.parametrize("text,parsed", [(A, (None, A)), (f"7:{A}", (7, A)), (A.upper(), (None, A))])
def test_parse_anchor(text: str, parsed) -> None:
    assert parse_anchor(text) == parsed


@pytest.mark.parametrize("bad", ["abc", f"0:{A}", f"x:{A}", A + "0"])
def test_a_malformed_anchor_is_refused(bad: str) -> None:
    with pytest.raises(TrustInputError, match="anchor"):
        parse_anchor(bad)


def test_a_trust_file_holds_several_keys_and_garbage_is_refused(tmp_path: Path) -> None:
    a, b = Signer.generate(), Signer.generate()
    (tmp_path / "trust.pem").write_bytes(a.public_key_pem() + b"\n" + b.public_key_pem())
    assert [k.public_bytes_raw() for k in load_trusted_keys([tmp_path / "trust.pem"])] == [a.public_key.public_bytes_raw(), b.public_key.public_bytes_raw()]
    (tmp_path / "junk.pem").write_text("not a key\n")
    with pytest.raises(TrustInputError, match="no PEM public key"):
        load_trusted_keys([tmp_path / "junk.pem"])


# ---------------------------------------------------------------- real archives


def seal(archive: Archive, signer: Signer, hour: int, **kwargs) -> str:
    run_ = archive.new_run("lab-targeted", now=datetime(2026, 11, 26, tzinfo=timezone.utc) + timedelta(hours=hour))
    write_drill_evidence(run_, series_bytes=16)
    run_.seal(signer, **kwargs)
    return run_.run_id


@pytest.fixture
def rotated(tmp_path: Path) -> tuple[Path, Signer, Signer, list[str]]:
    """Two runs by the first key, a rotation to the second (which revokes the first), a run by the second."""
    first, second = Signer.generate(), Signer.generate()
    archive = Archive(tmp_path / "archive")
    ids = [seal(archive, first, 0), seal(archive, first, 1), seal(archive, second, 2, rotate_from=first, revokes=[first.key_id]), seal(archive, second, 3)]
    return archive.root, first, second, ids


def _pin(tmp_path: Path, signer: Signer) -> str:
    path = tmp_path / f"pinned-{signer.key_id}.pub"
    path.write_bytes(signer.public_key_pem())
    return str(path)


def test_pinning_the_first_key_covers_its_rotated_successor(rotated, tmp_path: Path, capsys) -> None:
    root, first, second, ids = rotated
    rotation = Manifest.from_bytes((root / ids[2] / "MANIFEST.json").read_bytes()).rotation
    assert rotation is not None and rotation.previous_key_id == first.key_id
    assert main(["evidence", "verify", "--archive", str(root), "--trusted-key", _pin(tmp_path, first)]) == ExitCode.OK
    assert main(["evidence", "verify", str(root / ids[3]), "--trusted-key", _pin(tmp_path, first)]) == ExitCode.OK
    assert "4 run(s)" in capsys.readouterr().out


def test_pinning_only_the_successor_refuses_the_runs_before_it(rotated, tmp_path: Path) -> None:
    root, first, second, ids = rotated
    report = verify_archive_report(root, trusted_keys=[second.public_key])
    assert [(p.code, p.run_id) for p in report.problems] == [("untrusted-key", ids[0]), ("untrusted-key", ids[1])]
    assert report.origin == "refused"


def test_a_revoked_key_is_refused_from_its_revocation_on(rotated, tmp_path: Path, capsys) -> None:
    root, first, second, ids = rotated
    late = seal(Archive(root), first, 4)  # the old key, stolen, seals after its revocation
    assert main(["evidence", "verify", "--archive", str(root), "--trusted-key", _pin(tmp_path, first)]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert f"[revoked-key] run {late}" in err and ids[2] in err
    assert ids[0] not in err and ids[1] not in err  # sealed before the revocation: still trusted


def test_a_forged_rotation_record_is_caught(tmp_path: Path) -> None:
    """An insider writes a rotation record naming the pinned key, signed with their own key instead."""
    first, mallory = Signer.generate(), Signer.generate()
    archive = Archive(tmp_path / "archive")
    seal(archive, first, 0)
    rid = seal(archive, mallory, 1)
    path = archive.root / rid / "MANIFEST.json"
    forged = Manifest.from_bytes(path.read_bytes()).model_copy(update={"rotation": KeyRotation(
        previous_key_id=first.key_id, endorsement=base64.b64encode(mallory.sign(rotation_statement(first.key_id, mallory.key_id))).decode())})
    path.write_bytes(forged.to_bytes())
    (archive.root / rid / "MANIFEST.sig").write_bytes(mallory.sign(forged.to_bytes()))
    chain = archive.chain()
    archive._write_chain([*chain[:-1], chain[-1].model_copy(update={"manifest_sha256": sha256_bytes(forged.to_bytes())})])
    assert [p.code for p in verify_archive(archive.root)] == ["bad-rotation"]
    assert [(p.code, p.run_id) for p in verify_archive(archive.root, trusted_keys=[first.public_key])] == [("bad-rotation", rid)]


def test_rotation_to_the_same_key_is_refused(tmp_path: Path, signer: Signer) -> None:
    run_ = Archive(tmp_path / "a").new_run("lab-targeted")
    with pytest.raises(EvidenceError, match="to itself"):
        run_.seal(signer, rotate_from=signer)


def test_an_anchor_from_the_last_audit_catches_a_removed_run(rotated, tmp_path: Path, capsys) -> None:
    root, first, _, ids = rotated
    head = chain_head(root)
    anchor = f"{head.sequence}:{head.manifest_sha256}"
    assert main(["evidence", "verify", "--archive", str(root), "--trusted-key", _pin(tmp_path, first), "--anchor", anchor]) == ExitCode.OK
    assert anchor in capsys.readouterr().out
    shutil.rmtree(root / ids[3])
    lines = (root / "chain.jsonl").read_text().splitlines()[:-1]
    (root / "chain.jsonl").write_text("".join(line + "\n" for line in lines))
    assert main(["evidence", "verify", "--archive", str(root), "--trusted-key", _pin(tmp_path, first)]) == ExitCode.OK  # rolled back, self-consistent
    capsys.readouterr()
    assert main(["evidence", "verify", "--archive", str(root), "--trusted-key", _pin(tmp_path, first), "--anchor", anchor, "--json"]) == ExitCode.FAILED
    doc = json.loads(capsys.readouterr().out)
    assert [(p["code"], p["expected"]) for p in doc["problems"]] == [("anchor-not-found", head.manifest_sha256)]
    assert doc["anchors"] == [anchor]


def test_verify_json_says_what_was_verified(rotated, tmp_path: Path, capsys) -> None:
    root, first, second, _ = rotated
    assert main(["evidence", "verify", "--archive", str(root), "--json"]) == ExitCode.INTEGRITY_ONLY
    doc = json.loads(capsys.readouterr().out)
    assert doc["origin"] == "not-established" and doc["verified"] is False and doc["trusted_key_ids"] is None
    assert doc["runs_checked"] == 4 and doc["signing_key_ids"] == sorted([first.key_id, second.key_id])
    assert main(["evidence", "verify", "--archive", str(root), "--json", "--trusted-key", _pin(tmp_path, first)]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert (doc["origin"], doc["verified"], doc["trusted_key_ids"], doc["problems"]) == ("established", True, [first.key_id], [])


def test_the_trust_file_comes_from_the_environment(rotated, tmp_path: Path, monkeypatch) -> None:
    root, first, _, _ = rotated
    monkeypatch.setenv("LIVEDRILL_TRUSTED_KEYS", _pin(tmp_path, first))
    assert main(["evidence", "verify", "--archive", str(root)]) == ExitCode.OK
    monkeypatch.setenv("LIVEDRILL_TRUSTED_KEYS", str(tmp_path / "absent.pem"))
    assert main(["evidence", "verify", "--archive", str(root)]) == ExitCode.BAD_INPUT


def test_old_manifests_keep_their_format(tmp_path: Path, signer: Signer) -> None:
    root = tmp_path / "a"
    rid = seal(Archive(root), signer, 0)
    doc = json.loads((root / rid / "MANIFEST.json").read_text())
    assert "rotation" not in doc and "revokes" not in doc


S = datetime(2026, 11, 26, 8, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


def stamped(seq: int, sealed_min: int, tsa_min: int) -> StampedRun:
    return StampedRun(sequence=seq, run_id=f"r{seq}", sealed_at=S + sealed_min * MINUTE, tsa_time=S + tsa_min * MINUTE)


TSA_CASES = [
    # (description, runs, tolerance, expected (code, run))
    ("prompt and in order", [stamped(1, 0, 0), stamped(2, 60, 61)], 5 * MINUTE, []),
    ("stamped late", [stamped(1, 0, 0), stamped(2, 60, 90)], 5 * MINUTE, [("timestamp-late", "r2")]),
    ("backdated re-seal of the last run", [stamped(1, 0, 0), stamped(2, 5, 600)], 5 * MINUTE, [("timestamp-late", "r2")]),
    ("tsa time goes backwards", [stamped(1, 0, 4), stamped(2, 1, 2)], 5 * MINUTE, [("timestamp-order", "r2")]),
    ("one run out of order, the next compared with the latest", [stamped(1, 6, 10), stamped(2, 8, 9), stamped(3, 9, 11)], 5 * MINUTE, [("timestamp-order", "r2")]),
    ("same second", [stamped(1, 0, 1), stamped(2, 0, 1)], 5 * MINUTE, []),
    ("no tolerance configured: not compared", [stamped(1, 0, 600), stamped(2, 1, 2)], None, []),
]


@pytest.mark.parametrize("runs,tolerance,expected", [c[1:] for c in TSA_CASES], ids=[c[0] for c in TSA_CASES])
def test_tsa_time_problems(runs, tolerance, expected) -> None:
    assert [(p.code, p.run_id) for p in tsa_time_problems(runs, tolerance)] == expected


E3 = ChainEntry(sequence=3, run_id="r3", manifest_sha256=C, sealed_at=T)
WITNESS_CASES = [
    ("every head witnessed", [*CHAIN, E3], [(1, A), (2, B), (3, C)], []),
    ("witness started late", [*CHAIN, E3], [(3, C)], []),
    ("last run sealed without the witness", [*CHAIN, E3], [(1, A), (2, B)], ["r3"]),
    ("empty witness", CHAIN, [], ["r1", "r2"]),
]


@pytest.mark.parametrize("entries,heads,unwitnessed", [c[1:] for c in WITNESS_CASES], ids=[c[0] for c in WITNESS_CASES])
def test_unwitnessed_problems(entries, heads, unwitnessed) -> None:
    assert [p.run_id for p in unwitnessed_problems(entries, heads, "w")] == unwitnessed


def test_a_witness_outside_the_archive_catches_a_deleted_run_re_sealed(tmp_path: Path, capsys) -> None:
    """Delete the latest run, seal a substitute in its place: self-consistent, and the same key; the witness disagrees."""
    signer = Signer.generate()
    archive, witness = Archive(tmp_path / "archive"), tmp_path / "elsewhere" / "heads.jsonl"
    ids = [seal(archive, signer, hour, witness=witness) for hour in range(3)]
    verify = ["evidence", "verify", "--archive", str(archive.root), "--trusted-key", _pin(tmp_path, signer), "--witness", str(witness)]
    assert main(verify) == ExitCode.OK
    assert "3 chain head(s) of witness" in capsys.readouterr().out

    shutil.rmtree(archive.root / ids[2])
    lines = (archive.root / "chain.jsonl").read_text().splitlines()[:-1]
    (archive.root / "chain.jsonl").write_text("".join(line + "\n" for line in lines))
    substitute = seal(archive, signer, 2)  # sealed by the insider without the witness
    assert main(verify[:-2]) == ExitCode.OK
    assert main(verify) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "[anchor-not-found]" in err and f"witness {witness}" in err and f"[not-witnessed] run {substitute}" in err


def test_a_seal_finished_after_a_crash_is_witnessed_once(tmp_path: Path, signer: Signer) -> None:
    archive, witness = Archive(tmp_path / "archive"), tmp_path / "heads.jsonl"
    rid = seal(archive, signer, 0)
    run_ = archive.find(rid)
    for _ in range(2):  # crashed after the chain update, before the witness and the marker: finished twice
        (run_.path / "UNSEALED").write_text("crashed\n")
        run_.seal(signer, witness=witness)
    assert witness.read_text() == archive.chain()[0].to_line()


def test_every_drill_seal_appends_its_chain_head_to_the_specs_witness(tmp_path: Path) -> None:
    from livedrill.decisions import DrillFacts
    from livedrill.spec import DrillSpec
    from livedrill.stages.finish import finish
    from livedrill.stages.session import DrillSession

    witness = tmp_path / "witness-share" / "heads.jsonl"
    spec = DrillSpec.model_validate({
        "name": "witnessed", "cluster": "lab", "platform": {"kind": "kubevirt", "kubeconfig": str(tmp_path / "kubeconfig")},
        "vms": [{"namespace": "banking", "name": "banking-core-vm"}], "mode": {"kind": "targeted", "target_node": "node-2"}, "slo": {"max_downtime_ms": 500, "p99_latency_ms": 50},
        "evidence": {"dir": str(tmp_path / "evidence"), "signing_key": str(tmp_path / "signing.pem"), "generate_lab_key": True, "witness": str(witness)},
    })
    for _ in range(2):
        finish(DrillSession.create(spec), DrillFacts([], [], [], [], started_mutating=False), datetime.now(timezone.utc).isoformat())
    assert witness.read_text() == "".join(e.to_line() for e in Archive(tmp_path / "evidence").chain())
    assert verify_archive_report(tmp_path / "evidence", witness=witness).problems == []
