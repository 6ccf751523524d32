"""Who may have signed the archive: pinned keys, key rotation, revocation, and anchors from earlier audits.

A self-consistent archive proves only that nobody changed it after whoever sealed it last; an insider
can strip every seal and re-seal with a fresh key. Origin is established only against keys the auditor
received separately (pinned). A new signing key is admitted by a rotation record in the first manifest
it signs: the previous key's signature over `rotation_statement(previous, new)`, so pinning the first
key covers its successors. A manifest may revoke keys; a revoked key is refused for every run sealed
after that manifest. The judgements (`trust_problems`, `anchor_problems`) are pure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from livedrill.evidence.keys import load_public_key_pem
from livedrill.evidence.manifest import CHAIN_NAME, MANIFEST_NAME, SIGNATURE_NAME, TIMESTAMP_NAME, ChainEntry
from livedrill.evidence.problems import Problem

# A file of PEM public keys (one or more, concatenated) that verify trusts when no --trusted-key is given.
TRUSTED_KEYS_ENV = "LIVEDRILL_TRUSTED_KEYS"
ROTATION_FORMAT = "livedrill-key-rotation/1"
_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----\s*", re.S)
_ANCHOR = re.compile(r"^(?:(?P<sequence>[1-9][0-9]*):)?(?P<sha256>[0-9a-f]{64})$")


class TrustInputError(ValueError):
    """A trusted-key file or an anchor given on the command line is unreadable."""


def rotation_statement(previous_key_id: str, new_key_id: str) -> bytes:
    """The bytes the previous key signs to admit the new one (VERIFY.md rebuilds them with printf)."""
    return f"{ROTATION_FORMAT} {previous_key_id} {new_key_id}".encode()


def load_trusted_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    """Every PEM public key in the given files (each file may hold several, concatenated)."""
    keys: list[Ed25519PublicKey] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TrustInputError(f"{path}: cannot read trusted key file ({exc.strerror})") from exc
        blocks = _PEM_BLOCK.findall(data)
        if not blocks:
            raise TrustInputError(f"{path}: no PEM public key in it (-----BEGIN PUBLIC KEY-----)")
        for block in blocks:
            try:
                keys.append(load_public_key_pem(block))
            except ValueError as exc:
                raise TrustInputError(f"{path}: {exc}") from exc
    return keys


def trust_file_from_env() -> Path | None:
    value = os.environ.get(TRUSTED_KEYS_ENV)
    return Path(value) if value else None


@dataclass(frozen=True)
class Rotation:
    """A manifest's rotation record: the key that endorsed its signer, and whether that signature verified."""

    previous_key_id: str
    endorsement_valid: bool


@dataclass(frozen=True)
class SignedRun:
    """What the trust decision needs of one chained run (its signature already checked elsewhere)."""

    sequence: int
    run_id: str
    key_id: str
    rotation: Rotation | None = None
    revokes: tuple[str, ...] = ()


def trust_problems(runs: Sequence[SignedRun], trusted: frozenset[str] | None) -> list[Problem]:
    """Judge each run's signer in seal order. trusted=None: no key pinned, only revocations and rotations are checked."""
    accepted = set(trusted) if trusted is not None else None
    revoked: dict[str, SignedRun] = {}
    problems = []
    for run in sorted(runs, key=lambda r: r.sequence):
        ok = True
        if run.key_id in revoked:
            by = revoked[run.key_id]
            problems.append(Problem(code="revoked-key", run_id=run.run_id, file=SIGNATURE_NAME, message=f"signed by key {run.key_id}, revoked by run {by.run_id} (sealed as number {by.sequence}) before this run was sealed", actual=run.key_id))
            ok = False
        elif run.rotation is not None and not run.rotation.endorsement_valid:
            problems.append(Problem(code="bad-rotation", run_id=run.run_id, file=MANIFEST_NAME, message=f"the rotation record does not verify against key {run.rotation.previous_key_id}: key {run.key_id} was not admitted by it", actual=run.key_id))
            ok = False
        elif accepted is not None and run.key_id not in accepted:
            endorser = run.rotation.previous_key_id if run.rotation else None
            if endorser is not None and endorser in accepted and endorser not in revoked:
                accepted.add(run.key_id)
            else:
                via = f"; its rotation record names key {endorser}, which is not trusted here" if endorser else ""
                problems.append(Problem(code="untrusted-key", run_id=run.run_id, file=SIGNATURE_NAME, message=f"signed by key {run.key_id}, which is not trusted{via} (trusted: {', '.join(sorted(accepted)) or 'none'})", expected=", ".join(sorted(accepted)), actual=run.key_id))
                ok = False
        if ok:
            for key_id in run.revokes:
                revoked.setdefault(key_id, run)
                if accepted is not None:
                    accepted.discard(key_id)
    return problems


