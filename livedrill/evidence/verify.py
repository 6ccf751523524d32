"""Offline verification of evidence runs and archives: hashes, signatures, chain.

Every problem names the run, the file and what is wrong (expected vs actual), so an auditor can
find the exact change. The judging functions (`listing_problems`, `hash_problem`, `link_problems`)
are pure; the walkers around them only read files.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, ValidationError

from livedrill.evidence.keys import key_id_of, load_public_key_pem, signature_valid
from livedrill.evidence.manifest import (
    CHAIN_NAME,
    KEYS_DIR,
    MANIFEST_NAME,
    RUN_ID_RE,
    SIGNATURE_NAME,
    TIMESTAMP_NAME,
    UNSEALED_NAME,
    ChainEntry,
    FileEntry,
    Manifest,
    in_quarter,
    parse_quarter,
    sha256_bytes,
    sha256_file,
)
from livedrill.evidence.problems import Problem, format_problems
from livedrill.evidence.trust import (
    Rotation,
    SignedRun,
    StampedRun,
    anchor_problems,
    parse_anchor,
    read_witness,
    rotation_statement,
    trust_problems,
    tsa_time_problems,
    unwitnessed_problems,
)
from livedrill.outcomes import Record

# Hashing threads: hashlib releases the GIL on large buffers, so reads and hashes overlap.
DEFAULT_HASH_WORKERS = min(4, os.cpu_count() or 1)
# How far the sealing host's clock may run ahead of the TSA's before a timestamp looks earlier than its seal.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class TimestampPolicy:
    """How verification treats RFC 3161 timestamps (MANIFEST.tsr).

    roots: trusted TSA root certificates; without them only the imprint (token covers this manifest)
    is checked, not who signed the token. required: a sealed run without a timestamp is a problem.
    tolerance: each TSA time at most that long after its seal, and TSA times never going backwards along the chain.
    """

    roots: list[x509.Certificate] = field(default_factory=list)
    required: bool = False
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    tolerance: timedelta | None = None  # how long after its seal a run may be timestamped; None: TSA times not compared


# ---------------------------------------------------------------- pure judgements


@dataclass(frozen=True)
class FoundFile:
    """A directory entry as found on disk: regular file or not, and its size."""

    regular: bool
    size: int


def listing_problems(run_id: str, manifest_files: list[FileEntry], found: dict[str, FoundFile]) -> tuple[list[Problem], list[FileEntry]]:
    """Compare the manifest with what is on disk; return the problems and the entries still to hash."""
    problems: list[Problem] = []
    to_hash: list[FileEntry] = []
    expected = {e.path: e for e in manifest_files}
    for path, entry in sorted(expected.items()):
        here = found.get(path)
        if here is None:
            problems.append(Problem(code="missing-file", run_id=run_id, file=path, message="listed in the manifest but missing", expected=f"sha256 {entry.sha256}, {entry.size} bytes"))
        elif not here.regular:
            problems.append(Problem(code="not-a-file", run_id=run_id, file=path, message="replaced by a symlink or special file", expected="regular file"))
        elif here.size != entry.size:
            change = "truncated" if here.size < entry.size else "grown"
            problems.append(Problem(code="size-mismatch", run_id=run_id, file=path, message=f"{change}: size differs from the manifest", expected=f"{entry.size} bytes", actual=f"{here.size} bytes"))
        else:
            to_hash.append(entry)
    for path in sorted(set(found) - set(expected)):
        if path == UNSEALED_NAME:
            problems.append(Problem(code="unsealed-marker", run_id=run_id, file=path, message="sealed run carries an UNSEALED marker"))
        else:
            problems.append(Problem(code="unexpected-file", run_id=run_id, file=path, message="not in the manifest: added after sealing", actual=f"{found[path].size} bytes"))
    return problems, to_hash


def hash_problem(run_id: str, entry: FileEntry, actual_sha256: str) -> Problem | None:
    if actual_sha256 == entry.sha256:
        return None
    return Problem(code="hash-mismatch", run_id=run_id, file=entry.path, message="content changed since sealing (same size, different SHA-256)", expected=entry.sha256, actual=actual_sha256)


def link_problems(
    position: int, entry: ChainEntry, previous: ChainEntry | None, manifest: Manifest, manifest_sha256: str, chained_run_ids: frozenset[str]
) -> list[Problem]:
    """Judge one chain position: the index entry, the run's signed manifest and the entry before it."""
    run_id = entry.run_id
    problems: list[Problem] = []
    if entry.sequence != position:
        problems.append(Problem(code="chain-order", run_id=run_id, file=CHAIN_NAME, message=f"chain index line {position} carries sequence {entry.sequence}", expected=str(position), actual=str(entry.sequence)))
    if manifest.run_id != run_id:
        problems.append(Problem(code="run-id-mismatch", run_id=run_id, file=MANIFEST_NAME, message="the manifest in this directory belongs to another run (directories renamed or swapped)", expected=run_id, actual=manifest.run_id))
    if manifest_sha256 != entry.manifest_sha256:
        problems.append(Problem(code="manifest-changed", run_id=run_id, file=MANIFEST_NAME, message=f"manifest hash differs from chain index entry {position}", expected=entry.manifest_sha256, actual=manifest_sha256))
    if manifest.sequence != position:
        problems.append(Problem(code="chain-order", run_id=run_id, file=MANIFEST_NAME, message=f"the signed manifest says it was sealed as number {manifest.sequence}, the chain index has it at {position} (runs reordered or removed)", expected=str(position), actual=str(manifest.sequence)))
    expected_prev = f"{previous.run_id} sha256 {previous.manifest_sha256}" if previous else "none (first run)"
    actual_prev = f"{manifest.previous.run_id} sha256 {manifest.previous.manifest_sha256}" if manifest.previous else "none (first run)"
    if manifest.previous is not None and manifest.previous.run_id not in chained_run_ids:
        problems.append(Problem(code="missing-run", run_id=run_id, file=MANIFEST_NAME, message=f"the signed manifest names {manifest.previous.run_id} as the run sealed before it, but that run is not in the chain (removed)", expected=actual_prev, actual=expected_prev))
    elif expected_prev != actual_prev:
        problems.append(Problem(code="chain-break", run_id=run_id, file=MANIFEST_NAME, message="the signed link to the previous sealed run does not match the run before it in the chain (a run was removed, reordered or edited)", expected=expected_prev, actual=actual_prev))
    return problems


