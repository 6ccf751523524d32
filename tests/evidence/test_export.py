"""The auditor export: a quarter's bundle verifies with livedrill and with VERIFY.md alone, its formats
validate, its report renders in headless Chromium, and the lab VM's cloud-init password is nowhere in it."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from livedrill.evidence.archive import Archive, EvidenceRun
from livedrill.evidence.export import SUMS_NAME, ExportError, _sha256sums, build_bundle_dir, bundle_name, export_quarter
from livedrill.evidence.export_formats import DSSE_PAYLOAD_TYPE, TEST_RESULT_PREDICATE, pae
from livedrill.evidence.keys import Signer, load_public_key_pem, signature_valid
from livedrill.evidence.manifest import sha256_file
from livedrill.evidence.verify import verify_archive
from livedrill.outcomes import CheckResult, CheckStatus, Compensation, CompensationState, DrillOutcome, Verdict
from livedrill.probe.report import GapRecord, ProbeReport, SessionReport, WindowStats
from livedrill.probe.series import Outcome, SeriesWriter

from .conftest import write_drill_evidence
from .png import read_png

QUARTER = "2026Q4"
T0 = datetime(2026, 11, 26, 15, 30, tzinfo=timezone.utc)


def write_probe_evidence(run: EvidenceRun, *, gap_at_s: float = 20.0, gap_s: float = 0.048) -> None:
    """A real probe series (200 tx/s for 40 s, a stop-and-copy gap during the migration) and its report."""
    series = run.stream_path("probe/ledger-transfer.series")
    writer = SeriesWriter(series, {"probe": "ledger-transfer", "kind": "transaction"}, (T0.timestamp(), 1000.0))
    writer.mark("baseline", 1000.0)
    for seq in range(8000):
        t = 1000.0 + seq / 200
        if seq == 3000:
            writer.mark("during", t)
        if seq == 6000:
            writer.mark("after", t)
        in_gap = gap_at_s <= t - 1000.0 < gap_at_s + gap_s
        latency = 0.0021 + (seq % 7) * 0.0002 + (gap_s if in_gap else 0.0)
        writer.append(seq, t, t + 0.0001, t + latency / 2, t + latency, Outcome.OK if seq != 3500 else Outcome.TIMEOUT, 1, 201)
    writer.close()

    def window(name: str, count: int, p99: float) -> WindowStats:
        return WindowStats(window=name, start_monotonic=1000.0, count=count, ok=count, failed=0, p50_ms=2.6, p95_ms=3.1, p99_ms=p99, max_ms=p99 + 1)

    gap = GapRecord(duration_ms=gap_s * 1000, start_monotonic=1000 + gap_at_s, end_monotonic=1000 + gap_at_s + gap_s,
                    start_at=T0 + timedelta(seconds=gap_at_s), end_at=T0 + timedelta(seconds=gap_at_s + gap_s), windows=["during"])
    probe = ProbeReport(
        name="ledger-transfer", kind="transaction", vm="banking/banking-core-vm", target="http://127.0.0.1:18101/transfers",
        rate_per_s=200, series_file=str(series), started_at=T0, started_monotonic=1000.0, stopped_monotonic=1040.0,
        window_marks={"baseline": 1000.0, "during": 1015.0, "after": 1030.0}, sent=8000, ok=7999, failed=1,
        windows={"baseline": window("baseline", 3000, 3.2), "during": window("during", 3000, 51.0), "after": window("after", 2000, 3.3)},
        longest_gap=gap, gap_threshold_ms=20, gaps_above_threshold=[gap], gaps_above_threshold_total=1,
        failures_by_kind={"timeout": 1}, in_flight_at_stop=0, unresolved_at_stop=0, max_send_lag_ms=0.4,
    )
    run.write_json("probe/report.json", SessionReport(probes=[probe]))


def drill(archive: Archive, signer: Signer, when: datetime, *, passed: bool = True, rollback: bool = False) -> str:
    run = archive.new_run("lab-targeted", now=when)
    write_drill_evidence(run, series_bytes=16)
    (run.path / "probe" / "ledger.series").unlink()  # replaced by a real series below
    write_probe_evidence(run)
    if not passed:
        run.write_json("verdict.json", Verdict(outcome=DrillOutcome.FAILED, reasons=["probe ledger-transfer: longest gap 1500 ms > 500 ms"],
                                               checks=[CheckResult(name="probe.downtime", status=CheckStatus.FAIL, message="1500 ms")], observed_downtime_ms=1500.0))
    if rollback:
        run.write_json("compensations.json", [Compensation(id=1, action="cancel-migration", params={"vmim": "m1"}, registered_at=when,
                                                           state=CompensationState.DONE, outcome="migration aborted; VM still on node-1")])
    run.seal(signer)
    return run.run_id


@pytest.fixture
def lab_archive(tmp_path: Path, signer: Signer) -> tuple[Path, list[str]]:
    """Drills in Q3 and Q4 2026 (one failed with a rollback), and an unsealed Q4 run."""
    archive = Archive(tmp_path / "evidence")
    ids = [
        drill(archive, signer, datetime(2026, 9, 15, tzinfo=timezone.utc)),
        drill(archive, signer, datetime(2026, 10, 5, tzinfo=timezone.utc)),
        drill(archive, signer, datetime(2026, 11, 26, tzinfo=timezone.utc), passed=False, rollback=True),
        drill(archive, signer, datetime(2027, 1, 4, tzinfo=timezone.utc)),
    ]
    archive.new_run("lab-targeted", now=datetime(2026, 12, 1, tzinfo=timezone.utc))  # crashed drill, never sealed
    return archive.root, ids


def _unpack(bundle: Path, dest: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(dest, filter="data")
    return dest / bundle_name(QUARTER)


def _verify_script(bundle_dir: Path) -> str:
    text = (bundle_dir / "VERIFY.md").read_text()
    [script] = re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)
    return script


def _run_verify_md(bundle_dir: Path, *key_ids: str) -> subprocess.CompletedProcess:
    """VERIFY.md's block as the auditor runs it: `sh verify.sh KEY_ID ...`."""
    return subprocess.run(["sh", "-c", _verify_script(bundle_dir), "verify.sh", *key_ids], cwd=bundle_dir, capture_output=True, text=True, timeout=120)