def parse_anchor(text: str) -> tuple[int | None, str]:
    """`SHA256` or `SEQUENCE:SHA256` (as VERIFY.md records the chain head) -> (sequence or None, sha256)."""
    match = _ANCHOR.match(text.strip().lower())
    if not match:
        raise TrustInputError(f"anchor {text!r} is not a SHA-256 (64 hex digits), optionally preceded by its sequence number and ':'")
    return (int(match["sequence"]) if match["sequence"] else None, match["sha256"])


def append_witness(path: Path, entry: ChainEntry) -> None:
    """Append a new chain head to the witness file (outside the archive) and force it to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(entry.to_line().encode())
        f.flush()
        os.fsync(f.fileno())


def witnessed(path: Path, entry: ChainEntry) -> bool:
    try:
        return entry.to_line() in path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return False


def read_witness(path: Path) -> list[tuple[int | None, str]]:
    """The chain heads a witness file recorded, as anchors (sequence, sha256)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise TrustInputError(f"{path}: cannot read witness file ({exc.strerror})") from exc
    try:
        return [(e.sequence, e.manifest_sha256) for e in (ChainEntry.model_validate_json(line) for line in lines if line.strip())]
    except ValueError as exc:
        raise TrustInputError(f"{path}: not a witness file of chain heads ({exc})") from exc


def anchor_problems(entries: Sequence[ChainEntry], anchors: Iterable[tuple[int | None, str]], *, recorded_by: str = "an earlier verification") -> list[Problem]:
    """Each anchor (a chain head from an earlier audit, or a witness) must still be in the chain, at the place it was sealed."""
    problems = []
    positions = {e.manifest_sha256: position for position, e in enumerate(entries, start=1)}
    for sequence, sha in anchors:
        shown = f"{sequence}:{sha}" if sequence else sha
        position = positions.get(sha)
        if position is None:
            problems.append(Problem(code="anchor-not-found", file=CHAIN_NAME, message=f"anchor {shown}, recorded by {recorded_by}, is no longer in the chain: runs were removed or re-sealed, or the archive was replaced", expected=sha))
        elif (sequence is not None and position != sequence) or entries[position - 1].sequence != position:
            problems.append(Problem(code="anchor-moved", run_id=entries[position - 1].run_id, file=CHAIN_NAME, message=f"anchor {shown} is in the chain at position {position}, not where {recorded_by} recorded it", expected=str(sequence or entries[position - 1].sequence), actual=str(position)))
    return problems


@dataclass(frozen=True)
class StampedRun:
    """A chained run whose RFC 3161 token verified: when the host says it sealed, when the TSA says it saw it."""

    sequence: int
    run_id: str
    sealed_at: datetime
    tsa_time: datetime


def tsa_time_problems(runs: Sequence[StampedRun], tolerance: timedelta | None) -> list[Problem]:
    """Each TSA time at most `tolerance` after its seal, and TSA times never going backwards along the chain.

    A re-seal made later gets the TSA's time of the re-seal: with the host clock set back it lands far
    from its sealed_at; with honest clocks the re-sealed runs come after the ones sealed since. A
    token may be earlier than its seal only by the clock skew, which `check_timestamp` already judges.
    tolerance None: neither is checked, since a run stamped late after a TSA outage
    (`Archive.timestamp_unstamped`) legitimately breaks both.
    """
    if tolerance is None:
        return []
    problems = []
    latest: StampedRun | None = None
    for run in sorted(runs, key=lambda r: r.sequence):
        if run.tsa_time - run.sealed_at > tolerance:
            problems.append(Problem(code="timestamp-late", run_id=run.run_id, file=TIMESTAMP_NAME, message=f"timestamped {run.tsa_time - run.sealed_at} after its seal, more than the {tolerance} allowed: re-sealed later with a backdated clock, or stamped late after a TSA outage", expected=f"at most {(run.sealed_at + tolerance).isoformat()}", actual=run.tsa_time.isoformat()))
        if latest is not None and run.tsa_time < latest.tsa_time:
            problems.append(Problem(code="timestamp-order", run_id=run.run_id, file=TIMESTAMP_NAME, message=f"TSA time is earlier than that of run {latest.run_id}, sealed before it (number {latest.sequence}): the chain was re-sealed or reordered", expected=f"at or after {latest.tsa_time.isoformat()}", actual=run.tsa_time.isoformat()))
        if latest is None or run.tsa_time >= latest.tsa_time:
            latest = run
    return problems


def unwitnessed_problems(entries: Sequence[ChainEntry], heads: Iterable[tuple[int | None, str]], witness: str) -> list[Problem]:
    """Runs chained after the last head the witness recorded: sealed without it (by hand, or by an insider appending)."""
    positions = {e.manifest_sha256: position for position, e in enumerate(entries, start=1)}
    last = max((positions.get(sha, 0) for _, sha in heads), default=0)
    return [
        Problem(code="not-witnessed", run_id=e.run_id, file=CHAIN_NAME, message=f"sealed as number {position} after the last chain head witness {witness} recorded: sealed without the witness")
        for position, e in enumerate(entries, start=1)
        if position > last
    ]