# ---------------------------------------------------------------- readers


def _scan(run_dir: Path) -> dict[str, FoundFile]:
    found: dict[str, FoundFile] = {}
    for dirpath, dirnames, filenames in os.walk(run_dir):
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            path = base / name
            rel = path.relative_to(run_dir).as_posix()
            if rel in (MANIFEST_NAME, SIGNATURE_NAME, TIMESTAMP_NAME):
                continue
            st = path.lstat()
            found[rel] = FoundFile(regular=stat.S_ISREG(st.st_mode), size=st.st_size)
    return found


def load_published_keys(root: Path) -> tuple[dict[str, Ed25519PublicKey], list[Problem]]:
    """The archive's keys/<key id>.pub files, each checked against its own name."""
    keys: dict[str, Ed25519PublicKey] = {}
    problems: list[Problem] = []
    keys_dir = root / KEYS_DIR
    if not keys_dir.is_dir():
        return keys, problems
    for path in sorted(keys_dir.iterdir()):
        rel = f"{KEYS_DIR}/{path.name}"
        if path.suffix != ".pub":
            problems.append(Problem(code="unexpected-file", file=rel, message="not a public key file (keys/<key id>.pub)"))
            continue
        try:
            key = load_public_key_pem(path.read_bytes())
        except ValueError as exc:
            problems.append(Problem(code="bad-key", file=rel, message=f"unreadable public key: {exc}"))
            continue
        actual_id = key_id_of(key)
        if actual_id != path.stem:
            problems.append(Problem(code="key-id-mismatch", file=rel, message="the public key in this file does not have the id in its name (key replaced)", expected=path.stem, actual=actual_id))
            continue
        keys[actual_id] = key
    return keys, problems


@dataclass
class _RunCheck:
    problems: list[Problem]
    manifest: Manifest | None
    manifest_sha256: str | None
    tsa_time: datetime | None = None  # set when the run's RFC 3161 token verified


