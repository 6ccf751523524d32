"""RFC 3161 timestamps against a local TSA the test starts: OpenSSL's `ts -reply` behind an HTTP server on loopback."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("rfc3161_client", reason="RFC 3161 timestamps need rfc3161-client")
if not shutil.which("openssl"):
    pytest.skip("the local TSA is OpenSSL's `openssl ts -reply`", allow_module_level=True)

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from livedrill.evidence.archive import Archive  # noqa: E402
from livedrill.evidence.keys import Signer  # noqa: E402
from livedrill.evidence.timestamp import TimestampAuthority, TimestampError  # noqa: E402
from livedrill.evidence.verify import TimestampPolicy, format_problems, verify_archive, verify_run  # noqa: E402

from .conftest import write_drill_evidence  # noqa: E402


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_tsa_pki(directory: Path, cn: str = "livedrill test TSA") -> x509.Certificate:
    """A root CA and a TSA certificate (critical EKU timeStamping) signed by it, written for `openssl ts`."""
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder().subject_name(_name(f"{cn} root")).issuer_name(_name(f"{cn} root")).public_key(root_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(root.subject).public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    (directory / "root.pem").write_bytes(_pem(root))
    (directory / "tsa.pem").write_bytes(_pem(tsa))
    (directory / "tsa.key").write_bytes(_pem(tsa_key))
    (directory / "serial").write_text("01\n")
    # No `certs =` chain in the reply: OpenSSL writes that SET OF unsorted, which strict DER parsers
    # (rfc3161-client) reject; the reply still carries the TSA certificate, the root comes from the auditor.
    (directory / "tsa.cnf").write_text(
        f"""[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {directory}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
    )
    return root


@dataclass
class LocalTSA:
    url: str
    root: x509.Certificate
    directory: Path
    mode: list[str]  # "ok" or "garbage", switchable by a test


@pytest.fixture
def local_tsa(tmp_path: Path) -> Iterator[LocalTSA]:
    directory = tmp_path / "tsa"
    directory.mkdir()
    root = make_tsa_pki(directory)
    mode = ["ok"]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            query = self.rfile.read(int(self.headers["Content-Length"]))
            if mode[0] == "garbage":
                reply = b"not a timestamp"
            else:
                with lock, tempfile.TemporaryDirectory(dir=directory) as work:
                    (Path(work) / "q.tsq").write_bytes(query)
                    subprocess.run(["openssl", "ts", "-reply", "-config", str(directory / "tsa.cnf"), "-queryfile", f"{work}/q.tsq", "-out", f"{work}/r.tsr"],
                                   check=True, capture_output=True, timeout=30)
                    reply = (Path(work) / "r.tsr").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalTSA(f"http://127.0.0.1:{server.server_address[1]}/tsa", root, directory, mode)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _authority(url: str) -> TimestampAuthority:
    return TimestampAuthority(url=url, timeout_s=5.0, deadline_s=2.0)


def _sealed_runs(root: Path, signer: Signer, n: int) -> list:
    archive = Archive(root)
    runs = []
    for i in range(n):
        run = archive.new_run("lab-targeted", now=datetime(2026, 11, 26, 8 + i, tzinfo=timezone.utc))
        write_drill_evidence(run, series_bytes=512)
        run.seal(signer)
        runs.append(run)
    return runs


