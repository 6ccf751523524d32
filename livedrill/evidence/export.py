"""The auditor export: one quarter of sealed drills as a single, offline-verifiable bundle.

`export_quarter` verifies the archive first and refuses to export evidence that does not verify
(unsealed runs are left out and named in the report). The bundle (a .tar.gz, deterministic apart
from the generation time) holds:

  livedrill-evidence-<quarter>/
    report.html                     bilingual report (prints to PDF), charts inline
    oscal/assessment-results.json   OSCAL 1.2.1 assessment-results, one result per drill
    in-toto/<run_id>.statement.json in-toto Statement v1, test-result predicate
    in-toto/<run_id>.dsse.json      the same, signed in a DSSE envelope (when a signer is given)
    archive/                        an archive livedrill verifies as is: chain.jsonl, keys/, every
                                    chained run's MANIFEST.json + .sig, and the quarter's runs whole
    VERIFY.md                       how to check all of it with sha256sum, openssl and awk
    SHA256SUMS                      every other file of the bundle
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from livedrill.evidence.archive import Archive, EvidenceError
from livedrill.evidence.atomic import fsync_dir
from livedrill.evidence.export_charts import LatencySeries, read_latency_series
from livedrill.evidence.export_formats import dsse_envelope, intoto_statement, oscal_assessment_results
from livedrill.evidence.export_report import ReportAttachment, render_report
from livedrill.evidence.export_summary import DrillSummary, summarize_run
from livedrill.evidence.export_verify_md import verify_md
from livedrill.evidence.keys import Signer, key_id_of
from livedrill.evidence.manifest import CHAIN_NAME, KEYS_DIR, MANIFEST_NAME, SIGNATURE_NAME, TIMESTAMP_NAME, Manifest, in_quarter, parse_quarter
from livedrill.evidence.records import is_record_run, sealed_records
from livedrill.evidence.verify import INPUT_PROBLEMS, TimestampPolicy, format_problems, verify_archive
from livedrill.outcomes import Record

SUMS_NAME = "SHA256SUMS"


class ExportError(EvidenceError):
    """The quarter cannot be exported: the archive does not verify (CLI exit 1)."""


class ExportInputError(ExportError):
    """Nothing to export as asked: no archive there, no sealed drill in that quarter (CLI exit 2)."""


class ExportResult(Record):
    bundle: str
    bundle_sha256: str
    quarter: str
    runs: list[str]
    unsealed_runs: list[str]
    chain_head_sha256: str
    chain_head_sequence: int
    trusted_key_ids: list[str] | None
    files: int


def bundle_name(quarter: str) -> str:
    return f"livedrill-evidence-{quarter}"


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _copy_archive_slice(root: Path, dest: Path, chained: list[str], quarter_runs: list[str]) -> None:
    """Everything `verify_archive(dest, quarter=...)` needs: chain, keys, all manifests, the quarter's runs."""
    dest.mkdir(parents=True)
    shutil.copy2(root / CHAIN_NAME, dest / CHAIN_NAME)
    shutil.copytree(root / KEYS_DIR, dest / KEYS_DIR)
    for run_id in chained:
        if run_id in quarter_runs:
            shutil.copytree(root / run_id, dest / run_id, symlinks=True)
        else:
            (dest / run_id).mkdir()
            for name in (MANIFEST_NAME, SIGNATURE_NAME, TIMESTAMP_NAME):
                if (root / run_id / name).exists():
                    shutil.copy2(root / run_id / name, dest / run_id / name)