@pytest.fixture
def bundle(lab_archive, signer: Signer, tmp_path: Path) -> tuple[Path, list[str], object]:
    root, ids = lab_archive
    result = export_quarter(root, QUARTER, tmp_path / "out" / f"{bundle_name(QUARTER)}.tar.gz", signer=signer, trusted_keys=[signer.public_key])
    return _unpack(Path(result.bundle), tmp_path / "unpacked"), ids, result


def test_bundle_holds_the_quarter_and_verifies_with_livedrill(bundle) -> None:
    bundle_dir, ids, result = bundle
    assert result.runs == ids[1:3]
    assert len(result.unsealed_runs) == 1 and result.unsealed_runs[0].startswith("20261201T")
    assert result.bundle_sha256 == sha256_file(Path(result.bundle))
    for name in ("report.html", "VERIFY.md", "SHA256SUMS", "oscal/assessment-results.json"):
        assert (bundle_dir / name).is_file()
    for run_id in ids[1:3]:
        assert (bundle_dir / "archive" / run_id / "probe" / "ledger-transfer.series").is_file()
        assert (bundle_dir / "in-toto" / f"{run_id}.statement.json").is_file()
    # Other quarters: manifest and signature only, so the chain is complete.
    assert sorted(p.name for p in (bundle_dir / "archive" / ids[0]).iterdir()) == ["MANIFEST.json", "MANIFEST.sig"]
    assert verify_archive(bundle_dir / "archive", quarter=QUARTER) == []


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("sha256sum")), reason="VERIFY.md needs openssl and sha256sum")
def test_verify_md_steps_pass_on_the_bundle_and_catch_tampering(bundle, signer: Signer) -> None:
    bundle_dir, ids, _ = bundle
    ok = _run_verify_md(bundle_dir, signer.key_id)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("ALL CHECKS PASSED")

    verdict = bundle_dir / "archive" / ids[2] / "verdict.json"
    verdict.write_text(verdict.read_text().replace("FAILED", "PASSED"))
    # A careful forger also fixes SHA256SUMS; the signed manifest still catches it.
    sums = bundle_dir / "SHA256SUMS"
    rel = f"archive/{ids[2]}/verdict.json"
    sums.write_text("".join(f"{sha256_file(verdict)}  {rel}\n" if line.endswith(f"  {rel}") else line + "\n" for line in sums.read_text().splitlines()))
    bad = _run_verify_md(bundle_dir, signer.key_id)
    assert bad.returncode != 0
    assert f"FILES: {ids[2]} has files that differ from its manifest" in bad.stdout
    assert "VERIFICATION FAILED" in bad.stdout


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("sha256sum")), reason="VERIFY.md needs openssl and sha256sum")
@pytest.mark.parametrize("tamper,message", [
    ("reorder", "ORDER:"),
    ("added", "has files added or removed"),
    ("resign", "SIGNATURE:"),
    ("statement", "STATEMENT SIGNATURE:"),
])
def test_verify_md_catches_each_kind_of_change(bundle, signer: Signer, tamper: str, message: str) -> None:
    bundle_dir, ids, _ = bundle
    archive = bundle_dir / "archive"
    if tamper == "reorder":
        lines = (archive / "chain.jsonl").read_text().splitlines()
        (archive / "chain.jsonl").write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n")
    elif tamper == "added":
        (archive / ids[1] / "objects" / "approval-forged.json").write_text("{}")
    elif tamper == "resign":
        (archive / ids[1] / "MANIFEST.sig").write_bytes(Signer.generate().sign((archive / ids[1] / "MANIFEST.json").read_bytes()))
    else:
        envelope_path = bundle_dir / "in-toto" / f"{ids[2]}.dsse.json"
        envelope = json.loads(envelope_path.read_text())
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"]["result"] = "PASSED"
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        envelope_path.write_text(json.dumps(envelope, indent=2))
    result = _run_verify_md(bundle_dir, signer.key_id)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout


def test_oscal_assessment_results_validate_against_the_oscal_models(bundle) -> None:
    trestle = pytest.importorskip("trestle.oscal.assessment_results", reason="compliance-trestle validates OSCAL")
    bundle_dir, ids, _ = bundle
    document = json.loads((bundle_dir / "oscal" / "assessment-results.json").read_text())
    model = trestle.Model.model_validate(document)
    results = model.assessment_results.results
    assert [r.props[0].value for r in results] == ids[1:3]
    states = [r.findings[0].target.status.state.value for r in results]
    assert states == ["satisfied", "not-satisfied"]
    for r in results:
        for observation in r.observations:
            for evidence in observation.relevant_evidence:
                assert (bundle_dir / evidence.href).is_file(), evidence.href
    for resource in model.assessment_results.back_matter.resources:
        link = resource.rlinks[0]
        assert link.hashes[0].value == sha256_file(bundle_dir / link.href)


def test_intoto_statements_carry_the_test_result_and_a_valid_dsse_signature(bundle, signer: Signer) -> None:
    bundle_dir, ids, _ = bundle
    passed_id, failed_id = ids[1], ids[2]
    for run_id, expected in ((passed_id, "PASSED"), (failed_id, "FAILED")):
        statement = json.loads((bundle_dir / "in-toto" / f"{run_id}.statement.json").read_text())
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == TEST_RESULT_PREDICATE
        assert statement["predicate"]["result"] == expected
        [subject] = statement["subject"]
        assert subject["digest"]["sha256"] == sha256_file(bundle_dir / subject["name"])
        assert statement["predicate"]["configuration"][0]["digest"]["sha256"] == sha256_file(bundle_dir / "archive" / run_id / "spec.yaml")
        envelope = json.loads((bundle_dir / "in-toto" / f"{run_id}.dsse.json").read_text())
        body = base64.b64decode(envelope["payload"])
        assert json.loads(body) == statement
        public = load_public_key_pem((bundle_dir / "archive" / "keys" / f"{envelope['signatures'][0]['keyid']}.pub").read_bytes())
        assert signature_valid(public, base64.b64decode(envelope["signatures"][0]["sig"]), pae(DSSE_PAYLOAD_TYPE, body))
    failed = json.loads((bundle_dir / "in-toto" / f"{failed_id}.statement.json").read_text())["predicate"]
    assert "verdict/probe.downtime" in failed["failedTests"]
    assert "preflight/live-migratable [vmi banking/banking-core-vm]" in failed["passedTests"]