def test_sealed_manifest_is_timestamped_and_verifies(local_tsa: LocalTSA, tmp_path: Path, signer: Signer) -> None:
    [run] = _sealed_runs(tmp_path / "a", signer, 1)
    before = datetime.now(timezone.utc)
    gen_time = run.timestamp(_authority(local_tsa.url))
    assert before - timedelta(seconds=5) <= gen_time <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert (run.path / "MANIFEST.tsr").is_file()
    assert verify_archive(tmp_path / "a", timestamps=TimestampPolicy(roots=[local_tsa.root], required=True)) == []
    # What an auditor runs, with only the TSA's root certificate.
    proc = subprocess.run(["openssl", "ts", "-verify", "-data", str(run.path / "MANIFEST.json"), "-in", str(run.path / "MANIFEST.tsr"),
                           "-CAfile", str(local_tsa.directory / "root.pem")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


def test_timestamp_problems_are_named(local_tsa: LocalTSA, tmp_path: Path, signer: Signer) -> None:
    runs = _sealed_runs(tmp_path / "a", signer, 3)
    for run in runs:
        run.timestamp(_authority(local_tsa.url))
    trusted = TimestampPolicy(roots=[local_tsa.root])
    # A token moved from another run covers other bytes.
    shutil.copy(runs[0].path / "MANIFEST.tsr", runs[1].path / "MANIFEST.tsr")
    # A token from a TSA nobody trusts (valid in itself, for this very manifest).
    other = tmp_path / "other-tsa"
    other.mkdir()
    make_tsa_pki(other, cn="rogue TSA")
    query = tmp_path / "q.tsq"
    subprocess.run(["openssl", "ts", "-query", "-data", str(runs[2].path / "MANIFEST.json"), "-sha256", "-cert", "-out", str(query)], check=True, timeout=30)
    subprocess.run(["openssl", "ts", "-reply", "-config", str(other / "tsa.cnf"), "-queryfile", str(query), "-out", str(runs[2].path / "MANIFEST.tsr")],
                   check=True, capture_output=True, timeout=30)
    problems = verify_archive(tmp_path / "a", timestamps=trusted)
    report = format_problems(problems)
    assert [(p.code, p.run_id) for p in problems] == [("bad-timestamp", runs[1].run_id), ("bad-timestamp", runs[2].run_id)], report
    assert "covers other bytes" in problems[0].message
    assert "does not verify against the trusted TSA roots" in problems[1].message
    # Without trusted roots, only the imprint can be judged: the rogue token passes that.
    assert [p.run_id for p in verify_archive(tmp_path / "a")] == [runs[1].run_id]


def test_required_timestamps_flag_runs_without_one(tmp_path: Path, signer: Signer) -> None:
    [run] = _sealed_runs(tmp_path / "a", signer, 1)
    assert verify_run(run.path) == []
    problems = verify_run(run.path, timestamps=TimestampPolicy(required=True))
    assert [(p.code, p.file) for p in problems] == [("missing-timestamp", "MANIFEST.tsr")]


def test_unreachable_or_broken_tsa_leaves_the_run_sealed_and_it_can_be_stamped_later(local_tsa: LocalTSA, tmp_path: Path, signer: Signer) -> None:
    runs = _sealed_runs(tmp_path / "a", signer, 2)
    dead = "http://127.0.0.1:9/tsa"  # discard port: nothing listens on loopback
    with pytest.raises(TimestampError, match="no timestamp"):
        runs[0].timestamp(_authority(dead))
    local_tsa.mode[0] = "garbage"
    with pytest.raises(TimestampError, match="not an RFC 3161"):
        runs[0].timestamp(_authority(local_tsa.url))
    assert not (runs[0].path / "MANIFEST.tsr").exists()
    assert verify_archive(tmp_path / "a") == []

    local_tsa.mode[0] = "ok"
    stamped = Archive(tmp_path / "a").timestamp_unstamped(_authority(local_tsa.url))
    assert sorted(stamped) == sorted(r.run_id for r in runs)
    assert not any(v.startswith("error") for v in stamped.values())
    assert verify_archive(tmp_path / "a", timestamps=TimestampPolicy(roots=[local_tsa.root], required=True)) == []


def test_an_unsealed_run_is_not_timestamped(tmp_path: Path, local_tsa: LocalTSA) -> None:
    from livedrill.evidence.archive import EvidenceError

    run = Archive(tmp_path / "a").new_run("lab")
    with pytest.raises(EvidenceError, match="not sealed"):
        run.timestamp(_authority(local_tsa.url))


def test_exported_bundle_carries_timestamps_an_auditor_checks_with_openssl(local_tsa: LocalTSA, tmp_path: Path, signer: Signer) -> None:
    import re

    from livedrill.evidence.export import export_quarter

    from .test_export import QUARTER, _run_verify_md, _unpack, drill

    archive = Archive(tmp_path / "evidence")
    first = drill(archive, signer, datetime(2026, 9, 30, tzinfo=timezone.utc))
    second = drill(archive, signer, datetime(2026, 10, 2, tzinfo=timezone.utc))
    for run_id in (first, second):
        archive.find(run_id).timestamp(_authority(local_tsa.url))
    policy = TimestampPolicy(roots=[local_tsa.root], required=True)
    result = export_quarter(archive.root, QUARTER, tmp_path / "bundle.tar.gz", signer=signer, timestamps=policy)
    bundle = _unpack(Path(result.bundle), tmp_path / "unpacked")

    assert (bundle / "archive" / first / "MANIFEST.tsr").is_file()  # the previous quarter's token travels with its manifest
    assert verify_archive(bundle / "archive", quarter=QUARTER, timestamps=policy) == []
    assert _run_verify_md(bundle, signer.key_id).returncode == 0
    shutil.copy(local_tsa.directory / "root.pem", bundle / "TSA-ROOT.pem")
    verify_md = (bundle / "VERIFY.md").read_text()
    [command] = re.findall(r"^openssl ts -verify .*$", verify_md, flags=re.M)
    proc = subprocess.run(command, shell=True, cwd=bundle, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "Verification: OK" in proc.stdout, proc.stdout + proc.stderr
    html = (bundle / "report.html").read_text()
    assert "RFC 3161 timestamp" in html and "(MANIFEST.tsr)" in html


def test_a_backdated_reseal_is_caught_by_the_tsa_time(local_tsa: LocalTSA, tmp_path: Path, signer: Signer, monkeypatch, capsys) -> None:
    """An insider holding the signing key edits the last run and re-seals it with the host clock set back a day:
    key, chain and hashes all check out; only the TSA's own time shows the seal was made later."""
    from livedrill.cli import main
    from livedrill.outcomes import ExitCode

    root = tmp_path / "a"
    runs = _sealed_runs(root, signer, 2)
    for run in runs:
        run.timestamp(_authority(local_tsa.url))
    verify = ["evidence", "verify", "--archive", str(root), "--trusted-key", str(root / "keys" / f"{signer.key_id}.pub"),
              "--tsa-root", str(local_tsa.directory / "root.pem"), "--require-timestamps", "--tsa-tolerance", "300"]
    assert main(verify) == ExitCode.OK

    last = runs[1]
    (last.path / "verdict.json").write_text('{"outcome": "PASSED"}\n')
    for name in ("MANIFEST.json", "MANIFEST.sig", "MANIFEST.tsr"):
        (last.path / name).unlink()
    (last.path / "UNSEALED").write_text("re-opened\n")
    chain = root / "chain.jsonl"
    chain.write_text("".join(line + "\n" for line in chain.read_text().splitlines()[:-1]))

    class BackdatedClock(datetime):
        @classmethod
        def now(cls, tz=None):  # the sealing host's clock, set back a day
            return datetime.now(tz) - timedelta(days=1)

    monkeypatch.setattr("livedrill.evidence.archive.datetime", BackdatedClock)
    Archive(root).find(last.run_id).seal(signer)
    Archive(root).find(last.run_id).timestamp(_authority(local_tsa.url))
    capsys.readouterr()
    assert main(verify[:-2]) == ExitCode.OK  # without a tolerance the re-seal passes: same key, intact chain
    assert main(verify) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert f"[timestamp-late] run {last.run_id}" in err