def _sha256sums(bundle_dir: Path) -> str:
    lines = []
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(bundle_dir).as_posix()
        if rel == SUMS_NAME:
            continue
        with path.open("rb") as f:
            lines.append(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {rel}\n")
    return "".join(lines)


def _tar_gz(source_dir: Path, out: Path, mtime: int) -> None:
    """A deterministic tar.gz (sorted entries, fixed owner and times) written next to `out`, then renamed in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = mtime
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=mtime) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            entries = [source_dir, *sorted(source_dir.rglob("*"))]
            for path in entries:
                arcname = Path(source_dir.name, path.relative_to(source_dir)).as_posix() if path != source_dir else source_dir.name
                tar.add(path, arcname=arcname, recursive=False, filter=normalise)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)


def build_bundle_dir(
    archive_root: Path,
    quarter: str,
    bundle_dir: Path,
    *,
    signer: Signer | None = None,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
    timestamps: TimestampPolicy | None = None,
    now: datetime | None = None,
    attachments: Sequence[ReportAttachment] = (),
) -> ExportResult:
    """Write the bundle's files into `bundle_dir` (created); `export_quarter` packs it into one file."""
    parse_quarter(quarter)
    root = Path(archive_root)
    generated_at = now or datetime.now(timezone.utc)
    trusted_keys = list(trusted_keys) if trusted_keys is not None else None
    trusted_ids = sorted({key_id_of(k) for k in trusted_keys}) if trusted_keys is not None else None
    problems = verify_archive(root, quarter=quarter, trusted_keys=trusted_keys, timestamps=timestamps)
    unsealed = sorted(p.run_id for p in problems if p.code == "unsealed-run" and p.run_id)
    blocking = [p for p in problems if p.code != "unsealed-run"]
    if blocking:
        if all(p.code in INPUT_PROBLEMS for p in blocking):
            raise ExportInputError(f"{root}: nothing to export for {quarter}:\n{format_problems(blocking)}")
        raise ExportError(f"{root}: the archive does not verify for {quarter}, refusing to export it:\n{format_problems(blocking)}")

    chain = Archive(root).chain()
    chained = [e.run_id for e in chain]
    records = sealed_records(root, quarter)  # deficiencies and sign-offs of the quarter, whenever they were sealed
    quarter_runs = [r for r in chained if in_quarter(r, quarter) or r in {run_id for run_id, _ in records}]
    drill_runs = [r for r in quarter_runs if not is_record_run(root / r)]
    head, head_sequence = chain[-1].manifest_sha256, chain[-1].sequence
    _copy_archive_slice(root, bundle_dir / "archive", chained, quarter_runs)

    summaries: list[DrillSummary] = []
    latency: dict[tuple[str, str], LatencySeries] = {}
    _write_json(bundle_dir / "programme-records.json",
                [{"run_id": run_id, **record} for run_id, record in records])
    for attachment in attachments:
        _write_json(bundle_dir / attachment.file, attachment.data)
    for run_id in drill_runs:
        run_dir = bundle_dir / "archive" / run_id
        summary = summarize_run(run_dir)
        summaries.append(summary)
        for probe in summary.probes:
            if probe.series_file:
                try:
                    latency[(run_id, probe.series_file)] = read_latency_series(run_dir / probe.series_file)
                except ValueError:
                    pass  # not a series file this livedrill can read: the table still reports the figures
        manifest = Manifest.from_bytes((run_dir / MANIFEST_NAME).read_bytes())
        spec_sha = next((f.sha256 for f in manifest.files if f.path == "spec.yaml"), None)
        statement = intoto_statement(summary, spec_sha)
        _write_json(bundle_dir / "in-toto" / f"{run_id}.statement.json", statement)
        if signer is not None:
            _write_json(bundle_dir / "in-toto" / f"{run_id}.dsse.json", dsse_envelope(statement, signer))

    key_ids = sorted(p.stem for p in (bundle_dir / "archive" / KEYS_DIR).glob("*.pub"))
    _write_json(bundle_dir / "oscal" / "assessment-results.json", oscal_assessment_results(
        summaries, quarter=quarter, generated_at=generated_at, chain_head_sha256=head,
        extra_results=[a.oscal_result for a in attachments if a.oscal_result is not None]))
    (bundle_dir / "report.html").write_text(
        render_report(summaries, latency, quarter=quarter, generated_at=generated_at, chain_head_sha256=head, key_ids=key_ids, trusted_key_ids=trusted_ids, unsealed=unsealed,
                      attachments=list(attachments)),
        encoding="utf-8",
    )
    stamped = [r for r in quarter_runs if (bundle_dir / "archive" / r / TIMESTAMP_NAME).exists()]
    (bundle_dir / "VERIFY.md").write_text(
        verify_md(quarter=quarter, chained=chained, quarter_runs=quarter_runs, key_ids=key_ids, trusted_key_ids=trusted_ids, chain_head_sha256=head, chain_head_sequence=head_sequence, signed_statements=signer is not None, timestamped_runs=stamped),
        encoding="utf-8",
    )
    (bundle_dir / SUMS_NAME).write_text(_sha256sums(bundle_dir), encoding="utf-8")
    files = sum(1 for p in bundle_dir.rglob("*") if p.is_file())
    return ExportResult(bundle=str(bundle_dir), bundle_sha256="", quarter=quarter, runs=quarter_runs, unsealed_runs=unsealed, chain_head_sha256=head, chain_head_sequence=head_sequence, trusted_key_ids=trusted_ids, files=files)


def export_quarter(
    archive_root: Path,
    quarter: str,
    out: Path,
    *,
    signer: Signer | None = None,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
    timestamps: TimestampPolicy | None = None,
    now: datetime | None = None,
    attachments: Sequence[ReportAttachment] = (),
) -> ExportResult:
    """Verify the archive, then write the quarter's bundle to `out` (a .tar.gz) atomically."""
    generated_at = now or datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="livedrill-export-") as tmp:
        bundle_dir = Path(tmp) / bundle_name(quarter)
        result = build_bundle_dir(archive_root, quarter, bundle_dir, signer=signer, trusted_keys=trusted_keys, timestamps=timestamps, now=generated_at,
                                   attachments=attachments)
        _tar_gz(bundle_dir, Path(out), int(generated_at.timestamp()))
    with open(out, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return result.model_copy(update={"bundle": str(out), "bundle_sha256": digest})