def test_report_names_each_drill_with_approval_verdict_downtime_and_rollback(bundle) -> None:
    bundle_dir, ids, _ = bundle
    html = (bundle_dir / "report.html").read_text()
    for run_id in ids[1:3]:
        assert f'id="{run_id}"' in html
    assert ids[0] not in html.split("<h2>")[1]  # Q3 drill is not in the Q4 summary
    for expected in ("cab-bob", "CHG-2026-1126-07", "通过 / PASSED", "未通过 / FAILED", "48.0 ms", "1500.0 ms",
                     "cancel-migration", "migration aborted; VM still on node-1", "live-migratable"):
        assert expected in html, expected
    assert html.count("<svg") == 4  # a timeline and a latency chart per drill
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "").replace("http://127.0.0.1:18101/transfers", "")
    assert "20261201T" in html  # the unsealed run is named, not hidden


def test_seed_password_is_nowhere_in_the_exported_bundle(bundle) -> None:
    bundle_dir, _, result = bundle
    raw = Path(result.bundle).read_bytes()
    everything = b"".join(p.read_bytes() for p in sorted(bundle_dir.rglob("*")) if p.is_file())
    seed_secret = b"change" + b"me"  # spelled apart so the test's own bytes never match a search
    assert seed_secret not in everything
    assert seed_secret not in raw  # compressed, but cheap to check for stored members too


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium for the headless screenshot")
def test_report_renders_in_headless_chromium(bundle, tmp_path: Path) -> None:
    bundle_dir, _, _ = bundle
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1000,1400", f"--screenshot={shot}", (bundle_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    width, height, rows = read_png(shot)
    assert (width, height) == (1000, 1400)
    pixels = [tuple(row[i : i + 3]) for row in rows for i in range(0, len(row), 3)]
    dark = sum(1 for r, g, b in pixels if r + g + b < 200)
    green = sum(1 for r, g, b in pixels if g > r + 40 and g > b + 20)  # PASSED
    red = sum(1 for r, g, b in pixels if r > g + 60 and r > b + 60)  # FAILED
    assert dark > 5000, "too little ink: the report did not render its text"
    assert green > 100 and red > 100, "the summary shows one passed and one failed drill in their colours"
    assert len(set(pixels)) > 50, "a rendered report has text and charts, not a blank page"


def test_export_refuses_an_archive_that_does_not_verify(lab_archive, signer: Signer, tmp_path: Path) -> None:
    root, ids = lab_archive
    (root / ids[1] / "verdict.json").write_text("{}")
    with pytest.raises(ExportError, match=rf"(?s)does not verify.*size-mismatch.*{ids[1]}.*verdict.json"):
        export_quarter(root, QUARTER, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


def test_export_of_a_quarter_without_drills_is_refused(lab_archive, tmp_path: Path) -> None:
    root, _ = lab_archive
    with pytest.raises(ExportError, match="no sealed run started in 2025Q1"):
        export_quarter(root, "2025Q1", tmp_path / "x.tar.gz")


def test_export_is_reproducible_for_the_same_time(lab_archive, signer: Signer, tmp_path: Path) -> None:
    root, _ = lab_archive
    now = datetime(2027, 1, 10, tzinfo=timezone.utc)
    a = export_quarter(root, QUARTER, tmp_path / "a.tar.gz", signer=signer, now=now)
    b = export_quarter(root, QUARTER, tmp_path / "b.tar.gz", signer=signer, now=now)
    assert a.bundle_sha256 == b.bundle_sha256


def test_bundle_dir_can_be_built_without_packing(lab_archive, tmp_path: Path) -> None:
    root, ids = lab_archive
    result = build_bundle_dir(root, QUARTER, tmp_path / "dir")
    assert result.runs == ids[1:3]
    assert not list((tmp_path / "dir" / "in-toto").glob("*.dsse.json"))  # no signer: statements only


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("sha256sum")), reason="VERIFY.md needs openssl and sha256sum")
def test_verify_md_takes_the_expected_key_id_and_fails_for_another(bundle, signer: Signer) -> None:
    bundle_dir, _, _ = bundle
    assert _run_verify_md(bundle_dir, signer.key_id).returncode == 0
    wrong = _run_verify_md(bundle_dir, Signer.generate().key_id)
    assert wrong.returncode != 0 and "UNTRUSTED KEY:" in wrong.stdout and signer.key_id in wrong.stdout
    assert "UNTRUSTED STATEMENT KEY:" in wrong.stdout
    missing = _run_verify_md(bundle_dir)
    assert missing.returncode != 0 and "NO KEY ID GIVEN" in missing.stdout