def _check_run(
    run_dir: Path, keys: dict[str, Ed25519PublicKey], *, check_files: bool, pool: ThreadPoolExecutor | None, timestamps: TimestampPolicy
) -> _RunCheck:
    run_id = run_dir.name
    problems: list[Problem] = []
    if (run_dir / UNSEALED_NAME).exists() and not (run_dir / MANIFEST_NAME).exists():
        return _RunCheck([Problem(code="unsealed-run", run_id=run_id, file=UNSEALED_NAME, message="run was never sealed: no manifest, its files are not protected")], None, None)
    try:
        manifest_bytes = (run_dir / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        return _RunCheck([Problem(code="missing-manifest", run_id=run_id, file=MANIFEST_NAME, message="no manifest and no UNSEALED marker: the run cannot be verified")], None, None)
    manifest_sha256 = sha256_bytes(manifest_bytes)
    try:
        manifest: Manifest | None = Manifest.from_bytes(manifest_bytes)
    except ValidationError as exc:
        manifest = None
        problems.append(Problem(code="manifest-invalid", run_id=run_id, file=MANIFEST_NAME, message=f"not a valid manifest: {exc.errors()[0]['msg']} at {'.'.join(map(str, exc.errors()[0]['loc'])) or 'top level'}"))

    key_id = manifest.key_id if manifest else _key_id_from_broken(manifest_bytes)
    try:
        signature = (run_dir / SIGNATURE_NAME).read_bytes()
    except FileNotFoundError:
        problems.append(Problem(code="missing-signature", run_id=run_id, file=SIGNATURE_NAME, message="manifest signature is missing"))
    else:
        key = keys.get(key_id or "")
        if key_id is None:
            if not any(signature_valid(k, signature, manifest_bytes) for k in keys.values()):
                problems.append(Problem(code="bad-signature", run_id=run_id, file=SIGNATURE_NAME, message=f"the manifest names no key and its signature verifies against none of the {len(keys)} known keys: the manifest was changed after signing"))
        elif key is None:
            problems.append(Problem(code="unknown-key", run_id=run_id, file=SIGNATURE_NAME, message=f"signed by key {key_id}, which is neither published in {KEYS_DIR}/ nor given as trusted"))
        elif not signature_valid(key, signature, manifest_bytes):
            problems.append(Problem(code="bad-signature", run_id=run_id, file=SIGNATURE_NAME, message=f"signature does not verify against key {key_id}: the manifest was edited after signing, or signed with another key"))

    timestamp_problems, tsa_time = _timestamp_problems(run_dir, manifest_bytes, manifest, timestamps)
    problems.extend(timestamp_problems)
    if manifest is not None and check_files:
        listing, to_hash = listing_problems(run_id, manifest.files, _scan(run_dir))
        problems.extend(listing)
        hashes = (pool.map if pool else map)(lambda e: sha256_file(run_dir / e.path), to_hash)
        for entry, actual in zip(to_hash, hashes):
            problem = hash_problem(run_id, entry, actual)
            if problem:
                problems.append(problem)
    return _RunCheck(problems, manifest, manifest_sha256, tsa_time)


def _timestamp_problems(run_dir: Path, manifest_bytes: bytes, manifest: Manifest | None, policy: TimestampPolicy) -> tuple[list[Problem], datetime | None]:
    """The token's problems, and its TSA time when it verified."""
    run_id = run_dir.name
    try:
        token = (run_dir / TIMESTAMP_NAME).read_bytes()
    except FileNotFoundError:
        if policy.required:
            return [Problem(code="missing-timestamp", run_id=run_id, file=TIMESTAMP_NAME, message="no RFC 3161 timestamp of the manifest, and timestamps are required")], None
        return [], None
    if manifest is None:
        return [], None  # the manifest itself is already reported unreadable
    from livedrill.evidence.timestamp import check_timestamp  # optional dependency: rfc3161-client

    check = check_timestamp(token, manifest_bytes, roots=policy.roots or None, sealed_at=manifest.sealed_at, clock_skew=policy.clock_skew)
    if check.problem is None:
        return [], check.gen_time
    return [Problem(code="bad-timestamp", run_id=run_id, file=TIMESTAMP_NAME, message=check.problem, actual=check.gen_time.isoformat() if check.gen_time else None)], None


def _key_id_from_broken(manifest_bytes: bytes) -> str | None:
    # An edited manifest may fail validation yet still name its key; use it for the signature check.
    try:
        value = json.loads(manifest_bytes).get("key_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _trusted(trusted_keys: Iterable[Ed25519PublicKey] | None) -> dict[str, Ed25519PublicKey] | None:
    return None if trusted_keys is None else {key_id_of(k): k for k in trusted_keys}


def _signed_run(sequence: int, run_id: str, manifest: Manifest, keys: dict[str, Ed25519PublicKey]) -> SignedRun:
    rotation = None
    if manifest.rotation is not None:
        previous = keys.get(manifest.rotation.previous_key_id)
        try:
            endorsement = base64.b64decode(manifest.rotation.endorsement, validate=True)
        except ValueError:
            endorsement = b""
        valid = previous is not None and signature_valid(previous, endorsement, rotation_statement(manifest.rotation.previous_key_id, manifest.key_id))
        rotation = Rotation(previous_key_id=manifest.rotation.previous_key_id, endorsement_valid=valid)
    return SignedRun(sequence=sequence, run_id=run_id, key_id=manifest.key_id, rotation=rotation, revokes=tuple(manifest.revokes))


def _chain_signers(root: Path, entries: list[ChainEntry], keys: dict[str, Ed25519PublicKey]) -> list[SignedRun]:
    """Each chained run's signer as its manifest names it (manifests that do not parse are reported elsewhere)."""
    signed = []
    for entry in entries:
        try:
            manifest = Manifest.from_bytes((root / entry.run_id / MANIFEST_NAME).read_bytes())
        except (OSError, ValidationError):
            continue
        signed.append(_signed_run(entry.sequence, entry.run_id, manifest, keys))
    return signed


Origin = Literal["established", "not-established", "refused"]
# Problems that say the request points at nothing to verify, not that the evidence is wrong (CLI exit 2).
INPUT_PROBLEMS = frozenset({"missing-archive", "empty-archive", "no-runs-in-quarter"})
_TRUST_PROBLEMS = frozenset({"untrusted-key", "revoked-key", "bad-rotation", "unknown-key"})


class RunResult(Record):
    """One run's answer: where it sits in the chain, who signed it, whether its files were re-hashed, and its verdict."""

    run_id: str
    sequence: int | None = Field(None, description="Position in the chain; None for a run the chain does not hold")
    key_id: str | None = None
    files_checked: bool = Field(description="Its files were re-hashed (false: outside --quarter, only signature and chain)")
    result: Literal["verified", "failed"]
    problems: int = 0


def run_results(checked: list[tuple[int | None, str, str | None, bool]], problems: list[Problem]) -> list[RunResult]:
    """(sequence, run id, key id, files checked) per run looked at, judged by the problems that name the run."""
    per_run: dict[str, int] = {}
    for problem in problems:
        if problem.run_id is not None:
            per_run[problem.run_id] = per_run.get(problem.run_id, 0) + 1
    return [RunResult(run_id=run_id, sequence=sequence, key_id=key_id, files_checked=files, problems=per_run.get(run_id, 0),
                      result="failed" if per_run.get(run_id) else "verified")
            for sequence, run_id, key_id, files in checked]


class VerifyReport(Record):
    """What was verified, against which keys and anchors, and what is wrong (`--json` prints this)."""

    target: str
    quarter: str | None = None
    runs_checked: int
    runs: list[RunResult] = Field(default_factory=list, description="Per run: chain position, signer, files re-hashed, result")
    signing_key_ids: list[str]
    trusted_key_ids: list[str] | None
    anchors: list[str]
    witnessed_heads: int = 0
    origin: Origin
    problems: list[Problem]

    @property
    def integrity_intact(self) -> bool:
        return not self.problems

    @property
    def bad_input(self) -> bool:
        return bool(self.problems) and all(p.code in INPUT_PROBLEMS for p in self.problems)


def _origin(trusted: dict[str, Ed25519PublicKey] | None, problems: list[Problem]) -> Origin:
    if trusted is None:
        return "not-established"
    return "refused" if any(p.code in _TRUST_PROBLEMS for p in problems) else "established"


def verify_run_report(
    run_dir: Path,
    *,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
    timestamps: TimestampPolicy | None = None,
    hash_workers: int = DEFAULT_HASH_WORKERS,
) -> VerifyReport:
    """Verify one run directory: manifest, signature, every file, and with trusted keys its signer through the chain before it."""
    run_dir = Path(run_dir)
    pinned = _trusted(trusted_keys)
    published, problems = load_published_keys(run_dir.parent)
    keys = {**published, **(pinned or {})}
    with ThreadPoolExecutor(hash_workers) as pool:
        check = _check_run(run_dir, keys, check_files=True, pool=pool, timestamps=timestamps or TimestampPolicy())
    problems.extend(check.problems)
    if check.manifest is not None and check.manifest.run_id != run_dir.name:
        problems.append(Problem(code="run-id-mismatch", run_id=run_dir.name, file=MANIFEST_NAME, message="the manifest in this directory belongs to another run", expected=run_dir.name, actual=check.manifest.run_id))
    if check.manifest is not None:
        # A rotated key is trusted through the records before it: judge the chain up to this run.
        entries, _ = read_chain(run_dir.parent)
        upto = next((i for i, e in enumerate(entries) if e.run_id == run_dir.name), None)
        if upto is not None:
            signers = _chain_signers(run_dir.parent, entries[: upto + 1], keys)
        else:  # a run copied out of its archive: only its own signer and rotation record can be judged
            signers = [_signed_run(check.manifest.sequence, run_dir.name, check.manifest, keys)]
        problems.extend(p for p in trust_problems(signers, frozenset(pinned) if pinned is not None else None) if p.run_id == run_dir.name)
    key_id = check.manifest.key_id if check.manifest else None
    sequence = check.manifest.sequence if check.manifest else None
    return VerifyReport(
        target=str(run_dir), runs_checked=1, runs=run_results([(sequence, run_dir.name, key_id, True)], problems),
        signing_key_ids=[key_id] if key_id else [],
        trusted_key_ids=sorted(pinned) if pinned is not None else None, anchors=[], origin=_origin(pinned, problems), problems=problems,
    )


def verify_run(
    run_dir: Path,
    *,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
    timestamps: TimestampPolicy | None = None,
    hash_workers: int = DEFAULT_HASH_WORKERS,
) -> list[Problem]:
    """The problems of `verify_run_report`."""
    return verify_run_report(run_dir, trusted_keys=trusted_keys, timestamps=timestamps, hash_workers=hash_workers).problems


def read_chain(root: Path) -> tuple[list[ChainEntry], list[Problem]]:
    entries: list[ChainEntry] = []
    problems: list[Problem] = []
    try:
        lines = (root / CHAIN_NAME).read_text().splitlines()
    except FileNotFoundError:
        return entries, problems
    except UnicodeDecodeError:
        return entries, [Problem(code="chain-invalid", file=CHAIN_NAME, message="chain index is not UTF-8 text")]
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(ChainEntry.model_validate_json(line))
        except ValidationError as exc:
            problems.append(Problem(code="chain-invalid", file=f"{CHAIN_NAME}:{number}", message=f"unreadable chain entry: {exc.errors()[0]['msg']}", actual=line[:120]))
    return entries, problems


def verify_archive_report(
    root: Path,
    *,
    quarter: str | None = None,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
    anchors: Sequence[str] = (),
    witness: Path | None = None,
    timestamps: TimestampPolicy | None = None,
    hash_workers: int = DEFAULT_HASH_WORKERS,
) -> VerifyReport:
    """Verify a whole archive offline: published keys, chain index, every sealed run, stray directories, trust, anchors.

    quarter ("2026Q4"): signatures and the chain are checked for every run (they are cheap and any
    break anywhere matters), file contents only for runs started in that quarter.
    trusted_keys: the keys the auditor received separately; every run must be signed by one of them
    or by a successor admitted through a rotation record. Without them origin is "not-established":
    an archive re-sealed throughout with another key is self-consistent.
    anchors: chain heads recorded at earlier verifications (`SHA256` or `SEQUENCE:SHA256`, see
    `chain_head`); each must still be in the chain at its place, which catches removed or re-sealed runs.
    witness: a file every seal appended its chain head to (spec `evidence.witness`); each head is an anchor.
    timestamps: how MANIFEST.tsr files are judged (default: imprint checked when present, none required).
    """
    root = Path(root)
    if quarter is not None:
        parse_quarter(quarter)
    parsed_anchors = [parse_anchor(a) for a in anchors]
    witnessed_heads = read_witness(witness) if witness is not None else []
    pinned = _trusted(trusted_keys)

    checked: list[tuple[int | None, str, str | None, bool]] = []

    def report(runs_checked: int, signing: list[str], problems: list[Problem]) -> VerifyReport:
        return VerifyReport(
            target=str(root), quarter=quarter, runs_checked=runs_checked, runs=run_results(checked, problems), signing_key_ids=signing,
            trusted_key_ids=sorted(pinned) if pinned is not None else None, anchors=list(anchors), witnessed_heads=len(witnessed_heads),
            origin=_origin(pinned, problems), problems=problems,
        )

    if not root.is_dir():
        return report(0, [], [Problem(code="missing-archive", file=str(root), message="archive directory does not exist")])
    published, problems = load_published_keys(root)
    keys = {**published, **(pinned or {})}
    entries, chain_problems = read_chain(root)
    problems.extend(chain_problems)
    run_dirs = [p for p in root.iterdir() if p.is_dir() and RUN_ID_RE.match(p.name)]
    if not entries and not run_dirs and not chain_problems:
        return report(0, [], [*problems, Problem(code="empty-archive", file=str(root), message=f"no sealed run in {root}: not an evidence archive, or the wrong folder")])

    chained = frozenset(e.run_id for e in entries)
    policy = timestamps or TimestampPolicy()
    stamped: list[StampedRun] = []
    sealed_in_quarter = 0
    with ThreadPoolExecutor(hash_workers) as pool:
        for position, entry in enumerate(entries, start=1):
            previous = entries[position - 2] if position > 1 else None
            run_dir = root / entry.run_id
            if not RUN_ID_RE.match(entry.run_id) or not run_dir.is_dir():
                problems.append(Problem(code="missing-run", run_id=entry.run_id, file=CHAIN_NAME, message=f"run sealed as number {position} at {entry.sealed_at.isoformat()} is missing from the archive", expected=f"directory {entry.run_id}/"))
                checked.append((position, entry.run_id, None, False))
                continue
            selected = quarter is None or in_quarter(entry.run_id, quarter)
            sealed_in_quarter += selected
            check = _check_run(run_dir, keys, check_files=selected, pool=pool, timestamps=policy)
            checked.append((position, entry.run_id, check.manifest.key_id if check.manifest else None, selected))
            problems.extend(check.problems)
            if check.manifest is not None and check.manifest_sha256 is not None:
                problems.extend(link_problems(position, entry, previous, check.manifest, check.manifest_sha256, chained))
            if check.manifest is not None and check.tsa_time is not None:
                stamped.append(StampedRun(sequence=position, run_id=entry.run_id, sealed_at=check.manifest.sealed_at, tsa_time=check.tsa_time))

    for path in sorted(run_dirs):
        if path.name in chained:
            continue
        if quarter is not None and not in_quarter(path.name, quarter):
            continue
        checked.append((None, path.name, None, False))
        if (path / UNSEALED_NAME).exists():
            problems.append(Problem(code="unsealed-run", run_id=path.name, file=UNSEALED_NAME, message="run was never sealed: no signed manifest protects its files"))
        elif (path / MANIFEST_NAME).exists():
            problems.append(Problem(code="run-not-in-chain", run_id=path.name, file=CHAIN_NAME, message="sealed run is not in the chain index (copied in from elsewhere, or its chain entry was removed)"))
        else:
            problems.append(Problem(code="missing-manifest", run_id=path.name, file=MANIFEST_NAME, message="run directory with neither a manifest nor an UNSEALED marker"))

    signers = _chain_signers(root, entries, keys)
    problems.extend(trust_problems(signers, frozenset(pinned) if pinned is not None else None))
    problems.extend(anchor_problems(entries, parsed_anchors))
    if witness is not None:
        problems.extend(anchor_problems(entries, witnessed_heads, recorded_by=f"witness {witness}"))
        problems.extend(unwitnessed_problems(entries, witnessed_heads, str(witness)))
    problems.extend(tsa_time_problems(stamped, policy.tolerance))
    if quarter is not None and sealed_in_quarter == 0:
        problems.append(Problem(code="no-runs-in-quarter", message=f"no sealed run started in {quarter}"))
    return report(len(entries) if quarter is None else sealed_in_quarter, sorted({s.key_id for s in signers}), problems)


def verify_archive(
    root: Path,
    *,
    quarter: str | None = None,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
    anchor: str | None = None,
    timestamps: TimestampPolicy | None = None,
    hash_workers: int = DEFAULT_HASH_WORKERS,
) -> list[Problem]:
    """The problems of `verify_archive_report` (one anchor, or none)."""
    return verify_archive_report(
        root, quarter=quarter, trusted_keys=trusted_keys, anchors=[anchor] if anchor else [], timestamps=timestamps, hash_workers=hash_workers
    ).problems


def chain_head(root: Path) -> ChainEntry | None:
    """The last sealed run's chain entry: record `sequence:manifest_sha256` and pass it as an anchor next time."""
    entries, _ = read_chain(Path(root))
    return entries[-1] if entries else None