def test_verify_md_and_the_report_name_the_trusted_keys_and_the_anchor(bundle, signer: Signer) -> None:
    bundle_dir, _, result = bundle
    text = (bundle_dir / "VERIFY.md").read_text()
    assert f"trusted key(s) `{signer.key_id}`" in text and "where available" not in text
    anchor = f"{result.chain_head_sequence}:{result.chain_head_sha256}"
    assert f"--anchor {anchor}" in text
    first_page = (bundle_dir / "report.html").read_text().split("<h2>")[0]
    assert "Trusted keys" in first_page and signer.key_id in first_page.split("Trusted keys")[1]
    assert verify_archive(bundle_dir / "archive", trusted_keys=[signer.public_key], anchor=anchor, quarter=QUARTER) == []


def test_an_export_without_trust_says_origin_not_established(lab_archive, tmp_path: Path) -> None:
    root, _ = lab_archive
    bundle_dir = tmp_path / "b"
    assert build_bundle_dir(root, QUARTER, bundle_dir).trusted_key_ids is None
    assert "origin of this evidence was not established" in (bundle_dir / "VERIFY.md").read_text()
    assert "origin of this evidence is not established" in (bundle_dir / "report.html").read_text()


def test_an_export_pinned_to_another_key_is_refused(lab_archive, tmp_path: Path) -> None:
    root, _ = lab_archive
    with pytest.raises(ExportError, match="untrusted-key"):
        build_bundle_dir(root, QUARTER, tmp_path / "b", trusted_keys=[Signer.generate().public_key])


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("sha256sum")), reason="VERIFY.md needs openssl and sha256sum")
def test_verify_md_follows_a_key_rotation_and_refuses_a_revoked_key(tmp_path: Path) -> None:
    first, second = Signer.generate(), Signer.generate()
    archive = Archive(tmp_path / "evidence")
    drill(archive, first, datetime(2026, 10, 5, tzinfo=timezone.utc))
    run = archive.new_run("lab-targeted", now=datetime(2026, 10, 6, tzinfo=timezone.utc))
    write_drill_evidence(run, series_bytes=16)
    run.seal(second, rotate_from=first, revokes=[first.key_id])
    drill(archive, second, datetime(2026, 10, 7, tzinfo=timezone.utc))
    bundle_dir = tmp_path / "b"
    build_bundle_dir(archive.root, QUARTER, bundle_dir, trusted_keys=[first.public_key])
    ok = _run_verify_md(bundle_dir, first.key_id)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    only_second = _run_verify_md(bundle_dir, second.key_id)
    assert only_second.returncode != 0 and "UNTRUSTED KEY:" in only_second.stdout

    late = drill(archive, first, datetime(2026, 10, 8, tzinfo=timezone.utc))  # the revoked key, stolen, seals again
    with pytest.raises(ExportError, match="revoked-key"):
        build_bundle_dir(archive.root, QUARTER, tmp_path / "c", trusted_keys=[first.public_key])
    with pytest.raises(ExportError, match="revoked-key"):  # revocation holds even with no key pinned
        build_bundle_dir(archive.root, QUARTER, tmp_path / "d")
    # The bundle's archive swapped for the one holding the late run, SHA256SUMS redone: the script refuses it too.
    shutil.rmtree(bundle_dir / "archive")
    shutil.copytree(archive.root, bundle_dir / "archive", ignore=shutil.ignore_patterns(".lock"))
    (bundle_dir / SUMS_NAME).write_text(_sha256sums(bundle_dir))
    revoked = _run_verify_md(bundle_dir, first.key_id)
    assert revoked.returncode != 0 and f"REVOKED KEY: {late} is signed by {first.key_id}" in revoked.stdout, revoked.stdout
